"""Field-aware linkage (``[linkage] method = "fields"``) in a real federation: nodes send field
evidence beside their CLKs, the coordinator links on it, both audit logs say it crossed, and the
evidence follows no record from one round to the next. Evidence the signed project does not
agree is refused (``test_federation.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oda_fed.audit import read_entries
from oda_fed.config import load_project
from oda_fed.coordinator.store import Store
from oda_fed.demo import evaluate
from oda_fed.encoding.evidence import linkage_layout
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc


def _by_fields(federation) -> list[tuple[str, int]]:
    federation.amend_project(lambda doc: doc["linkage"].update(method="fields"))
    return list(linkage_layout(load_project(federation.workdir / "project.toml").project.linkage))


def _round(federation):
    status = federation.run_round()
    assert status.state is RoundState.CLOSED, status.message
    return status


def _store(federation) -> Store:
    return Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")


def test_a_round_links_by_fields_and_its_evidence_follows_no_record(federation) -> None:
    layout = _by_fields(federation)
    assert {w for _, w in layout} == {32, 8} and len(layout) > 10
    status = _round(federation)
    first = status.round_id
    quality = evaluate(federation.workdir, federation.synthetic)
    assert quality.precision >= 0.97 and quality.recall >= 0.95, quality
    page = Path(status.report_path).with_name("quality.html").read_text()
    assert 'id="match-weights"' in page  # the weights the round learnt, for the coordinator

    # Both sides logged every CLK chunk as carrying field evidence, so a DPO sees it crossed.
    for log in (
        federation.workdir / "coordinator" / "audit" / "coordinator.jsonl",
        federation.workdir / "nodes" / "council" / "audit" / "council.jsonl",
    ):
        chunks = [e for e in read_entries(log) if e.kind == AuditKind.CLK_CHUNK]
        assert chunks and all(e.detail.get("evidence") is True for e in chunks), log

    second = _round(federation).round_id
    store = _store(federation)
    try:
        for partner in federation.partners:
            a, b = (
                store.uploads.evidence(round_id=r, partner=partner, layout=layout)
                for r in (first, second)
            )
            assert len(a) == len(b) == len(federation.synthetic.partners[partner])
            # The same extract twice: no filter or token of round one is in round two, so the
            # coordinator cannot follow a record by its evidence (empty filters, missing tokens
            # are alike in any round).
            for name, column in a.filters.items():
                seen = {row.tobytes() for row in column if row.any()}
                assert not any(row.tobytes() in seen for row in b.filters[name] if row.any()), name
                ones = lambda x: np.unpackbits(x.view(np.uint8)).sum()  # noqa: E731
                assert ones(column) == ones(b.filters[name])  # the same bits, moved
            for name, column in a.tokens.items():
                assert not (set(column[column != 0]) & set(b.tokens[name][b.tokens[name] != 0]))
    finally:
        store.close()
    assert (
        evaluate(federation.workdir, federation.synthetic, round_id=second).f1 >= quality.f1 - 0.01
    )


def test_a_receive_limit_leaves_room_for_the_evidence(tmp_path: Path) -> None:
    from oda_fed.transport.protocol import CHUNK_RECORDS, largest_node_message

    base = dict(clk_bits=1024, token_columns=0, record_keys=False, attributes=False)
    clk_only = largest_node_message(**base, table_dimensions=0)
    layout = [("first_name", 32), ("last_name", 32)] + [(f"t{i}", 8) for i in range(8)]
    fields = largest_node_message(**base, table_dimensions=0, evidence=tuple(w for _, w in layout))
    assert fields - clk_only >= CHUNK_RECORDS * sum(w for _, w in layout)
