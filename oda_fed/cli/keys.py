"""``oda-fed node keys``: agree, rotate and check the linkage secret of a node.

Each works on the node's own folder and audit log, so run it while ``oda-fed node run`` is stopped
(a running node holds its audit log). ``node run`` agrees the secret by itself on first start;
``agree`` is for doing it ahead, ``rotate`` for the dealer, ``check`` for comparing nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from oda_fed.cli._common import call, console, setup_logging

if TYPE_CHECKING:
    from oda_fed.node.agent import NodeAgent

app = typer.Typer(
    help="Agree, rotate and check the linkage secret (run while the node is stopped).",
    no_args_is_help=True,
)

ConfigOption = Annotated[Path, typer.Option(help="node.toml")]
GiveUpOption = Annotated[
    float, typer.Option(help="Exit if the secret cannot be agreed within this many seconds.")
]


def _agent(config: Path) -> NodeAgent:
    from oda_fed.config import load_node_config
    from oda_fed.node.agent import NodeAgent

    return call(NodeAgent, call(load_node_config, config), config_path=config)


def _show(agent: NodeAgent) -> None:
    state = agent.state
    source = "secret file" if agent.keys is None else "agreed through the coordinator"
    console.print(
        f"key version {state.key_version} ({source}); key check {state.key_check}\n"
        "(every partner's node shows the same key check when they hold the same secret)",
        highlight=False,
    )


@app.command("agree")
def keys_agree(
    config: ConfigOption,
    give_up_after: GiveUpOption = 600.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Agree the linkage secret with the partners now: publish this node's key, wait for the
    dealer (the project's first partner) to wrap the secret, and keep it (mode 0600)."""
    setup_logging(verbose)
    agent = _agent(config)
    try:
        call(agent.agree_secret, give_up_after=give_up_after)
        _show(agent)
    finally:
        agent.close()


@app.command("rotate")
def keys_rotate(
    config: ConfigOption,
    give_up_after: GiveUpOption = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Make the next key version and send it wrapped to every partner (the dealer only, between
    rounds; not for a project with stable entity ids)."""
    setup_logging(verbose)
    agent = _agent(config)
    try:
        call(agent.rotate_secret, give_up_after=give_up_after)
        _show(agent)
    finally:
        agent.close()


@app.command("check")
def keys_check(config: ConfigOption) -> None:
    """Show the key version and key-check value of the secret this node holds (no network)."""
    agent = _agent(config)
    try:
        if not agent.state.secret:
            console.print("no secret yet: run `oda-fed node keys agree` or `oda-fed node run`")
            raise typer.Exit(1)
        _show(agent)
    finally:
        agent.close()
