"""Per-field hashing keys derived from the partners' linkage secret.

A key per field means that the same string in two fields hashes to unrelated bit positions, and
that a key leaked for one field says nothing about another. The derivation is HKDF-SHA256
(RFC 5869) with the project name as salt, so one secret reused across projects still yields
unrelated CLKs.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oda_fed.encoding.fields import FieldEncoding
from oda_fed.errors import AuthError, ConfigError

MIN_SECRET_BYTES = 16
"""Shortest linkage secret accepted: 128 bits, so the keys cannot be found by guessing it."""

FIELD_KEY_BYTES = 32
KEY_INFO_PREFIX = b"oda-fed/clk/v1/"
"""HKDF ``info`` is this prefix followed by the field name in UTF-8."""


def check_secret(secret: bytes, context: str) -> None:
    """Refuse a secret or context no key may be derived from (the secret never enters a message)."""
    if not isinstance(secret, bytes | bytearray):
        raise TypeError(f"the linkage secret must be bytes, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        # The length is safe to report; the secret itself never goes into a message.
        raise AuthError(
            f"the linkage secret is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are required"
        )
    if not isinstance(context, str) or not context:
        raise ConfigError("the key derivation context (the project name) is empty")


def derive_key(secret: bytes, *, context: str, info: bytes, length: int = 32) -> bytes:
    """``HKDF-SHA256(ikm=secret, salt=context (UTF-8), info)``: every key oda-fed derives.

    Each use has its own ``info`` prefix (CLK fields, exact tokens, hardening), so no two uses can
    ever share a key.
    """
    check_secret(secret, context)
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=context.encode("utf-8"), info=info
    ).derive(bytes(secret))


def derive_field_keys(
    secret: bytes, *, context: str, fields: Sequence[FieldEncoding]
) -> dict[str, bytes]:
    """Derive a 32-byte hashing key for each linkage field.

    ``key = HKDF-SHA256(ikm=secret, salt=context (UTF-8), info=b"oda-fed/clk/v1/" + name)``.

    Parameters
    ----------
    secret
        The linkage secret the partners share; at least 16 bytes.
    context
        The project name; every partner of the project must use the same one.
    fields
        The fields to derive keys for; names must be unique.

    Returns
    -------
    dict of str to bytes
        Field name to key, in the order of ``fields``.

    Raises
    ------
    AuthError
        When the secret is shorter than 16 bytes.
    ConfigError
        When the context is empty or two fields share a name.

    Examples
    --------
    >>> from oda_fed.encoding.fields import FieldEncoding
    >>> fields = [FieldEncoding("dob", "date")]
    >>> keys = derive_field_keys(b"s" * 32, context="leeds-hmo", fields=fields)
    >>> len(keys["dob"])
    32
    """
    check_secret(secret, context)
    names = [field.name for field in fields]
    if len(set(names)) != len(names):
        duplicated = sorted({name for name in names if names.count(name) > 1})
        raise ConfigError(f"linkage fields must have unique names; repeated: {duplicated}")
    return {
        name: derive_key(
            secret,
            context=context,
            info=KEY_INFO_PREFIX + name.encode("utf-8"),
            length=FIELD_KEY_BYTES,
        )
        for name in names
    }
