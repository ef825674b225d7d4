"""``oda-fed node``: run a partner's node, which dials out to the coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oda_fed.cli._common import call, setup_logging
from oda_fed.cli.keys import app as keys_app

app = typer.Typer(help="Run a partner's node.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command("run")
def node_run(
    config: Annotated[Path, typer.Option(help="node.toml")],
    rounds: Annotated[int | None, typer.Option(help="Exit after this many rounds close.")] = None,
    give_up_after: Annotated[
        float | None,
        typer.Option(help="Exit if the coordinator stays unreachable this many seconds."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the node: dial out to the coordinator and do this partner's part of each round."""
    from oda_fed.config import load_node_config
    from oda_fed.node.agent import NodeAgent

    setup_logging(verbose)
    cfg = call(load_node_config, config)
    agent = call(NodeAgent, cfg, config_path=config)
    try:
        call(agent.run, rounds=rounds, give_up_after=give_up_after)
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()
