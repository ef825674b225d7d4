"""``oda-fed audit``: verify the parties' audit logs and summarise what crossed (for DPOs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from oda_fed.cli._common import call, console, fail
from oda_fed.errors import AuditError

app = typer.Typer(help="Verify and summarise audit logs (for DPOs).", no_args_is_help=True)

LogFolder = Annotated[Path, typer.Argument(help="Folder holding *.jsonl audit logs.")]


def _no_logs(directory: Path) -> None:
    fail(f"no audit logs (*.jsonl) under {directory}", exit_code=AuditError.exit_code)


@app.command("verify")
def audit_verify(directory: LogFolder) -> None:
    """Check every audit log's hash chain, and that both sides of each crossing agree."""
    from oda_fed.audit import cross_check, verify_dir

    reports = call(verify_dir, directory)
    if not reports:
        _no_logs(directory)
    bad = False
    for report in reports:
        mark = "[green]ok[/]" if report.ok else "[bold red]FAILED[/]"
        console.print(f"{mark}  {report.path}  ({report.entries} entries, party {report.party})")
        for problem in report.problems:
            console.print(f"      {problem}", highlight=False, markup=False)
        bad |= not report.ok
    mismatches = cross_check(reports) if len(reports) > 1 else []
    for problem in mismatches:
        console.print(f"[bold red]cross-check:[/] {escape(problem)}", highlight=False)
    if bad or mismatches:
        raise typer.Exit(AuditError.exit_code)
    console.print(f"[green]all {len(reports)} log(s) verified[/]")


@app.command("report")
def audit_report(
    directory: LogFolder,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="The signed project.toml: names the project and each product's recipients, "
            "and flags entries under another fingerprint.",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the DPO report as one HTML page here.")
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Write every log's totals here, one row per round, "
            "direction, kind and attribute or product.",
        ),  # fmt: skip
    ] = None,
) -> None:
    """Summarise what crossed each boundary: per direction and kind on the console; with --html
    and --csv, the DPO report (project, rounds, time span, attributes and products that left
    and their recipients, refusals, deletions, operator acts)."""
    from oda_fed.audit.report import dpo_report
    from oda_fed.config import load_project

    loaded = call(load_project, project) if project is not None else None
    report = call(dpo_report, directory, project=loaded)
    if not report.logs:
        _no_logs(directory)
    for summary in report.logs:
        log = summary.log
        table = Table(
            "sender",
            "recipient",
            "kind",
            "messages",
            "records",
            "bytes",
            "resent/discarded",
            title=escape(f"{log.path} ({'verified' if log.ok else 'FAILED verification'})"),
        )
        for c in summary.by_direction():
            numbers = (c.messages, c.records, c.bytes, c.resends + c.discarded)
            table.add_row(c.sender, c.recipient, c.kind, *map(str, numbers))
        console.print(table)
    if report.span is not None:
        rounds = sum(r.round is not None for r in report.rounds)
        console.print(
            f"{rounds} round(s) from {report.span[0]} to {report.span[1]}", highlight=False
        )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if html is not None or csv is not None:
        from oda_fed.audit.dpo import write_report_files

        for path in call(write_report_files, report, html=html, csv_path=csv):
            console.print(f"wrote {escape(str(path))}", highlight=False)
    if report.failed:
        fail(
            f"{len(report.failed)} of {len(report.logs)} log(s) failed verification: their totals "
            "are what they claim, not what happened; `oda-fed audit verify` says where",
            exit_code=AuditError.exit_code,
        )
