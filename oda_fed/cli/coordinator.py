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

from oda_fed.cli._common import call, console, setup_logging, spinner, yes_no

if TYPE_CHECKING:
    from oda_fed.coordinator.admin import AdminClient, RoundStatus

app = typer.Typer(
    help="Run and operate the coordinator (the ODA's linkage unit).", no_args_is_help=True
)

OperatorConfig = Annotated[
    Path, typer.Option(help="coordinator.toml (with an [operator] section).")
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
        title=f"round {status.round_id}: {status.state}",
    )
    for p in status.partners:
        table.add_row(
            p.partner,
            yes_no(p.connected),
            str(p.records),
            yes_no(p.uploaded),
            yes_no(p.entities_delivered),
        )
    return table


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the coordinator over mutual TLS until SIGTERM or Ctrl-C."""
    from oda_fed.config import load_coordinator_config
    from oda_fed.coordinator.server import serve

    setup_logging(verbose)
    cfg = call(load_coordinator_config, config)
    call(serve, cfg, config_path=config, port_file=port_file)


@app.command("start-round")
def coordinator_start_round(
    config: OperatorConfig,
    wait: Annotated[bool, typer.Option(help="Follow the round until it closes.")] = True,
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
        console.print(status_table(status))
        if status.message:
            console.print(status.message, markup=False)
        if status.report_path:
            console.print(f"report: {status.report_path}")


@app.command("status")
def coordinator_status(
    config: OperatorConfig,
    round_id: Annotated[str, typer.Option("--round", help="Round id (default: the latest).")] = "",
) -> None:
    """Show a round's state and each partner's progress."""
    status = call(_round_status, config, round_id=round_id)
    console.print(status_table(status))
    console.print(status.message, markup=False)


def _round_status(config: Path, *, round_id: str) -> RoundStatus:
    with operator(config) as client:
        return client.get_round(round_id)
