"""``oda-fed synth``: a synthetic region written as partner files, its truth and its project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oda_fed.cli._common import call, console

app = typer.Typer()


@app.command()
def synth(
    population: Annotated[int, typer.Option(min=1, help="Number of people.")],
    partners: Annotated[int, typer.Option(min=2, help="Number of partners (2-6).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    errors: Annotated[str, typer.Option(help="Error level: low, medium or high.")] = "medium",
) -> None:
    """Write a synthetic population: one CSV per partner, truth.csv, and a matching project.toml."""
    from oda_fed.synth import generate, write, write_project

    synthetic = call(generate, population=population, partners=partners, seed=seed, errors=errors)
    for path in [*write(synthetic, out), write_project(synthetic, out / "project.toml")]:
        console.print(f"wrote {path}")
