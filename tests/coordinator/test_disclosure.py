"""Disclosure control across rounds in a real federation: keyed rounding, complements for the
area partner's row totals, and the release ledger holding a differencing release."""

from __future__ import annotations

import pandas as pd
import pytest

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc

PRODUCT = "known_to_services_by_ward"


def round_until_held_or_closed(fed):
    threads = [fed.run_node(p) for p in fed.partners]
    admin = fed.admin()
    status = admin.wait(admin.start_round().round_id, timeout=120)
    return admin, status, threads


def join(threads) -> None:
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not errors, errors


def released(fed, round_id: str) -> pd.DataFrame:
    path = fed.workdir / "nodes" / "police" / "state" / "releases" / round_id / PRODUCT
    return pd.read_csv(path / f"{PRODUCT}.csv", dtype=str, keep_default_na=False)


def test_a_release_one_record_away_from_the_last_is_held_for_the_operator(federation) -> None:
    admin, first, threads = round_until_held_or_closed(federation)
    assert first.state is RoundState.CLOSED, first.message  # the demo project auto-releases
    join(threads)

    # The police adds one record (a copy of one of its rows under a new id): one entity more,
    # known to the police alone, so outside any ward. Differencing the two releases would give
    # that one person away.
    profile = federation.synthetic.profiles[1]
    csv = federation.workdir / "data" / "police.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    extra = frame.head(1).copy()
    extra[profile.record_id_column] = "DUMMY0001"
    pd.concat([frame, extra]).to_csv(csv, index=False)

    round_id = admin.start_round().round_id
    threads = [federation.run_node(p) for p in federation.partners]
    second = admin.wait(round_id, timeout=120)
    # auto_release is on, but a held cell needs an operator.
    assert second.state is RoundState.AWAITING_RELEASE, second.message
    assert "the release ledger held" in second.message
    assert "area=area not known, partners=1" in second.message
    assert f"differs from its release {first.round_id}" in second.message
    admin.release_round(second.round_id)
    closed = admin.wait(second.round_id, timeout=60)
    admin.close()
    assert closed.state is RoundState.CLOSED
    join(threads)

    # The held cell went out suppressed; so did cells in its row, so it cannot be worked back.
    now = released(federation, second.round_id)
    cell = now[(now.area == "area not known") & (now.partners == "1")]
    assert cell.suppressed.tolist() == ["true"] and cell["count"].tolist() == ["suppressed"]
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    checked = [e for e in read_entries(log) if e.kind == AuditKind.DISCLOSURE_CHECKED]
    assert [e.round for e in checked] == [first.round_id, second.round_id]
    assert "held" not in checked[0].detail and checked[1].detail["held"] >= 1
    federation.stop_coordinator()
    reports = verify_dir(federation.workdir)
    assert all(r.ok for r in reports) and cross_check(reports) == []


def test_every_released_ward_row_leaves_no_single_suppressed_cell(federation) -> None:
    """The council knows how many of its records are in each ward: a row with one suppressed
    cell would give that cell back. Every ward row has none, or two or more, suppressed."""
    admin, status, threads = round_until_held_or_closed(federation)
    admin.close()
    join(threads)
    table = released(federation, status.round_id)
    wards = table[table.area != "area not known"]
    per_row = wards.groupby("area")["suppressed"].apply(lambda s: (s == "true").sum())
    assert not (per_row == 1).any(), per_row[per_row == 1]
    assert (per_row >= 2).any()  # the test means something: some rows have suppressed cells
    # Published counts are multiples of the rounding base.
    shown = table[table.suppressed == "false"]["count"].astype(int)
    assert (shown % 5 == 0).all()
    # The coordinator's disclosure report is beside the product, and never sent.
    internal = federation.workdir / "coordinator" / "products" / status.round_id
    report = pd.read_csv(internal / f"{PRODUCT}.disclosure.csv", dtype=str)
    assert "suppressed (primary)" in set(report.decision)
    assert list(report.columns) == ["area", "partners", "decision", "reason", "published"]
    page = (internal / "report.html").read_text()
    assert "Disclosure control of its cells" in page and "suppressed (primary)" in page
    node = federation.workdir / "nodes" / "police" / "state" / "releases" / status.round_id
    assert not list(node.rglob("*.disclosure.csv"))
