"""oda_fed.pki's names load on first use, so reading a secret needs no X.509 code."""

from __future__ import annotations

import subprocess
import sys

import oda_fed.pki


def test_every_public_name_resolves() -> None:
    for name in oda_fed.pki.__all__:
        assert getattr(oda_fed.pki, name) is not None
    assert set(oda_fed.pki.__all__) <= set(dir(oda_fed.pki))


def test_reading_a_secret_loads_no_certificate_code(tmp_path) -> None:
    code = (
        "import sys; from oda_fed.pki import new_secret, read_secret; "
        f"read_secret(new_secret(__import__('pathlib').Path({str(tmp_path / 'k')!r}))); "
        "print('cryptography.x509' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
