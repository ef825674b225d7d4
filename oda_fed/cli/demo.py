"""``oda-fed demo``: a whole federation on localhost, shown as it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from oda_fed.cli._common import call, console, fail, shown, spinner, yes_no
from oda_fed.errors import AuditError

if TYPE_CHECKING:
    from oda_fed.coordinator.admin import RoundStatus
    from oda_fed.demo import DemoResult

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
    """Run a whole federation on localhost: coordinator + 3 nodes over mutual TLS, one round."""
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
    from oda_fed.products.released import SUPPRESSED, read_released_counts

    partners = Table(
        "partner",
        "records",
        "CLKs uploaded",
        "entity ids delivered",
        title="partners (each a separate process, mutual TLS)",
    )
    for p in result.status.partners:
        partners.add_row(
            p.partner, f"{p.records:,}", yes_no(p.uploaded), yes_no(p.entities_delivered)
        )
    console.print(partners)
    q = result.quality
    console.print(
        f"entities: {result.status.entities:,} ({result.status.linked_entities:,} known to "
        "two or more partners)"
    )
    console.print(
        f"linkage quality against the synthetic truth: precision [bold]{q.precision:.4f}[/], "
        f"recall [bold]{q.recall:.4f}[/], F1 {q.f1:.4f} "
        f"({q.true_positives:,} of {q.true_pairs:,} true pairs found)"
    )

    released = call(read_released_counts, result.product_csv)
    product = Table(
        "area",
        *[f"known to {c}" for c in released.table.columns],
        title="residents known to 1, 2 or 3 services, by ward "
        "(counts < 10 suppressed, others rounded to 5)",
    )
    for area, row in released.table.iterrows():
        product.add_row(area, *[f"[dim]{v}[/]" if v == SUPPRESSED else v for v in row])
    console.print(product)
    console.print(f"{released.suppressed_cells} of {released.cells} cells suppressed")

    audit = "[green]verified[/]" if result.audit_ok else "[bold red]FAILED[/]"
    console.print(
        f"audit logs {audit}: "
        + ", ".join(f"{k} {v}" for k, v in result.audit_entries.items())
        + " entries"
    )
    for problem in result.audit_problems:
        console.print(f"  {problem}", highlight=False, markup=False)
    console.print(f"product: {shown(result.product_csv)}")
    console.print(f"map: {shown(result.map_png)}")
    console.print(f"HTML report: [bold]{shown(result.report)}[/]")
    console.print(
        f"released products for partners and councillors: "
        f"{shown(result.report.parent.parent / 'index.html')}"
    )
    console.print(
        f"linkage quality estimated without truth: {shown(result.report.with_name('quality.html'))}"
    )
    console.print(f"finished in {result.seconds:.1f}s; everything is under {shown(result.workdir)}")
