"""`oda-fed audit verify` and `audit report` on real logs, good and tampered."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from oda_fed.audit import AuditLog
from oda_fed.cli import app

runner = CliRunner(env={"COLUMNS": "200"})  # no wrapping inside the lines checked
PROJECT = "sha256:" + "ab" * 32


def _log(
    path: Path, party: str, other: str, *, records: tuple[int, ...], sender: str | None = None
) -> Path:
    """``party``'s log of CLK chunks sent to ``other`` (or received from ``sender``)."""
    with AuditLog(path, party=party) as log:
        for i, n in enumerate(records):
            log.append(
                sender=sender or party,
                recipient=other if sender is None else party,
                kind="clk_chunk",
                project=PROJECT,
                payload=f"chunk {i}".encode(),
                records=n,
                round_id="r1",
            )
    return path


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "audit"
    _log(folder / "council.jsonl", "council", "coordinator", records=(100, 50))
    # Both sides of every crossing: a party's log missing from the folder fails verification.
    _log(folder / "coordinator.jsonl", "coordinator", "", records=(100, 50), sender="council")
    return folder


def test_verify_and_report_a_good_log(logs: Path) -> None:
    verified = runner.invoke(app, ["audit", "verify", str(logs)])
    assert verified.exit_code == 0, verified.output
    assert "all 2 log(s) verified" in verified.output
    report = runner.invoke(app, ["audit", "report", str(logs)])
    assert report.exit_code == 0, report.output
    assert "(verified)" in report.output
    row = next(line for line in report.output.splitlines() if "clk_chunk" in line)
    assert [c.strip() for c in row.split("│")[1:6]] == [
        "council",
        "coordinator",
        "clk_chunk",
        "2",
        "150",
    ]


def test_a_tampered_log_fails_both_commands_with_code_6(logs: Path) -> None:
    path = logs / "council.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"records":50', b'"records":5', 1))
    verified = runner.invoke(app, ["audit", "verify", str(logs)])
    assert verified.exit_code == 6 and "FAILED" in verified.output
    assert "was edited" in verified.output
    report = runner.invoke(app, ["audit", "report", str(logs)])
    assert report.exit_code == 6
    assert "FAILED verification" in report.output and "1 of 2 log(s) failed" in report.output


def test_no_logs_or_no_folder_is_one_line_and_code_6(tmp_path: Path) -> None:
    for command in ("verify", "report"):
        empty = runner.invoke(app, ["audit", command, str(tmp_path)])
        assert empty.exit_code == 6 and "no audit logs" in empty.output
        missing = runner.invoke(app, ["audit", command, str(tmp_path / "nowhere")])
        assert missing.exit_code == 6
        assert missing.output.startswith("error:") and "not a folder" in missing.output
        assert "Traceback" not in missing.output


def test_report_writes_the_dpo_page_and_csv_named_against_the_project(
    logs: Path, tmp_path: Path
) -> None:
    project = Path(__file__).resolve().parents[2] / "coordinator" / "project.example.toml"
    out = tmp_path / "dpo"
    result = runner.invoke(
        app,
        ["audit", "report", str(logs), "--project", str(project),
         "--html", str(out / "report.html"), "--csv", str(out / "report.csv")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'}" in result.output
    assert "1 round(s) from" in result.output
    # The logs are under another fingerprint than the example project's: said, not hidden.
    assert f"warning: 4 entries are under project {PROJECT}" in result.output
    page = (out / "report.html").read_text()
    assert "known-to-services" in page and "not the given project" in page
    header, *rows = (out / "report.csv").read_text().splitlines()
    assert header.startswith("log_file,log_party,log_verified,project,round,sender,recipient")
    # One row per log: both sides of the same two chunks.
    assert [r.split(",150,", 1)[0] for r in rows] == [
        f"{party}.jsonl,{party},yes,{PROJECT},r1,council,coordinator,clk_chunk,,,2,0,0"
        for party in ("coordinator", "council")
    ]


def test_report_refuses_to_write_over_a_log_or_read_a_bad_project(
    logs: Path, tmp_path: Path
) -> None:
    log = logs / "council.jsonl"
    before = log.read_bytes()
    over = runner.invoke(app, ["audit", "report", str(logs), "--csv", str(log)])
    assert over.exit_code == 6 and "is one of the audit logs read" in over.output
    assert log.read_bytes() == before
    bad = tmp_path / "project.toml"
    bad.write_text("name = ")
    wrong = runner.invoke(app, ["audit", "report", str(logs), "--project", str(bad),
                                "--html", str(tmp_path / "r.html")])  # fmt: skip
    assert wrong.exit_code == 2 and wrong.output.startswith("error:")
    assert "Traceback" not in wrong.output and not (tmp_path / "r.html").exists()
