from __future__ import annotations

import hashlib
import hmac

import pytest

from oda_fed.encoding import FieldEncoding, derive_field_keys
from oda_fed.errors import AuthError, ConfigError

SECRET = b"0123456789abcdef0123456789abcdef"
FIELDS = [FieldEncoding("first_name", "name"), FieldEncoding("dob", "date")]


def test_known_answer() -> None:
    # Pins the derivation: every partner must derive the same keys, whatever version it runs.
    keys = derive_field_keys(SECRET, context="leeds-hmo-2025", fields=FIELDS)
    assert keys["first_name"].hex() == (
        "fbab368d1fa56ee1a1f29791351b8ec5502800ef0fea63b46217923af4358d95"
    )
    assert keys["dob"].hex() == "6b8134883f9529c6cefeaf484b4bda88056c31c778a5a7c223ce7e6ea5344730"


def _rfc5869_hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_is_hkdf_sha256_with_the_documented_salt_and_info() -> None:
    keys = derive_field_keys(SECRET, context="ctx", fields=FIELDS)
    for name, key in keys.items():
        info = b"oda-fed/clk/v1/" + name.encode()
        assert key == _rfc5869_hkdf_sha256(SECRET, salt=b"ctx", info=info, length=32)


def test_one_32_byte_key_per_field_in_order() -> None:
    keys = derive_field_keys(SECRET, context="p", fields=FIELDS)
    assert list(keys) == ["first_name", "dob"]
    assert all(len(key) == 32 for key in keys.values())
    assert keys["first_name"] != keys["dob"]


def test_deterministic() -> None:
    assert derive_field_keys(SECRET, context="p", fields=FIELDS) == derive_field_keys(
        SECRET, context="p", fields=FIELDS
    )


def test_secret_and_context_change_every_key() -> None:
    base = derive_field_keys(SECRET, context="p", fields=FIELDS)
    other_secret = derive_field_keys(SECRET[:-1] + b"!", context="p", fields=FIELDS)
    other_context = derive_field_keys(SECRET, context="q", fields=FIELDS)
    for name in base:
        assert base[name] != other_secret[name]
        assert base[name] != other_context[name]


def test_key_depends_on_the_name_not_the_encoding() -> None:
    # Re-weighting a field must not change its key, or its CLK bits would all move.
    plain = derive_field_keys(SECRET, context="p", fields=[FieldEncoding("f", "name")])
    weighted = derive_field_keys(
        SECRET, context="p", fields=[FieldEncoding("f", "name", ngram=3, weight=2.0)]
    )
    assert plain == weighted


def test_short_secret_is_rejected_without_echoing_it() -> None:
    short = b"tooshort-secret"  # 15 bytes
    with pytest.raises(AuthError, match="at least 16") as caught:
        derive_field_keys(short, context="p", fields=FIELDS)
    assert "tooshort" not in str(caught.value)
    derive_field_keys(short + b"!", context="p", fields=FIELDS)  # 16 bytes is enough


def test_secret_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        derive_field_keys("a text secret of plenty of length", context="p", fields=FIELDS)  # type: ignore[arg-type]


def test_empty_context_and_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="context"):
        derive_field_keys(SECRET, context="", fields=FIELDS)
    with pytest.raises(ConfigError, match="unique"):
        derive_field_keys(SECRET, context="p", fields=[FIELDS[0], FIELDS[0]])
