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
def audit_report(directory: LogFolder) -> None:
    """Summarise what crossed each boundary: message kinds, records and bytes, per direction."""
    from oda_fed.audit import summarise_dir

    summaries = call(summarise_dir, directory)
    if not summaries:
        _no_logs(directory)
    for summary in summaries:
        log = summary.log
        table = Table(
            "sender",
            "recipient",
            "kind",
            "messages",
            "records",
            "bytes",
            title=f"{log.path} ({'verified' if log.ok else 'FAILED verification'})",
        )
        for c in summary.crossings:
            table.add_row(
                c.sender, c.recipient, c.kind, *map(str, (c.messages, c.records, c.bytes))
            )
        console.print(table)
    failed = sum(not s.log.ok for s in summaries)
    if failed:
        fail(
            f"{failed} of {len(summaries)} log(s) failed verification: their totals are what "
            "they claim, not what happened; `oda-fed audit verify` says where",
            exit_code=AuditError.exit_code,
        )
