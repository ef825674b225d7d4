"""Regenerate oda_fed/proto/v1 from protos/ with the pinned grpcio-tools and mypy-protobuf.

Usage: ``make proto`` (or ``python scripts/gen_protos.py [OUT_DIR]``). The generated files are
committed; tests/proto/test_generated.py fails when they drift from protos/.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("oda_fed/proto/v1")


def generate(out_root: Path) -> list[Path]:
    """Generate into ``out_root/oda_fed/proto/v1`` and return the generated files."""
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto")
    )
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent  # the plugins live beside this interpreter
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out_root / PACKAGE_DIR
        target.mkdir(parents=True, exist_ok=True)
        produced = []
        for src in sorted((Path(tmp) / PACKAGE_DIR).iterdir()):
            dest = target / src.name
            shutil.copyfile(src, dest)
            produced.append(dest)
    init = target / "__init__.py"
    if not init.exists():
        init.write_text(
            '"""Generated from protos/; do not edit. Regenerate with `make proto`."""\n'
        )
    return produced


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(out):
        print(path.relative_to(out))
