"""``oda-fed project``: check a project agreement and explain the encoding it sets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from oda_fed.cli._common import call, console
from oda_fed.errors import ConfigError

if TYPE_CHECKING:
    from oda_fed.config import LoadedProject
    from oda_fed.encoding.explain import Explanation

app = typer.Typer(help="Inspect a project agreement.", no_args_is_help=True)


@app.command("fingerprint")
def project_fingerprint(path: Annotated[Path, typer.Argument(help="project.toml")]) -> None:
    """Validate a project file and print the fingerprint a DPO pins in node.toml."""
    from oda_fed.config import load_project

    console.print(call(load_project, path).fingerprint)


@app.command("explain")
def project_explain(
    path: Annotated[Path, typer.Argument(help="project.toml")],
    sample: Annotated[
        Path | None, typer.Option(help="A CSV of real records to measure the fill on.")
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="Linkage secret (needed with --sample).")
    ] = None,
    partner: Annotated[
        str | None, typer.Option(help="Partner whose column layout the sample uses.")
    ] = None,
) -> None:
    """Print the encoding derived from the project and the expected fill of the filter."""
    loaded, result = call(_explain, path, sample=sample, secret_file=secret_file, partner=partner)
    linkage = loaded.project.linkage
    table = Table(
        title=f"{loaded.project.name}: {linkage.bits}-bit CLKs, threshold {linkage.threshold}"
    )
    # Names and types fold onto a second line rather than being cut short on narrow terminals.
    for header in ("field", "type"):
        table.add_column(header, overflow="fold", min_width=len(header))
    for header in ("n-gram", "k", "weight", "tokens per value", "insertions"):
        table.add_column(header, justify="right")
    for r in result.fields:
        e = r.encoding
        table.add_row(
            e.name,
            e.type,
            str(e.ngram) if e.uses_ngrams else "-",
            str(e.k),
            f"{e.weight:g}",
            f"{r.tokens_per_value:.1f}",
            f"{r.bits_inserted:.0f}",
        )
    console.print(table)
    console.print(f"expected fill: [bold]{result.expected_fill:.0%}[/] of {result.bits} bits")
    if result.measured_fill is not None:
        console.print(f"measured fill on {sample}: [bold]{result.measured_fill:.0%}[/]")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(f"fingerprint: {loaded.fingerprint}")


def _explain(
    path: Path, *, sample: Path | None, secret_file: Path | None, partner: str | None
) -> tuple[LoadedProject, Explanation]:
    """The project, and its encoding explained (with the fill measured on ``sample``, if given)."""
    from oda_fed.config import load_project
    from oda_fed.encoding.explain import explain
    from oda_fed.node.encode import encode_source, field_encodings
    from oda_fed.node.sources import layout_for, prepare
    from oda_fed.pki import read_secret

    loaded = load_project(path)
    clks = None
    if sample is not None:
        if secret_file is None:
            raise ConfigError("--sample needs --secret-file to encode the sample")
        prepared = prepare(
            sample,
            project=loaded.project,
            layout=layout_for(loaded.project, partner or sample.stem),
        )
        # The plain filter: hardening would change the fill the project's settings give.
        clks = encode_source(
            prepared, project=loaded.project, secret=read_secret(secret_file), harden_clks=False
        )
    explanation = explain(
        field_encodings(loaded.project), bits=loaded.project.linkage.bits, sample=clks
    )
    return loaded, explanation
