"""``oda-fed coordinator``: serve the coordinator, and operate rounds on a running one.

Operator commands talk to the coordinator's Admin service with the operator certificate named in
coordinator.toml. Each opens the connection with :func:`operator`, and shows a round with
:func:`status_table` (and :func:`follow` while it runs), so a new command is a few lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from oda_fed.cli._common import (
    LogFormatOption,
    MetricsOption,
    call,
    console,
    setup_logging,
    spinner,
    yes_no,
)

if TYPE_CHECKING:
    from oda_fed.coordinator.admin import AdminClient, RoundStatus

app = typer.Typer(
    help="Run and operate the coordinator (the ODA's linkage unit).", no_args_is_help=True
)

OperatorConfig = Annotated[
    # Escaped: typer's help takes [words] as rich markup and would drop it.
    Path, typer.Option(help="coordinator.toml (with an \\[operator] section).")
]


@contextmanager
def operator(config: Path) -> Iterator[AdminClient]:
    """An Admin client for the coordinator that ``config`` describes, closed on the way out."""
    from oda_fed.config import load_coordinator_config
    from oda_fed.coordinator.admin import AdminClient

    client = AdminClient(load_coordinator_config(config))
    try:
        yield client
    finally:
        client.close()


def status_table(status: RoundStatus) -> Table:
    """A round's state and each partner's progress."""
    table = Table(
        "partner",
        "connected",
        "records",
        "uploaded",
        "entity ids delivered",
        "last error",
        title=f"round {status.round_id}: {status.state}",
    )
    for p in status.partners:
        table.add_row(
            p.partner,
            yes_no(p.connected),
            str(p.records),
            yes_no(p.uploaded),
            yes_no(p.entities_delivered),
            # Text, not markup: the reason comes from a node.
            Text(p.last_error or "-"),
        )
    return table


def show(status: RoundStatus) -> None:
    """Print a round: its partners, its products and who they go to, and what happens next."""
    from oda_fed.transport.protocol import printable  # what a node reported may hold escapes

    console.print(status_table(status))
    if status.products:
        products = Table(
            "product", "cells", "suppressed", "recipients", title="products of this round"
        )
        for p in status.products:
            products.add_row(p.product_id, str(p.cells), str(p.suppressed), ", ".join(p.recipients))
        console.print(products)
    if status.message:
        console.print(printable(status.message), markup=False, highlight=False)
    if status.released_by:
        console.print(f"released by {status.released_by}", markup=False)
    elif not status.finished and status.deadline:
        console.print(f"cancelled at {status.deadline} unless released by then", markup=False)
    for label, path in (
        ("report", status.report_path),
        ("quality report", status.quality_report_path),
    ):
        if path:
            console.print(f"{label}: {path}", markup=False, highlight=False)


def follow(client: AdminClient, round_id: str, *, timeout: float) -> RoundStatus:
    """Wait for a round to finish, showing its state on a progress line; return its last status."""
    with spinner() as progress:
        task = progress.add_task("waiting", total=None)
        return client.wait(
            round_id,
            timeout=timeout,
            on_status=lambda s: progress.update(task, description=f"{s.state}: {s.message}"),
        )


@app.command("serve")
def coordinator_serve(
    config: Annotated[Path, typer.Option(help="coordinator.toml")],
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port here once serving.")
    ] = None,
    accept_empty_state: Annotated[
        bool,
        typer.Option(
            help="Start although state the audit log shows in use was lost: the database "
            "(missing or empty after earlier rounds), the rounding key or release ledger (after "
            "releases) or the pseudonym key (after entity ids were sent). What it held is gone. "
            "Restore state_dir (and the PostgreSQL database, if used) from a backup instead if you "
            "can. Written to the audit log."
        ),
    ] = False,
    metrics: MetricsOption = None,
    log_format: LogFormatOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the coordinator over mutual TLS until SIGTERM or Ctrl-C."""
    from oda_fed.config import load_coordinator_config, metrics_address
    from oda_fed.coordinator.server import serve

    cfg = call(load_coordinator_config, config)
    if metrics is not None:
        cfg = cfg.model_copy(update={"metrics": call(metrics_address, metrics)})
    setup_logging(verbose, log_format or cfg.log_format)
    call(serve, cfg, config_path=config, port_file=port_file, accept_empty_state=accept_empty_state)


@app.command("start-round")
def coordinator_start_round(
    config: OperatorConfig,
    wait: Annotated[
        bool, typer.Option(help="Follow the round until it ends or awaits release.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 3600,
) -> None:
    """Start a linkage round on a running coordinator."""
    call(_start_round, config, wait=wait, timeout=timeout)


def _start_round(config: Path, *, wait: bool, timeout: float) -> None:
    with operator(config) as client:
        status = client.start_round()
        console.print(f"started round {status.round_id}")
        if wait:
            status = follow(client, status.round_id, timeout=timeout)
        show(status)


@app.command("status")
def coordinator_status(
    config: OperatorConfig,
    round_id: Annotated[str, typer.Option("--round", help="Round id (default: the latest).")] = "",
) -> None:
    """Show a round's state, each partner's progress, its products and its deadline."""
    show(call(_round_status, config, round_id=round_id))


def _round_status(config: Path, *, round_id: str) -> RoundStatus:
    with operator(config) as client:
        return client.get_round(round_id)


@app.command("release")
def coordinator_release(
    round_id: Annotated[str, typer.Argument(metavar="ROUND", help="The round awaiting release.")],
    config: OperatorConfig,
    wait: Annotated[bool, typer.Option(help="Follow the round until it closes.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 3600,
) -> None:
    """Release a reviewed round's products to their recipients (audited with your name).

    Review the round's report.html and quality.html first (`status` shows where they are):
    nothing has gone to any partner before this.
    """
    call(_release, config, round_id=round_id, wait=wait, timeout=timeout)


def _release(config: Path, *, round_id: str, wait: bool, timeout: float) -> None:
    with operator(config) as client:
        status = client.release_round(round_id)
        console.print(f"released the products of round {round_id}", markup=False)
        if wait and not status.finished:
            status = follow(client, round_id, timeout=timeout)
        show(status)


@app.command("cancel-round")
def coordinator_cancel_round(
    round_id: Annotated[str, typer.Argument(metavar="ROUND", help="The round to cancel.")],
    reason: Annotated[
        str,
        typer.Option(help="Why, in a few words with no personal data: every partner is told."),
    ],
    config: OperatorConfig,
) -> None:
    """Cancel a round not yet released: nothing more is matched, shared or released (audited)."""
    status = call(_cancel, config, round_id=round_id, reason=reason)
    show(status)


def _cancel(config: Path, *, round_id: str, reason: str) -> RoundStatus:
    with operator(config) as client:
        return client.cancel_round(round_id, reason=reason)
