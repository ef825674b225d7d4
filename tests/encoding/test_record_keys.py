"""Record keys: stable keyed pseudonyms of record ids, one key per partner (stable_entity_ids)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from oda_fed.encoding import FieldEncoding, derive_field_keys
from oda_fed.encoding.exact import (
    RECORD_KEY_INFO_PREFIX,
    derive_record_key,
    derive_token_key,
    exact_tokens,
    record_keys,
)
from oda_fed.encoding.keys import derive_key
from oda_fed.errors import AuthError, ConfigError

SECRET = b"0123456789abcdef0123456789abcdef"


def test_key_is_hkdf_with_the_partner_in_the_info() -> None:
    assert RECORD_KEY_INFO_PREFIX == b"oda-fed/record-key/v1/"
    key = derive_record_key(SECRET, context="leeds-hmo", partner="council")
    assert key == derive_key(
        SECRET, context="leeds-hmo", info=b"oda-fed/record-key/v1/council", length=32
    )


def test_record_keys_are_hmac_sha256_of_the_record_id() -> None:
    key = derive_record_key(SECRET, context="p", partner="police")
    ids = ["P0001", "P0002", "zoë-7"]
    expected = [hmac.new(key, r.encode("utf-8"), hashlib.sha256).digest() for r in ids]
    assert record_keys(ids, key=key) == expected
    assert record_keys([], key=key) == []


def test_stable_across_calls_and_distinct_per_record() -> None:
    key = derive_record_key(SECRET, context="p", partner="council")
    first = record_keys(["C1", "C2", "C3"], key=key)
    again = record_keys(["C3", "C1"], key=derive_record_key(SECRET, context="p", partner="council"))
    assert again == [first[2], first[0]]
    assert len(set(first)) == 3 and all(len(k) == 32 for k in first)


def test_two_partners_with_the_same_record_id_get_unrelated_keys() -> None:
    council = derive_record_key(SECRET, context="p", partner="council")
    police = derive_record_key(SECRET, context="p", partner="police")
    assert council != police
    assert record_keys(["1", "2"], key=council) != record_keys(["1", "2"], key=police)
    assert not set(record_keys(["1", "2"], key=council)) & set(record_keys(["1"], key=police))


def test_independent_of_token_and_clk_keys_and_of_the_project() -> None:
    key = derive_record_key(SECRET, context="p", partner="nhs_number")
    assert key != derive_token_key(SECRET, context="p", field="nhs_number")
    clk = derive_field_keys(SECRET, context="p", fields=[FieldEncoding("nhs_number", "nhs_number")])
    assert key != clk["nhs_number"]
    token = exact_tokens(["9434765919"], key=derive_token_key(SECRET, context="p", field="x"))
    assert record_keys(["9434765919"], key=derive_record_key(SECRET, context="p", partner="x")) != [
        token[0]
    ]
    assert derive_record_key(SECRET, context="q", partner="council") != derive_record_key(
        SECRET, context="p", partner="council"
    )


def test_bad_arguments_are_refused_without_echoing_the_secret() -> None:
    with pytest.raises(ConfigError, match="partner id"):
        derive_record_key(SECRET, context="p", partner="")
    with pytest.raises(AuthError, match="at least 16") as caught:
        derive_record_key(b"tooshort-secret", context="p", partner="council")
    assert "tooshort" not in str(caught.value)
    with pytest.raises(TypeError, match="bytes"):
        record_keys(["1"], key="k" * 32)  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="32"):
        record_keys(["1"], key=b"k" * 16)
