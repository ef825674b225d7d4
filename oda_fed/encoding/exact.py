"""Keyed exact tokens: deterministic pseudonyms of exact identifiers (NHS number, UPRN).

An identifier that is either right or wrong, with no near misses worth scoring, can travel as a
keyed token instead of (or beside) a CLK, so the coordinator can match it exactly without learning
it. The token is ``HMAC-SHA256(key, value)`` of the standardised value, with a key derived from the
linkage secret for one project and one field:

- equal values give equal tokens at every partner that holds the same secret and project name;
- the coordinator, which never holds the secret, cannot invert a token: HMAC-SHA256 without the
  key is a pseudorandom function;
- a dictionary attack (hashing every possible NHS number, a space of only 10^9) needs the key,
  so it is open only to the partners, who hold the identifiers anyway.

Tokens still reveal equality: the coordinator sees which records share an identifier and how
often each token occurs. Projects treat tokens as pseudonymous personal data, like CLKs.

*Record keys* (:func:`record_keys`) use the same construction on a partner's record ids, with a key
per partner, for projects that keep entity ids stable across rounds: the coordinator can tell a
record it saw in an earlier round from a new one, without learning the id.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from oda_fed.encoding.keys import derive_key
from oda_fed.errors import AuthError, ConfigError

TOKEN_KEY_BYTES = 32
TOKEN_INFO_PREFIX = b"oda-fed/token/v1/"
"""HKDF ``info`` is this prefix followed by the field name in UTF-8.

It differs from the CLK keys' prefix (``b"oda-fed/clk/v1/"``), so a field's token key and its CLK
key are independent even though both come from the same secret, salt and field name.
"""


def derive_token_key(secret: bytes, *, context: str, field: str) -> bytes:
    """Derive the 32-byte HMAC key of one field's exact tokens.

    ``key = HKDF-SHA256(ikm=secret, salt=context (UTF-8), info=b"oda-fed/token/v1/" + field)``.

    Parameters
    ----------
    secret
        The linkage secret the partners share; at least 16 bytes.
    context
        The project name; every partner of the project must use the same one.
    field
        The project's field name, e.g. ``"nhs_number"``.

    Returns
    -------
    bytes
        32 bytes, to pass to :func:`exact_tokens`.

    Raises
    ------
    TypeError
        When the secret is not bytes.
    AuthError
        When the secret is shorter than 16 bytes.
    ConfigError
        When the context or the field name is empty.

    Examples
    --------
    >>> key = derive_token_key(b"s" * 32, context="leeds-hmo", field="nhs_number")
    >>> len(key)
    32
    """
    if not field:
        raise ConfigError("an exact-token field has an empty name")
    return derive_key(
        secret,
        context=context,
        info=TOKEN_INFO_PREFIX + field.encode("utf-8"),
        length=TOKEN_KEY_BYTES,
    )


def exact_tokens(values: Sequence[str | None], *, key: bytes) -> list[bytes | None]:
    """Return the keyed token of each standardised value: ``HMAC-SHA256(key, value UTF-8)``.

    Values are hashed as given, so they must already be standardised (``standardise_column``),
    or two spellings of one identifier give two tokens. Each distinct value is hashed once.

    Parameters
    ----------
    values
        Standardised values; ``None`` and ``""`` are missing.
    key
        The field's key from :func:`derive_token_key`.

    Returns
    -------
    list of bytes or None
        A 32-byte token per value, in order; ``None`` where the value is missing. An empty
        string is missing rather than hashed, because one shared token for every blank would
        link all the records that lack the identifier.

    Raises
    ------
    TypeError
        When the key is not bytes.
    AuthError
        When the key is shorter than 32 bytes, so cannot have come from derive_token_key.

    Examples
    --------
    >>> key = derive_token_key(b"s" * 32, context="leeds-hmo", field="nhs_number")
    >>> tokens = exact_tokens(["9434765919", None, "9434765919"], key=key)
    >>> len(tokens[0]), tokens[1], tokens[0] == tokens[2]
    (32, None, True)
    """
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"the token key must be bytes, not {type(key).__name__}")
    if len(key) < TOKEN_KEY_BYTES:
        raise AuthError(
            f"the token key is {len(key)} bytes; expected {TOKEN_KEY_BYTES} from derive_token_key"
        )
    key = bytes(key)
    cache: dict[str, bytes] = {}
    out: list[bytes | None] = []
    for value in values:
        if value is None or value == "":
            out.append(None)
            continue
        token = cache.get(value)
        if token is None:
            # The one-shot C implementation: no HMAC object per value.
            token = cache[value] = hmac.digest(key, value.encode("utf-8"), "sha256")
        out.append(token)
    return out


RECORD_KEY_BYTES = 32
RECORD_KEY_INFO_PREFIX = b"oda-fed/record-key/v1/"
"""HKDF ``info`` is this prefix followed by the partner id in UTF-8.

Record keys are stable pseudonyms of record ids, sent only when the project sets
``[linkage] stable_entity_ids``. The prefix differs from the CLK and token prefixes, so a record key
can never equal a keyed token of the same string, and the partner id in ``info`` gives each partner
its own key: two partners' records with the same id get unrelated record keys.
"""


def derive_record_key(secret: bytes, *, context: str, partner: str) -> bytes:
    """Derive the 32-byte HMAC key of one partner's record keys.

    ``key = HKDF-SHA256(ikm=secret, salt=context (UTF-8), info=b"oda-fed/record-key/v1/" +
    partner)``.

    Parameters
    ----------
    secret
        The linkage secret the partners share; at least 16 bytes.
    context
        The project name.
    partner
        The partner id the records belong to, e.g. ``"council"``.

    Returns
    -------
    bytes
        32 bytes, to pass to :func:`record_keys`.

    Raises
    ------
    TypeError
        When the secret is not bytes.
    AuthError
        When the secret is shorter than 16 bytes.
    ConfigError
        When the context or the partner id is empty.

    Examples
    --------
    >>> council = derive_record_key(b"s" * 32, context="leeds-hmo", partner="council")
    >>> police = derive_record_key(b"s" * 32, context="leeds-hmo", partner="police")
    >>> len(council), council == police
    (32, False)
    """
    if not partner:
        raise ConfigError("record keys need a partner id, and it is empty")
    return derive_key(
        secret,
        context=context,
        info=RECORD_KEY_INFO_PREFIX + partner.encode("utf-8"),
        length=RECORD_KEY_BYTES,
    )


def record_keys(record_ids: Sequence[str], *, key: bytes) -> list[bytes]:
    """Return each record id's record key: ``HMAC-SHA256(key, record id UTF-8)``.

    The same record id gives the same key in every round, so the coordinator can tell a record it
    has seen from a new one without learning the id. Without the key, which only the partners can
    derive, a record key cannot be reversed or guessed from a list of likely ids.

    Parameters
    ----------
    record_ids
        The partner's record ids, as read from its source (strings, non-empty).
    key
        The partner's key from :func:`derive_record_key`.

    Returns
    -------
    list of bytes
        One 32-byte key per record id, in order.

    Raises
    ------
    TypeError
        When the key is not bytes.
    AuthError
        When the key is shorter than 32 bytes, so cannot have come from derive_record_key.

    Examples
    --------
    >>> key = derive_record_key(b"s" * 32, context="leeds-hmo", partner="council")
    >>> keys = record_keys(["C001", "C002", "C001"], key=key)
    >>> len(keys[0]), keys[0] == keys[2], keys[0] == keys[1]
    (32, True, False)
    """
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"the record key must be bytes, not {type(key).__name__}")
    if len(key) < RECORD_KEY_BYTES:
        raise AuthError(
            f"the record key is {len(key)} bytes; expected {RECORD_KEY_BYTES} from "
            "derive_record_key"
        )
    key = bytes(key)
    return [hmac.digest(key, str(rid).encode("utf-8"), "sha256") for rid in record_ids]
