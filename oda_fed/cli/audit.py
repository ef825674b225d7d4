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
def audit_verify(
    directory: LogFolder,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="The signed project.toml: every partner and the coordinator must hand in a "
            "log, and every crossing must be one it allows.",
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="The partnership CA certificate: checkpoints must be signed with "
            "certificates it issued.",
        ),
    ] = None,
) -> None:
    """Check every audit log and signed checkpoint, and that the logs agree with each other and
    with the project.

    Each log's hash chain; every checkpoint's signatures, and that its owner's log still extends
    it (a log rewritten, truncated or deleted after another party cosigned its checkpoint fails);
    that every expected party handed in its log; that each crossing is in both sides' logs with
    the same counts; and, with --project, that the project allowed it.
    """
    from oda_fed.audit.folder import verify_folder
    from oda_fed.config import load_project
    from oda_fed.pki.trust import load_certificate

    loaded = call(load_project, project) if project is not None else None
    ca_cert = call(load_certificate, ca, what="CA certificate") if ca is not None else None
    report = call(verify_folder, directory, project=loaded, ca=ca_cert)
    if not report.logs and not report.parties:
        _no_logs(directory)
    for log in report.logs:
        mark = "[green]ok[/]" if log.ok else "[bold red]FAILED[/]"
        party = log.party or log.path.stem
        witnessed = report.witnessed.get(party, 0)
        console.print(
            f"{mark}  {escape(str(log.path))}  ({log.entries} entries, party "
            f"{escape(party)}, {witnessed} witnessed)"
        )
        for problem in log.problems:
            console.print(f"      {problem}", highlight=False, markup=False)
    sections = (
        ("missing log", report.parties),
        ("checkpoint", report.checkpoints),
        ("cross-check", report.crossings),
        ("not allowed", report.agreement),
    )
    for title, problems in sections:
        for problem in problems:
            console.print(f"[bold red]{title}:[/] {escape(problem)}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if not report.ok:
        raise typer.Exit(AuditError.exit_code)
    console.print(f"[green]all {len(report.logs)} log(s) verified[/]")


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
