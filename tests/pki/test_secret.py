"""The linkage secret file: creation, strict reading, and the forms a leak test looks for."""

from __future__ import annotations

import base64
import stat
import warnings
from pathlib import Path

import pytest

from oda_fed.errors import ConfigError
from oda_fed.pki import new_secret, read_secret, secret_fingerprints


def test_new_secret_is_private_hex_and_reads_back(tmp_path: Path) -> None:
    path = new_secret(tmp_path / "keys" / "linkage.secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert len(text.strip()) == 64 and text.endswith("\n")
    assert read_secret(path) == bytes.fromhex(text)


def test_new_secrets_differ(tmp_path: Path) -> None:
    a, b = new_secret(tmp_path / "a"), new_secret(tmp_path / "b")
    assert read_secret(a) != read_secret(b)


def test_new_secret_refuses_to_overwrite(tmp_path: Path) -> None:
    path = new_secret(tmp_path / "linkage.secret")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        new_secret(path)
    assert path.read_bytes() == before
    new_secret(path, force=True)
    assert path.read_bytes() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\t\n", "is empty"),
        (b"correct horse battery staple", "not a hex string"),
        (b"abc", "not a hex string"),  # odd length
        (b"00112233 44556677 8899aabb ccddeeff", "not a hex string"),
        (b"\xff\xfe\x00", "not a hex string"),
        (b"00" * 15, "15 bytes; at least 16"),
    ],
)
def test_read_secret_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "linkage.secret"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_secret(path)
    assert str(path) in str(info.value)
    if len(content) > 8:  # never echo the content (the path itself may contain the test's id)
        assert content.decode(errors="ignore")[:6] not in str(info.value).replace(str(path), "")


def test_read_secret_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_secret(tmp_path / "nope")
    with pytest.raises(ConfigError, match="is a folder"):
        read_secret(tmp_path)


def test_read_secret_accepts_upper_case_and_whitespace_silently(tmp_path: Path) -> None:
    path = tmp_path / "linkage.secret"
    path.write_text("\n  " + "AB" * 16 + "  \r\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_secret(path) == b"\xab" * 16


def test_secret_fingerprints_cover_the_common_encodings() -> None:
    secret = bytes(range(250, 256)) + bytes(26)  # has '+' '/' in base64, '-' '_' in urlsafe
    forms = secret_fingerprints(secret)
    assert forms[0] == secret
    assert secret.hex().encode() in forms and secret.hex().upper().encode() in forms
    assert base64.b64encode(secret) in forms and base64.urlsafe_b64encode(secret) in forms
    assert base64.b64encode(secret).rstrip(b"=") in forms
    assert len(forms) == len(set(forms))
    # A file that carries the secret in any of these forms is caught by a plain substring search.
    for form in forms:
        blob = b"header " + form + b" trailer"
        assert any(f in blob for f in forms)
    with pytest.raises(ValueError):
        secret_fingerprints(b"")


def test_fingerprints_find_a_secret_file_copied_to_disk(tmp_path: Path) -> None:
    path = new_secret(tmp_path / "linkage.secret")
    secret = read_secret(path)
    leaked = tmp_path / "coordinator-dump.log"
    leaked.write_bytes(b"INFO config loaded: " + path.read_bytes())
    clean = tmp_path / "clean.log"
    clean.write_bytes(b"INFO round r1 started\n")
    assert any(f in leaked.read_bytes() for f in secret_fingerprints(secret))
    assert not any(f in clean.read_bytes() for f in secret_fingerprints(secret))
