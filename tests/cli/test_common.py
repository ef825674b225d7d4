"""What the command groups share: Numba imported without the optional packages encode never uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("yaml")  # Dask's dependency, so installed with the dev extras
pytest.importorskip("cffi")  # cryptography's


def _run(code: str, cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


LEAN = """
import json, sys
from oda_fed.cli._common import import_numba_lean
import_numba_lean()
loaded = [name for name in ("numba", "yaml", "cffi", "pycparser") if name in sys.modules]
import numba, numpy as np
@numba.njit(parallel=True)
def total(x):
    s = 0
    for i in numba.prange(len(x)):
        s += x[i]
    return s
import yaml, cffi  # still importable: nothing is left hidden
print(json.dumps({"loaded": loaded, "total": int(total(np.arange(10))),
                  "threads": numba.config.NUMBA_NUM_THREADS,
                  "int": cffi.FFI().sizeof("int"), "yaml": yaml.safe_load("a: 1")}))
"""


def test_numba_is_imported_without_yaml_or_cffi_which_stay_importable(tmp_path: Path) -> None:
    seen = _run(LEAN, tmp_path)
    assert seen["loaded"] == ["numba"]
    assert seen["total"] == 45  # kernels compile and run on Numba's threads
    assert seen["int"] == 4 and seen["yaml"] == {"a": 1}


def test_a_numba_config_file_is_still_read(tmp_path: Path) -> None:
    (tmp_path / ".numba_config.yaml").write_text("num_threads: 1\n")
    seen = _run(LEAN, tmp_path)
    assert seen["loaded"] == ["numba", "yaml"]  # PyYAML loaded for the file; cffi still hidden
    assert seen["threads"] == 1


def test_packages_already_loaded_are_left_alone(tmp_path: Path) -> None:
    code = (
        "import cffi, json, sys\n"
        "from oda_fed.cli._common import import_numba_lean\n"
        "import_numba_lean()\n"
        "from numba.core.typing import cffi_utils\n"
        "print(json.dumps({'supported': cffi_utils.SUPPORTED, 'cffi': sys.modules['cffi'] is cffi}))"
    )
    assert _run(code, tmp_path) == {"supported": True, "cffi": True}
