"""`oda-fed demo` end to end: real processes, real mutual TLS, real SQLite, real audit logs, two
rounds. One run of the demo serves every check of this module."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from oda_fed.audit import cross_check, read_entries, verify_dir
from oda_fed.synth.events import END, EVENT_PROFILES
from oda_fed.synth.project import (
    ALERT_ID,
    CROSSTAB_ID,
    LIST_ID,
    LOCAL_ID,
    PRODUCT_ID,
    RATE_ID,
)
from oda_fed.transport.protocol import AuditKind

pytestmark = [pytest.mark.slow, pytest.mark.grpc]

MAP_ID = "known_to_several_services_map"
PARTNERS = ("council", "police", "social_care")


@dataclass(frozen=True)
class Run:
    workdir: Path
    out: str
    rounds: list[str]  # the round ids, oldest first

    def products(self, round_id: str) -> Path:
        return self.workdir / "coordinator" / "products" / round_id

    def received(self, partner: str, round_id: str, product: str) -> Path:
        folder = self.workdir / "nodes" / partner / "state" / "releases" / round_id / product
        return folder / f"{product}.csv"

    def entities(self, partner: str, round_id: str) -> dict[str, str]:
        """The partner's record ids -> entity ids of a round, unmasked with the coordinator's
        key (each node holds only its own pseudonyms)."""
        from oda_fed.coordinator.pseudonyms import Pseudonyms

        path = self.workdir / "nodes" / partner / "state" / "rounds" / round_id / "entities.csv"
        frame = read(path)
        names = Pseudonyms.load(self.workdir / "coordinator" / "state")
        return {r: names.unmask(partner, p)
                for r, p in zip(frame.record_id, frame.entity_id, strict=True)}  # fmt: skip


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    home = tmp_path_factory.mktemp("demo")
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(home)}
    if "PYTHONPATH" in os.environ:  # a checkout run without installing: its children need it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    proc = subprocess.run(
        [sys.executable, "-m", "oda_fed", "demo", "--workdir", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=home,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    workdir = home / "demo"
    rounds = sorted(p.name for p in (workdir / "coordinator" / "products").iterdir() if p.is_dir())
    return Run(workdir=workdir, out=out, rounds=rounds)


def test_both_rounds_close_with_good_linkage_and_a_dashboard_each(demo: Run) -> None:
    assert len(demo.rounds) == 2
    for match in re.finditer(r"precision (\d\.\d+), recall (\d\.\d+)", demo.out):
        precision, recall = map(float, match.groups())
        assert precision >= 0.95 and recall >= 0.95, demo.out
    assert len(re.findall(r"precision", demo.out)) == 2
    assert "released by auto_release" in demo.out and "released by operator:operator" in demo.out
    index = (demo.workdir / "coordinator" / "products" / "index.html").read_text()
    for round_id in demo.rounds:
        assert (demo.products(round_id) / "report.html").exists()
        assert f"./{round_id}/dashboard.html" in index
    assert "index.html" in demo.out
    # Four separate parties wrote four audit logs, and each keeps its signed checkpoints.
    parties = ["coordinator", "council", "police", "social_care"]
    logs = sorted(p.name for p in demo.workdir.rglob("*.jsonl"))
    assert logs == sorted(
        [f"{p}.jsonl" for p in parties] + [f"{p}.checkpoints.jsonl" for p in parties]
    )
    for partner in PARTNERS:
        assert (demo.workdir / "logs" / f"{partner}.log").read_text()


@pytest.mark.parametrize("product", [CROSSTAB_ID, RATE_ID, MAP_ID, PRODUCT_ID, LOCAL_ID])
def test_tables_and_the_map_are_released_with_suppressed_cells_never_shown_as_zero(
    demo: Run, product: str
) -> None:
    for round_id in demo.rounds:
        folder = demo.products(round_id)
        for kind in ("csv", "png", "html"):
            assert (folder / f"{product}.{kind}").exists(), (round_id, product, kind)
        table = read(folder / f"{product}.csv")
        hidden = table.suppressed == "true"
        assert (table.loc[hidden, "count"] == "suppressed").all()
        assert (table.loc[~hidden, "count"] != "suppressed").all()
        assert not (table["count"] == "").any()
        shown = table.loc[~hidden, "count"].astype(int)
        assert (shown % 5 == 0).all() and len(shown) > 0
        if "rate" in table.columns:
            assert (table.loc[hidden, "rate"] == "suppressed").all()
        # The recipients' nodes got exactly what the coordinator released.
        council = demo.received("council", round_id, product)
        assert council.read_text() == (folder / f"{product}.csv").read_text()
    every = pd.concat(read(demo.products(r) / f"{product}.csv") for r in demo.rounds)
    if product != MAP_ID:  # the map's cells (two or more services, by ward) are all large
        assert (every.suppressed == "true").any(), "the check above would mean nothing"


def test_the_councils_own_table_leaves_its_node_as_a_table_only(demo: Run) -> None:
    council = read_entries(demo.workdir / "nodes" / "council" / "audit" / "council.jsonl")
    sent = [e for e in council if e.kind == AuditKind.LOCAL_TABLE]
    assert [(e.round, e.detail["product"]) for e in sent] == [(r, LOCAL_ID) for r in demo.rounds]
    checked = [e for e in council if e.kind == AuditKind.DISCLOSURE_CHECKED]
    assert {e.detail["product"] for e in checked} == {LOCAL_ID}
    assert "local" in demo.out


def test_the_cross_tabulation_is_printed_and_has_every_combination(demo: Run) -> None:
    table = read(demo.products(demo.rounds[0]) / f"{CROSSTAB_ID}.csv")
    assert list(table.columns) == [
        "social_care.age", "police.incidents_12m", "count", "suppressed"
    ]  # fmt: skip
    assert len(table) == 4 * 4  # three age bands and three incident bands, each with "not known"
    assert "social_care.age \\ police.incidents_12m" in demo.out


def test_the_list_reaches_the_council_alone_with_its_own_record_ids_and_ranks(demo: Run) -> None:
    council_ids = set(read(demo.workdir / "data" / "council.csv").person_ref)
    for round_id in demo.rounds:
        listed = read(demo.received("council", round_id, LIST_ID))
        assert list(listed.columns) == ["record_id", "rank", "score_band", "groups"]
        assert len(listed) >= 10 and set(listed.record_id) <= council_ids
        assert listed["rank"].astype(int).is_monotonic_increasing
        assert set(listed["rank"]) == {"1", "2"} and set(listed.score_band) == {"5+", "3-4"}
        for partner in ("police", "social_care"):
            assert not demo.received(partner, round_id, LIST_ID).parent.exists()
        # The coordinator named the records by round refs; it never saw a council record id.
        at_coordinator = (demo.products(round_id) / f"{LIST_ID}.csv").read_text()
        assert not [r for r in listed.record_id if r in at_coordinator]
    assert re.search(
        rf"prioritised list {LIST_ID} to council only \(police, social_care: nothing\): \d+ of its own",
        demo.out,
    )


def test_the_alert_fires_in_round_two_at_social_care_alone(demo: Run) -> None:
    first, second = demo.rounds
    assert read(demo.received("social_care", first, ALERT_ID)).empty  # the baseline
    alerted = read(demo.received("social_care", second, ALERT_ID)).record_id
    assert len(alerted) >= 5  # k-anonymity: an alert of fewer is not released
    found = re.search(
        rf"alert {ALERT_ID} to social_care only \(council, police: nothing\): (\d+) of its own",
        demo.out,
    )
    assert found and int(found.group(1)) == len(alerted), demo.out
    for round_id in demo.rounds:
        for partner in ("council", "police"):
            assert not demo.received(partner, round_id, ALERT_ID).parent.exists()

    # Worked out from the nodes' own files: each alerted client's entity has a police record
    # with a domestic abuse incident in the 90 days to the end of the history, and nearly all
    # had none in the first extract, which stopped a month earlier.
    police = EVENT_PROFILES["police"]
    incidents = read(demo.workdir / "data" / "police_incidents.csv")
    day = pd.to_datetime(incidents[police.date_column], format=police.date_format)
    abuse = incidents[
        (incidents[police.type_column] == "domestic_abuse")
        & (day > pd.Timestamp(END - dt.timedelta(days=90)))
    ]
    first_extract = abuse[day[abuse.index] <= pd.Timestamp(dt.date(2026, 3, 1))]
    police_entity = demo.entities("police", second)
    care_entity = demo.entities("social_care", second)
    meeting = {police_entity[r] for r in abuse.nominal_id}
    before = {police_entity[r] for r in first_extract.nominal_id}
    entities = {care_entity[r] for r in alerted}
    assert entities <= meeting
    assert len(entities & before) <= len(entities) // 5


def test_round_two_waits_for_the_operator_over_a_held_cell_which_stays_suppressed(
    demo: Run,
) -> None:
    first, second = demo.rounds

    def held(round_id: str) -> list[tuple[str, dict[str, str]]]:
        """(disclosure report, coordinates) of each cell the ledger held in the round."""
        cells = []
        for path in sorted(demo.products(round_id).glob("*.disclosure.csv")):
            report = read(path)
            if "reason" in report.columns:  # not a list's or alert's counts of records
                dims = [c for c in report.columns if c not in ("decision", "reason", "published")]
                for _, row in report[report.decision == "held"].iterrows():
                    cells.append((path.name, {d: row[d] for d in dims}))
        return cells

    assert held(first) == []
    cells = held(second)
    assert len(cells) >= 1
    assert f"differs from its release {first}" in demo.out
    assert "awaiting_release: the release ledger held" in demo.out
    for report, cell in cells:
        product = report.split(".")[0]
        column = "denominator" if ".denominator." in report else "count"
        for table in (
            read(demo.products(second) / f"{product}.csv"),
            read(demo.received("council", second, product)),
        ):
            match = (table[list(cell)] == pd.Series(cell)).all(axis=1)
            assert table.loc[match, "suppressed"].tolist() == ["true"], cell
            assert table.loc[match, column].tolist() == ["suppressed"], cell
    # Round 1 was released automatically; round 2 only by the operator.
    log = demo.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    entries = read_entries(log)
    auto = [e.round for e in entries if e.kind == AuditKind.AUTO_RELEASE]
    by_operator = [e.round for e in entries if e.kind == AuditKind.RELEASE_ROUND]
    assert auto == [first] and by_operator == [second]


def test_the_audit_logs_verify_and_cross_check(demo: Run) -> None:
    assert "audit logs verified" in demo.out
    reports = verify_dir(demo.workdir)
    assert len(reports) == 4 and all(r.ok for r in reports)
    assert cross_check(reports) == []


def test_no_secret_file_is_handed_round_the_nodes_agree_one_the_coordinator_never_holds(
    demo: Run,
) -> None:
    from oda_fed.pki import read_secret, secret_fingerprints

    # Measured before: the demo copied one secret file to every node. Now there is none to copy.
    assert not list(demo.workdir.rglob("linkage.secret"))
    held = [
        list((demo.workdir / "nodes" / p / "state" / "keys").glob("linkage-*-v1.secret"))
        for p in PARTNERS
    ]
    assert all(len(files) == 1 for files in held)
    assert all(files[0].stat().st_mode & 0o777 == 0o600 for files in held)
    secrets = {read_secret(files[0]) for files in held}
    assert len(secrets) == 1
    needles = secret_fingerprints(secrets.pop())
    for path in (demo.workdir / "coordinator").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [n for n in needles if n in data], f"linkage secret found in {path}"
    kinds = [
        e.kind for e in read_entries(demo.workdir / "coordinator" / "audit" / "coordinator.jsonl")
    ]
    assert (
        kinds.count(AuditKind.WRAPPED_SECRETS) == 1 and kinds.count(AuditKind.WRAPPED_SECRET) == 3
    )


def test_a_folder_the_demo_did_not_write_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = subprocess.run(
        [sys.executable, "-m", "oda_fed", "demo", "--workdir", str(other)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "not an earlier demo folder" in refused.stderr
    assert (other / "keep.txt").read_text() == "x"
