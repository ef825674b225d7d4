from __future__ import annotations

import doctest
import hashlib
import hmac

import numpy as np
import pytest

from oda_fed.encoding import FieldEncoding, derive_field_keys, exact
from oda_fed.encoding.exact import TOKEN_INFO_PREFIX, derive_token_key, exact_tokens
from oda_fed.errors import AuthError, ConfigError

SECRET = b"0123456789abcdef0123456789abcdef"


def _rfc5869_hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_key_is_hkdf_sha256_with_the_documented_salt_and_info() -> None:
    key = derive_token_key(SECRET, context="leeds-hmo", field="nhs_number")
    assert TOKEN_INFO_PREFIX == b"oda-fed/token/v1/"
    expected = _rfc5869_hkdf_sha256(
        SECRET, salt=b"leeds-hmo", info=b"oda-fed/token/v1/nhs_number", length=32
    )
    assert key == expected
    assert len(key) == 32


def test_known_answer() -> None:
    # Pins the derivation and the token: every partner must get the same, whatever version it
    # runs. Both values were computed with the OpenSSL 3 command line (`openssl kdf ... HKDF` and
    # `openssl dgst -sha256 -mac HMAC`), independently of this code.
    key = derive_token_key(SECRET, context="leeds-hmo-2025", field="nhs_number")
    assert key.hex() == "cadd6a98489ef83ac91901a2d7d435ada51323a3a3872bdc1ee1f82403ab1465"
    token = exact_tokens(["9434765919"], key=key)[0]
    assert token is not None
    assert token.hex() == "efdc44e06271b71f086429db8e3a10501632d5e496061d2846cdcfff78be28c0"


def test_tokens_are_hmac_sha256_of_the_utf8_value() -> None:
    key = derive_token_key(SECRET, context="p", field="uprn")
    values = ["100023336956", "9434765919", "zoë"]
    expected = [hmac.new(key, v.encode("utf-8"), hashlib.sha256).digest() for v in values]
    assert exact_tokens(values, key=key) == expected


def test_deterministic_and_equal_values_give_equal_tokens() -> None:
    key = derive_token_key(SECRET, context="p", field="nhs_number")
    first = exact_tokens(["9434765919", "4010232137", "9434765919"], key=key)
    again = exact_tokens(["9434765919", "4010232137", "9434765919"], key=key)
    assert first == again
    assert first[0] == first[2] != first[1]
    assert all(isinstance(t, bytes) and len(t) == 32 for t in first)
    # A partner holding the same secret and project name derives the same key and tokens.
    other_partner = derive_token_key(bytes(SECRET), context="p", field="nhs_number")
    assert exact_tokens(["9434765919"], key=other_partner)[0] == first[0]


def test_secret_context_and_field_each_change_the_token() -> None:
    def token(secret: bytes, context: str, field: str) -> bytes | None:
        return exact_tokens(
            ["9434765919"], key=derive_token_key(secret, context=context, field=field)
        )[0]

    base = token(SECRET, "p", "nhs_number")
    assert token(SECRET[:-1] + b"!", "p", "nhs_number") != base
    assert token(SECRET, "q", "nhs_number") != base
    assert token(SECRET, "p", "nhs") != base


def test_missing_values_stay_missing() -> None:
    key = derive_token_key(SECRET, context="p", field="uprn")
    tokens = exact_tokens([None, "", "1", None], key=key)
    assert tokens[0] is None and tokens[1] is None and tokens[3] is None
    assert isinstance(tokens[2], bytes)
    assert exact_tokens([], key=key) == []


def test_many_repeating_values(rng: np.random.Generator) -> None:
    key = derive_token_key(SECRET, context="p", field="uprn")
    pool = [str(n) for n in rng.integers(1, 10**12, 50)] + [None]
    values = [pool[i] for i in rng.integers(0, len(pool), 5000)]
    tokens = exact_tokens(values, key=key)
    for value, token in zip(values, tokens, strict=True):
        if value is None:
            assert token is None
        else:
            assert token == hmac.new(key, value.encode(), hashlib.sha256).digest()


def test_token_key_is_independent_of_the_clk_key_of_the_same_field() -> None:
    for name in ["nhs_number", "uprn"]:
        clk_key = derive_field_keys(SECRET, context="p", fields=[FieldEncoding(name, "nhs_number")])
        token_key = derive_token_key(SECRET, context="p", field=name)
        assert token_key != clk_key[name]
        # Different info prefixes, so a field named like a CLK field still gets its own tokens.
        assert exact_tokens(["9434765919"], key=clk_key[name]) != exact_tokens(
            ["9434765919"], key=token_key
        )


def test_short_secret_is_rejected_without_echoing_it() -> None:
    short = b"tooshort-secret"  # 15 bytes
    with pytest.raises(AuthError, match="at least 16") as caught:
        derive_token_key(short, context="p", field="f")
    assert "tooshort" not in str(caught.value)
    derive_token_key(short + b"!", context="p", field="f")


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="bytes"):
        derive_token_key("a text secret of plenty of length", context="p", field="f")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="context"):
        derive_token_key(SECRET, context="", field="f")
    with pytest.raises(ConfigError, match="empty name"):
        derive_token_key(SECRET, context="p", field="")
    with pytest.raises(TypeError, match="bytes"):
        exact_tokens(["1"], key="k" * 32)  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="32"):
        exact_tokens(["1"], key=b"k" * 16)


def test_docstring_examples() -> None:
    result = doctest.testmod(exact)
    assert result.failed == 0 and result.attempted > 0
