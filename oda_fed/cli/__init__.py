"""The ``oda-fed`` command line: one module per command group, each thin (parse, call, print).

Exit codes: 0 success; 1 other error; 2 configuration; 3 input data; 4 project mismatch;
5 certificate or identity; 6 audit verification failed; 7 protocol error from the other side;
8 stored state damaged or missing (restore it from a backup).

The command modules import only the standard library, typer, rich and ``oda_fed.errors`` at
module level. Everything heavier (numpy, pandas, numba, gRPC, pydantic, cryptography...) is
imported inside the command that needs it, so ``oda-fed --help`` starts in a fraction of a
second and each command loads only its own part of the library.
"""

from __future__ import annotations

from typing import Annotated

import typer

from oda_fed.cli import audit, coordinator, demo, link, node, pki, project, synth
from oda_fed.cli._common import console

__all__ = ["app"]

app = typer.Typer(
    name="oda-fed",
    help="Privacy-preserving federated record linkage and disclosure-controlled analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from oda_fed import __version__

        console.print(f"oda-fed {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Privacy-preserving federated record linkage and disclosure-controlled analysis."""


# Top-level commands first, then the groups, in the order --help lists them.
for commands in (demo.app, synth.app, link.app):
    app.add_typer(commands)
for group, name in (
    (pki.app, "pki"),
    (coordinator.app, "coordinator"),
    (node.app, "node"),
    (audit.app, "audit"),
    (project.app, "project"),
    (link.index_app, "index"),
):
    app.add_typer(group, name=name)
