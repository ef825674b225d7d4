"""A ``local`` product in a real federation: the council's node tabulates its own records, controls
the table there and sends only the table; the attribute it is made from never leaves the node. A
node that sends a table it did not control, or a table that is not its own, is refused."""

from __future__ import annotations

import json
import time
from collections import Counter

import grpc
import pandas as pd
import pytest

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.products.crosstab import NOT_KNOWN
from oda_fed.transport import serde
from oda_fed.transport.messages import LocalCell, LocalTable
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc

PRODUCT = "council_caseload"


def add_caseload(doc: dict) -> None:
    doc["attributes"].append(
        {"name": "age", "partner": "council", "derive": "age_band", "at": "2026-04-01",
         "bands": [0, 18, 65]}
    )  # fmt: skip
    doc["products"].append(
        {
            "id": PRODUCT,
            "kind": "local",
            "title": "The council's own caseload by ward and age",
            "owner": "council",
            "by": ["council.ward", "council.age"],
            "recipients": ["council", "police", "coordinator"],
        }
    )


def with_caseload(fed) -> None:
    fed.amend_project(add_caseload)
    column = fed.synthetic.profiles[0].columns["date_of_birth"]
    fed.edit_source("council", lambda source, _: source["attributes"].update(age=column))


def received_by(fed, partner: str, round_id: str) -> pd.DataFrame:
    folder = fed.workdir / "nodes" / partner / "state" / "releases" / round_id / PRODUCT
    assert (folder / f"{PRODUCT}.png").exists()
    return pd.read_csv(folder / f"{PRODUCT}.csv", dtype=str, keep_default_na=False)


def log_of(fed, party: str) -> list:
    folder = "coordinator" if party == "coordinator" else f"nodes/{party}"
    return read_entries(fed.workdir / folder / "audit" / f"{party}.jsonl")


def run_round(fed) -> str:
    """Run one round, which must close; its id."""
    status = fed.run_round()
    assert status.state is RoundState.CLOSED, status.message
    return status.round_id


def test_only_the_controlled_table_of_a_local_product_leaves_its_node(federation) -> None:
    with_caseload(federation)
    round_id = run_round(federation)

    # What the police received is what the coordinator holds: a controlled table.
    received = received_by(federation, "police", round_id)
    held = federation.workdir / "coordinator" / "products" / round_id / f"{PRODUCT}.csv"
    assert received.equals(pd.read_csv(held, dtype=str, keep_default_na=False))

    # Against a count by hand of the values the council's node derived for the round.
    prepared = federation.workdir / "nodes" / "council" / "state" / "rounds" / round_id
    ward, age = (
        json.loads((prepared / f"attribute-{n}.json").read_text()) for n in ("ward", "age")
    )
    truth = Counter((w or NOT_KNOWN, a or NOT_KNOWN) for w, a in zip(ward, age, strict=True))
    assert len(received) == len(set(received["council.ward"])) * 4  # every ward by every band
    for row in received.itertuples(index=False):
        true = truth[(row[0], row[1])]
        if true < 10:
            assert row.count == "suppressed", row
        elif row.count != "suppressed":
            assert int(row.count) % 5 == 0 and abs(int(row.count) - true) < 5, row

    # The crossing: one table out of the council's node, logged on both sides; no value of the
    # age band the product is made from crossed, and the node logged its control.
    council, coordinator = log_of(federation, "council"), log_of(federation, "coordinator")
    sent = [e for e in council if e.kind == AuditKind.LOCAL_TABLE]
    assert [(e.records, e.detail["product"]) for e in sent] == [(len(received), PRODUCT)]
    assert [e.payload_sha256 for e in coordinator if e.kind == AuditKind.LOCAL_TABLE] == [
        sent[0].payload_sha256
    ]
    shared = [e.detail["attribute"] for e in council if e.kind == AuditKind.ATTRIBUTE_CHUNK]
    assert shared and "age" not in shared
    checked = [e.detail for e in council if e.kind == AuditKind.DISCLOSURE_CHECKED]
    assert [d["product"] for d in checked] == [PRODUCT]
    reports = verify_dir(federation.workdir)
    assert all(r.ok for r in reports) and cross_check([r.path for r in reports]) == []

    # oda-fed analyse makes the same table with the council node's rounding key.
    node_key = federation.workdir / "nodes" / "council" / "state" / "disclosure" / "disclosure.key"
    analysed = federation.analyse(key=node_key)
    assert (analysed / f"{PRODUCT}.csv").read_text() == held.read_text()


def refused_tables(fed) -> list:
    return [e for e in log_of(fed, "coordinator") if e.kind == AuditKind.REFUSED_TABLE_UPLOAD]


def _table(fed, round_id: str, cells: list[LocalCell]) -> object:
    return serde.to_proto(
        LocalTable(round_id=round_id, project_fingerprint=fed.fingerprint, product_id=PRODUCT,
                   cells=tuple(cells))
    )  # fmt: skip


def test_a_table_the_node_did_not_control_is_refused_and_the_round_waits(
    federation, monkeypatch
) -> None:
    """The council's node is altered to send its suppressed cells as small counts: the
    coordinator refuses the table, keeps nothing of it, and the round waits for a controlled
    one until the operator cancels it. Another partner cannot send the council's table."""
    import oda_fed.products.local as local

    with_caseload(federation)
    honest = local.table_cells
    monkeypatch.setattr(
        local,
        "table_cells",
        lambda product: [(c, 3 if n is None else n) for c, n in honest(product)],
    )
    threads = [federation.run_node(p) for p in federation.partners]
    admin = federation.admin()
    round_id = admin.start_round().round_id
    deadline = time.monotonic() + 120
    while not refused_tables(federation) and time.monotonic() < deadline:
        time.sleep(0.2)
    status = admin.get_round(round_id)
    assert status.state is RoundState.ANALYSING, status.message

    channel, stub = federation.node_stub("police")
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadTable(_table(federation, round_id, [LocalCell(("E05000001", "65+"), False, 20)]))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel.close()

    admin.cancel_round(round_id, reason="the council's node sent an uncontrolled table")
    admin.close()
    for thread, _ in threads:
        thread.join(timeout=60)
    refused = refused_tables(federation)
    assert [e.sender for e in refused] == ["council", "police"]
    assert "below min_cell 10" in refused[0].detail["reason"]
    assert not [e for e in log_of(federation, "coordinator") if e.kind == AuditKind.LOCAL_TABLE]
    assert not (
        federation.workdir / "coordinator" / "products" / round_id / f"{PRODUCT}.csv"
    ).exists()
