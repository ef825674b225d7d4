"""The shape the federation layer keeps: small classes, a one-way import graph, a light transport."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "oda_fed"
#: About 250 lines: a class that grows past it is doing two things.
MAX_CLASS_LINES = 260


@pytest.mark.parametrize("folder", ["coordinator", "node", "transport"])
def test_no_class_in_the_federation_layer_is_large(folder: str) -> None:
    large = []
    for path in (PACKAGE / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    large.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines} lines)")
    assert not large, large


def _loaded_after(statement: str) -> set[str]:
    """Top-level modules loaded by ``statement`` in a fresh interpreter."""
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_transport_and_config_load_no_engine() -> None:
    loaded = _loaded_after(
        "import oda_fed.transport.protocol, oda_fed.transport.serde, oda_fed.transport.channel, "
        "oda_fed.transport.crossing, oda_fed.transport.auth, oda_fed.config"
    )
    assert not loaded & {"numba", "pandas", "numpy", "matplotlib", "pyarrow", "scipy"}


def test_config_imports_no_engine_module() -> None:
    engine = ("oda_fed.matching", "oda_fed.encoding", "oda_fed.index", "oda_fed.linkage",
              "oda_fed.node", "oda_fed.coordinator", "oda_fed.products")  # fmt: skip
    tree = ast.parse((PACKAGE / "config.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [m for m in imported if m.startswith(engine)], imported


def test_encoding_with_a_clkhash_schema_loads_no_pandas_pydantic_nor_numba(tmp_path: Path) -> None:
    # `oda-fed encode --clkhash-schema` is timed as a whole process against clkhash's
    # (benchmarks/encode.py); importing pandas alone was a fifth of it, pydantic with the
    # TypeAdapters typer 0.29 builds for each option 0.08 s, and Numba with its start-up 0.4 s
    # (a file this small is encoded by the NumPy kernels).
    schema = PACKAGE.parent / "docs/examples/febrl-clkhash-schema.json"
    data = tmp_path / "people.csv"
    data.write_text(
        "rec_id,given_name,surname,street_number,address_1,address_2,suburb,postcode,state,"
        "date_of_birth,soc_sec_id\n"
        "rec-0,karen,collins,4,moss side lane,,leeds,1000,wy,19680122,2443811\n"
        'rec-1,"stephanie",foster,8,canal road,flat 2,leeds,8919,wy,19850504,1462601\n'
    )
    out = tmp_path / "clks.json"
    args = ["encode", "--clkhash-schema", str(schema), "--secret", "s", "--input", str(data)]
    loaded = _loaded_after(
        "from oda_fed.cli import app; "
        f"app(args={args + ['--out', str(out)]!r}, prog_name='oda-fed', standalone_mode=False)"
    )
    assert out.read_text().count('"') == 2 * 2 + 2  # "clks" and two CLKs
    assert "pyarrow" in loaded
    assert not loaded & {"pandas", "pydantic", "numba", "llvmlite", "yaml", "pycparser"}
