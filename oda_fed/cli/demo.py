"""``oda-fed demo``: a whole federation on localhost, shown as it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from oda_fed.cli._common import call, console, fail, shown, spinner, yes_no
from oda_fed.errors import AuditError

if TYPE_CHECKING:
    from oda_fed.coordinator.admin import RoundStatus
    from oda_fed.demo import DemoResult, RoundResult

app = typer.Typer()


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path(
        "demo-run"
    ),
    population: Annotated[
        int, typer.Option(min=100, help="People in the synthetic population.")
    ] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed for the synthetic data.")] = 7,
    errors: Annotated[str, typer.Option(help="Error level: low, medium or high.")] = "medium",
) -> None:
    """Run a whole federation on localhost: coordinator + 3 nodes over mutual TLS, two rounds."""
    from oda_fed.demo import run_demo
    from oda_fed.synth import error_level

    level = call(error_level, errors)  # before the demo clears its folder
    console.rule("[bold]oda-fed demo")
    with spinner() as progress:
        task = progress.add_task("starting", total=None)

        def step(msg: str) -> None:
            console.log(msg)
            progress.update(task, description=msg)

        def on_status(s: RoundStatus) -> None:
            done = sum(p.uploaded for p in s.partners)
            progress.update(
                task,
                description=f"round {s.round_id}: {s.state} "
                f"({done}/{len(s.partners)} uploaded) {s.message}",
            )

        result = call(
            run_demo,
            workdir,
            population=population,
            seed=seed,
            errors=level,
            on_step=step,
            on_status=on_status,
        )
    _print_result(result)
    if not result.audit_ok:
        fail("audit verification failed", exit_code=AuditError.exit_code)


def _print_result(result: DemoResult) -> None:
    first, second = result.rounds[0], result.rounds[-1]
    _print_partners(first)
    console.rule(f"[bold]round 1[/] {first.round_id}: released by {first.status.released_by}")
    _print_linkage(first)
    _print_crosstab(first)
    _print_records(result, first)
    if result.changes is not None:
        _print_changes(result)
    console.rule(f"[bold]round 2[/] {second.round_id}: released by {second.status.released_by}")
    console.print(
        "records: " + ", ".join(f"{p.partner} {p.records:,}" for p in second.status.partners),
        highlight=False,
    )
    _print_linkage(second)
    _print_hold(second)
    _print_records(result, second)
    console.rule("[bold]what each round released")
    _print_products(result)
    _print_files(result, second)


def _print_partners(first: RoundResult) -> None:
    partners = Table(
        "partner",
        "records",
        "CLKs uploaded",
        "entity ids delivered",
        title="partners (each a separate process, mutual TLS)",
    )
    for p in first.status.partners:
        partners.add_row(
            p.partner, f"{p.records:,}", yes_no(p.uploaded), yes_no(p.entities_delivered)
        )
    console.print(partners)


def _print_linkage(r: RoundResult) -> None:
    q = r.quality
    console.print(
        f"entities: {r.status.entities:,} ({r.status.linked_entities:,} known to two or more "
        f"partners); linkage quality against the synthetic truth: precision "
        f"[bold]{q.precision:.4f}[/], recall [bold]{q.recall:.4f}[/], F1 {q.f1:.4f} "
        f"({q.true_positives:,} of {q.true_pairs:,} true pairs found)"
    )


def _print_products(result: DemoResult) -> None:
    """One row per product: its recipients, and per round its cells (rows of a list or
    alert) and how many were suppressed (withheld)."""
    rounds = [{p.product_id: p for p in r.status.products} for r in result.rounds]
    table = Table(
        Column("product", no_wrap=True),
        Column("kind", no_wrap=True),
        "released to",
        *[Column(f"round {n}", justify="right") for n in range(1, len(rounds) + 1)],
        title="cells (a list's or alert's rows) / of them suppressed (withheld); "
        "counts < 10 suppressed, others rounded to 5",
    )
    partners = set(result.records)
    for product_id, kind in result.kinds.items():
        summaries = [r.get(product_id) for r in rounds]
        recipients = next(s.recipients for s in summaries if s is not None)
        if partners | {"coordinator"} <= set(recipients):
            recipients = ("every partner", "coordinator")
        table.add_row(
            product_id,
            kind.replace("partner_count_by_area", "count by area"),
            ", ".join(recipients),
            *["" if s is None else f"{s.cells:,} / {s.suppressed:,}" for s in summaries],
        )
    console.print(table)


def _print_crosstab(r: RoundResult) -> None:
    import pandas as pd

    from oda_fed.synth.project import CROSSTAB_ID

    path = r.products / f"{CROSSTAB_ID}.csv"
    cells = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows, columns = cells.columns[:2]
    table = cells.pivot(index=rows, columns=columns, values="count")
    shown_table = Table(
        f"{rows} \\ {columns}",
        *[str(c) for c in table.columns],
        title="a cross-tabulation: residents known to two or more services,\n"
        "by age band and police incidents in the year",
    )
    for label, row in table.iterrows():
        shown_table.add_row(str(label), *[f"[dim]{v}[/]" if v == "suppressed" else v for v in row])
    console.print(shown_table)


def _print_records(result: DemoResult, r: RoundResult) -> None:
    from oda_fed.synth.project import ALERT_ID, LIST_ID

    for product, what in ((LIST_ID, "prioritised list"), (ALERT_ID, "alert")):
        received = r.records.get(product, {})
        others = sorted(set(result.records) - set(received))
        for owner, rows in received.items():
            path = (
                result.workdir / "nodes" / owner / "state" / "releases" / r.round_id / product
            ) / f"{product}.csv"
            if product == ALERT_ID and r is result.rounds[0]:
                note = f"the first release sets the baseline: {rows} records alerted"
            elif product == ALERT_ID:
                note = f"{rows:,} of its own records newly alerted"
            else:
                note = f"{rows:,} of its own records; {_bands(path)}"
            console.print(
                f"{what} [bold]{product}[/] to [bold]{owner}[/] only "
                f"({', '.join(others)}: nothing): {note}",
                highlight=False,
            )
            console.print(f"  {shown(path)}", highlight=False, soft_wrap=True)


def _bands(path: Path) -> str:
    """How many of a list's records each rank (score band) holds."""
    import pandas as pd

    ranks = pd.read_csv(path, dtype=str).groupby(["rank", "score_band"]).size()
    return ", ".join(f"rank {rank} (score {band}) {n}" for (rank, band), n in ranks.items())


def _print_changes(result: DemoResult) -> None:
    from oda_fed.synth.events import EVENT_PROFILES

    changes = result.changes
    assert changes is not None
    console.rule("[bold]between the rounds")
    events = ", ".join(
        f"{p} +{n:,} {EVENT_PROFILES[p].name}" for p, n in changes.new_events.items()
    )
    console.print(
        f"the partners refresh their extracts a month on: {events}; the council closes "
        f"{len(changes.closed)} records of residents of ward {changes.ward} who moved away "
        "(fewer than min_cell)",
        highlight=False,
    )


def _print_hold(r: RoundResult) -> None:
    if r.awaiting is None:
        console.print("the release ledger held nothing: released at once")
        return
    console.print(
        f"[bold yellow]{r.awaiting.state}[/]: the release ledger held {len(r.held)} cell(s)",
        highlight=False,
    )
    for h in r.held:
        cell = ", ".join(f"{k}={v}" for k, v in h.cell.items())
        console.print(
            f"  {h.product} ({cell}): {h.reason}; released as '{h.published}'", highlight=False
        )
    console.print(
        f"the operator reviews {shown(r.report)} and releases it "
        f"(`oda-fed coordinator release {r.round_id}`); the held cells stay suppressed",
        highlight=False,
    )


def _print_files(result: DemoResult, r: RoundResult) -> None:
    from oda_fed.demo import MAP_ID

    audit = "[green]verified[/]" if result.audit_ok else "[bold red]FAILED[/]"
    console.print(
        f"audit logs {audit}, cross-checked and witnessed: "
        + ", ".join(
            f"{k} {v} entries ({result.audit_witnessed.get(k, 0)} under a cosigned checkpoint)"
            for k, v in result.audit_entries.items()
        )
    )
    for problem in result.audit_problems:
        console.print(f"  {problem}", highlight=False, markup=False)
    console.rule("[bold]where to look")
    console.print(f"every product as CSV, PNG and HTML: {shown(r.products.parent)}/<round>/")
    console.print(f"map: {shown(r.products / f'{MAP_ID}.png')}")
    console.print(f"round report (internal): [bold]{shown(r.report)}[/]")
    console.print(
        f"linkage quality estimated without truth: {shown(r.report.with_name('quality.html'))}"
    )
    console.print(
        f"released products for partners and councillors (dashboard index): "
        f"{shown(r.products.parent / 'index.html')}"
    )
    console.print(
        "what each node received: "
        f"{shown(result.workdir / 'nodes')}/<partner>/state/releases/<round>/<product>/"
    )
    console.print(f"finished in {result.seconds:.1f}s; everything is under {shown(result.workdir)}")
