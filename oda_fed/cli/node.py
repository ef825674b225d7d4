"""``oda-fed node``: run a partner's node, which dials out to the coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oda_fed.cli._common import LogFormatOption, MetricsOption, call, console, setup_logging
from oda_fed.cli.keys import app as keys_app

app = typer.Typer(help="Run and check a partner's node.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command("run")
def node_run(
    config: Annotated[Path, typer.Option(help="node.toml")],
    rounds: Annotated[int | None, typer.Option(help="Exit after this many rounds close.")] = None,
    give_up_after: Annotated[
        float | None,
        typer.Option(help="Exit if the coordinator stays unreachable this many seconds."),
    ] = None,
    metrics: MetricsOption = None,
    log_format: LogFormatOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the node: dial out to the coordinator and do this partner's part of each round."""
    from oda_fed.config import load_node_config, metrics_address
    from oda_fed.node.agent import NodeAgent

    cfg = call(load_node_config, config)
    if metrics is not None:
        cfg = cfg.model_copy(update={"metrics": call(metrics_address, metrics)})
    setup_logging(verbose, log_format or cfg.log_format)
    agent = call(NodeAgent, cfg, config_path=config)
    try:
        call(agent.run, rounds=rounds, give_up_after=give_up_after)
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()


@app.command("check")
def node_check(
    config: Annotated[Path, typer.Option(help="node.toml")],
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the TLS handshake with the coordinator.")
    ] = 5.0,
) -> None:
    """Check the node before a round: configuration, extract and columns, permissions of the
    secret and key, the certificate, and a TLS handshake with the coordinator (nothing is sent).

    Exits 1 when any check fails; a warning (a certificate that expires soon) does not fail.
    """
    from rich.table import Table
    from rich.text import Text

    from oda_fed.node.check import Outcome, check_node

    checks = check_node(config, timeout=timeout)
    style = {Outcome.OK: "green", Outcome.WARN: "yellow", Outcome.FAIL: "bold red"}
    table = Table("check", "result", "detail", title=f"node check: {config}")
    for c in checks:
        # Text, not markup: details quote paths and TOML sections such as [source].
        table.add_row(c.name, Text(c.outcome.value, style=style[c.outcome]), Text(c.detail))
    console.print(table)
    failed = [c.name for c in checks if c.outcome is Outcome.FAIL]
    if failed:
        console.print(Text(f"{len(failed)} check(s) failed: {', '.join(failed)}", style="red"))
        raise typer.Exit(1)
