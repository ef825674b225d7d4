"""Bloom-filter CLK encoding of standardised records.

Wire format
-----------
A batch of CLKs is a ``numpy.uint64`` array of shape ``(n, bits // 64)``, C-contiguous, one row
per record. Bit ``b`` of a CLK (``0 <= b < bits``) lives in word ``b // 64`` at bit position
``b % 64``, least significant bit first. Written out as little-endian ``uint64`` words, that is a
byte string in which bit ``b`` is bit ``b % 8`` (LSB first) of byte ``b // 8``. ``bits`` is a power
of two from 64 to 65536.

Bit positions of a token
------------------------
Each field has its own 32-byte key (:func:`oda_fed.encoding.keys.derive_field_keys`). A token
``t`` of a field with key ``K`` that sets ``k`` positions (:attr:`FieldEncoding.k`) takes them
from the digests

    ``D_j = BLAKE2b(utf8(t), key=K, digest_size=64, person=j as 16 bytes little-endian)``

for ``j = 0, 1, ...`` (``D_0`` is plain keyed BLAKE2b, since the default personalisation is zero
bytes). The concatenation ``D_0 || D_1 || ...`` is read as little-endian ``uint16`` values; the
first ``k`` of them, each modulo ``bits``, are the positions. Positions may repeat.

A CLK is the OR of the positions of every token of every field of its record. A missing value
(``None``) sets nothing.

Record salts
------------
With ``salts`` (see :func:`encode_records`), every token ``t`` of a record whose salt is the string
``s`` is hashed as

    ``D_j = BLAKE2b(len(utf8(s)) as 4 bytes little-endian || utf8(s) || utf8(t), key=K,
    digest_size=64, person=j as 16 bytes little-endian, salt=b"oda-fed/rsalt/v1")``

and read as above. The BLAKE2b salt parameter (16 bytes, zero for unsalted tokens) keeps salted
and unsalted inputs apart, and the length prefix keeps two (salt, token) pairs from sharing an
input. A record whose salt is ``None`` is hashed unsalted, exactly as without ``salts``.

How it is computed
------------------
A :class:`ClkEncoder` keeps, per field, a cache of the bit positions of every distinct token (or
(salt, token) pair) it has hashed, so each is hashed once however many chunks it appears in. Each
chunk of rows is factorised into distinct values per field, the distinct values are tokenised in
batches (:func:`oda_fed.encoding.tokens.token_lists`), and array kernels set the bits, over
rows on every core (:mod:`oda_fed.encoding.engine`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from oda_fed.encoding.engine import (
    FieldBatch,
    TokenCache,
    ValueCache,
    encode_batches,
    salted,
    tokenise_in_blocks,
)
from oda_fed.encoding.fields import FieldEncoding
from oda_fed.encoding.keys import derive_field_keys
from oda_fed.encoding.tokens import TokenLists, token_lists, tokens
from oda_fed.errors import ConfigError, InputDataError

WORD_BITS = 64
MAX_BITS = 1 << 16  # positions come from uint16 values
_POSITIONS_PER_DIGEST = 32  # a 64-byte digest holds 32 uint16 values
RECORD_SALT_DOMAIN = b"oda-fed/rsalt/v1"
"""The BLAKE2b salt parameter of salted tokens (16 bytes)."""

# Distinct values tokenised at once (bounds the code point matrices: a few MB for names and
# addresses; each block costs a kernel launch and its numbering, so small blocks cost time) and
# rows encoded at once by encode_records (bounds the token lists and masks of a chunk).
_VALUE_BLOCK = 65536
_ROW_BLOCK = 250_000


class _FieldMasks:
    """One field's key and the cache of the bit positions of every token it has hashed."""

    def __init__(self, encoding: FieldEncoding, key: bytes, *, bits: int) -> None:
        self.encoding = encoding
        self.key = key
        self.bits = bits
        self.cache = TokenCache(self.positions)
        self.values = ValueCache(self.cache, self._tokenise)

    def positions(
        self, new: Sequence[str | tuple[str, str]], need: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` bit positions of each token (a string, or a (salt, token) pair).

        Returns ``(positions, lengths)`` as a :data:`oda_fed.encoding.engine.Hasher` does:
        ``uint32`` positions, ``k`` per token.
        """
        k = self.encoding.k
        rounds = -(-k // _POSITIONS_PER_DIGEST)
        people = [j.to_bytes(16, "little") for j in range(rounds)]
        blake2b, key = hashlib.blake2b, self.key
        digests = []
        for token in new:
            if isinstance(token, str):
                data = token.encode("utf-8")
                digests.extend(
                    blake2b(data, key=key, digest_size=64, person=p).digest() for p in people
                )
            else:
                salt, text = token
                salt_bytes = salt.encode("utf-8")
                data = len(salt_bytes).to_bytes(4, "little") + salt_bytes + text.encode("utf-8")
                digests.extend(
                    blake2b(
                        data, key=key, digest_size=64, person=p, salt=RECORD_SALT_DOMAIN
                    ).digest()
                    for p in people
                )
        values = np.frombuffer(b"".join(digests), dtype="<u2").reshape(len(new), -1)[:, :k]
        positions = (values.astype(np.uint32) % np.uint32(self.bits)).reshape(-1)
        return positions, np.full(len(new), k, dtype=np.int64)

    def token_ids(self, value: str) -> list[int]:
        """Cache rows of the tokens of ``value``, hashing tokens not seen before."""
        found = tokens(value, self.encoding)
        return self.cache.ids(found, np.full(len(found), self.encoding.k)).tolist()

    def masks(self) -> np.ndarray:
        """One-token bit masks, a row per cached token (for inspection and tests)."""
        out = np.zeros((len(self.cache), self.bits // WORD_BITS), dtype=np.uint64)
        lengths = self.cache.lengths
        for row, (start, length) in enumerate(zip(self.cache.offsets, lengths, strict=True)):
            for p in self.cache.positions[start : start + length].tolist():
                out[row, p // WORD_BITS] |= np.uint64(1 << (p % WORD_BITS))
        return out

    def _tokenise(self, values: list[str]) -> tuple[TokenLists, np.ndarray, dict[int, str]]:
        found = tokenise_in_blocks(
            values, lambda block: token_lists(block, self.encoding), block=_VALUE_BLOCK
        )
        return found, np.full(len(found.index), self.encoding.k, dtype=np.int64), {}

    def batch(self, column: Sequence[str | None]) -> FieldBatch:
        """The field's part of a chunk: codes, and the tokens of each distinct value."""
        codes, values = _factorize(column, self.encoding.name)
        return self.values.batch(codes, values)[0]


def _factorize(column: Sequence[object], name: str) -> tuple[np.ndarray, list[str]]:
    """``(codes, values)``: each row's distinct value (-1 when missing) and the values."""
    import pandas as pd  # the project's columns come from pandas; clkhash's path needs none

    if not isinstance(column, pd.Series | pd.Index | np.ndarray | pd.api.extensions.ExtensionArray):
        column = np.asarray(column, dtype=object)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    values = np.asarray(uniques, dtype=object).tolist()
    if not all(isinstance(value, str) for value in values):
        found = next(value for value in values if not isinstance(value, str))
        raise InputDataError(
            f"linkage field {name!r}: values must be standardised strings or None, "
            f"found a {type(found).__name__}"
        )
    return np.asarray(codes, dtype=np.int64), values


def _check_bits(bits: int) -> None:
    if (
        isinstance(bits, bool)
        or not isinstance(bits, int | np.integer)
        or not WORD_BITS <= bits <= MAX_BITS
        or bits & (bits - 1)
    ):
        raise ConfigError(
            f"CLK length must be a power of two from {WORD_BITS} to {MAX_BITS} bits, got {bits!r}"
        )


class ClkEncoder:
    """Encodes chunks of standardised records, hashing each distinct token once across chunks.

    Parameters
    ----------
    fields
        The linkage fields to encode, with their encodings.
    secret
        The partners' linkage secret, at least 16 bytes.
    context
        The project name; partners must use the same one to get comparable CLKs.
    bits
        CLK length: a power of two from 64 to 65536.

    Raises
    ------
    ConfigError
        When ``bits`` is not a supported length, ``fields`` is empty or repeats a name.
    AuthError
        When the secret is shorter than 16 bytes.

    Examples
    --------
    >>> from oda_fed.encoding.fields import default_field_encoding
    >>> encoder = ClkEncoder(
    ...     [default_field_encoding("first", "name")],
    ...     secret=b"a shared secret of 32 bytes long",
    ...     context="demo-project",
    ... )
    >>> first = encoder.encode({"first": ["john", "jo"]})
    >>> second = encoder.encode({"first": ["john"]})  # "john"'s tokens are not hashed again
    >>> bool((first[0] == second[0]).all())
    True
    """

    def __init__(
        self,
        fields: Sequence[FieldEncoding],
        *,
        secret: bytes,
        context: str,
        bits: int = 1024,
    ) -> None:
        _check_bits(bits)
        if not fields:
            raise ConfigError("no linkage fields to encode")
        keys = derive_field_keys(secret, context=context, fields=fields)
        self.fields = list(fields)
        self.bits = int(bits)
        self._masks = [
            _FieldMasks(field, keys[field.name], bits=self.bits) for field in fields if field.k
        ]

    def encode(
        self,
        table: Mapping[str, Sequence[str | None]],
        *,
        salts: Sequence[str | None] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Encode one chunk of records; see :func:`encode_records` for the arguments.

        ``out``, when given, is an all-zero ``uint64[n, bits // 64]`` C-contiguous array to
        write the CLKs into.
        """
        n = _check_table(table, fields=self.fields, salts=salts)
        batches = [masks.batch(table[masks.encoding.name]) for masks in self._masks]
        if salts is not None:
            salt_codes, salt_values = _factorize(salts, "salts")
            batches = [
                salted(batch, salt_codes=salt_codes, salt_values=salt_values) for batch in batches
            ]
        return encode_batches(batches, rows=n, words=self.bits // WORD_BITS, out=out)


def _check_table(
    table: Mapping[str, Sequence[str | None]],
    *,
    fields: Sequence[FieldEncoding],
    salts: Sequence[str | None] | None,
) -> int:
    """The number of rows, after checking that every field has a column of the same length."""
    missing = [field.name for field in fields if field.name not in table]
    if missing:
        raise InputDataError(f"no column for linkage field(s) {missing}")
    lengths = {field.name: len(table[field.name]) for field in fields}
    if len(set(lengths.values())) > 1:
        raise InputDataError(f"linkage field columns differ in length: {lengths}")
    n = lengths[fields[0].name]
    if salts is not None and len(salts) != n:
        raise InputDataError(f"there are {len(salts)} record salts for {n} records")
    return n


def _rows(column: Sequence[object], lo: int, hi: int) -> Sequence[object]:
    return column.iloc[lo:hi] if hasattr(column, "iloc") else column[lo:hi]  # a pandas Series


def encode_records(
    table: Mapping[str, Sequence[str | None]],
    *,
    fields: Sequence[FieldEncoding],
    secret: bytes,
    context: str,
    bits: int = 1024,
    salts: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Encode standardised records into bit-packed Bloom-filter CLKs.

    The records are encoded in chunks by one :class:`ClkEncoder`, so memory stays bounded
    however many there are.

    Parameters
    ----------
    table
        Field name -> standardised values (as ``oda_fed.standardise`` returns them), one per
        record, all the same length. ``None`` (or NaN) is missing and contributes no bits.
        Columns not named in ``fields`` are ignored.
    fields
        The linkage fields to encode, with their encodings.
    secret
        The partners' linkage secret, at least 16 bytes.
    context
        The project name; partners must use the same one to get comparable CLKs.
    bits
        CLK length: a power of two from 64 to 65536.
    salts
        Optional record salts, one per record: every token of record ``i`` is hashed with
        ``salts[i]`` mixed in (see "Record salts" in this module's docstring); a ``None`` salt
        leaves that record unsalted.

    Returns
    -------
    numpy.ndarray
        ``uint64``, shape ``(n, bits // 64)``, C-contiguous; the layout is described in this
        module's docstring.

    Raises
    ------
    ConfigError
        When ``bits`` is not a supported length, ``fields`` is empty or repeats a name.
    InputDataError
        When a field has no column, the columns (or salts) differ in length, a value is not a
        string, or a date is not ``YYYY-MM-DD``.
    AuthError
        When the secret is shorter than 16 bytes.

    Examples
    --------
    >>> from oda_fed.encoding.fields import default_field_encoding
    >>> fields = [default_field_encoding("first", "name"), default_field_encoding("dob", "date")]
    >>> clks = encode_records(
    ...     {"first": ["john", None], "dob": ["1980-12-31", "1975-01-02"]},
    ...     fields=fields,
    ...     secret=b"a shared secret of 32 bytes long",
    ...     context="demo-project",
    ... )
    >>> clks.shape, clks.dtype
    ((2, 16), dtype('uint64'))
    """
    encoder = ClkEncoder(fields, secret=secret, context=context, bits=bits)
    n = _check_table(table, fields=fields, salts=salts)
    out = np.zeros((n, bits // WORD_BITS), dtype=np.uint64)
    step = _ROW_BLOCK
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        chunk = {field.name: _rows(table[field.name], lo, hi) for field in fields}
        chunk_salts = None if salts is None else _rows(salts, lo, hi)
        encoder.encode(chunk, salts=chunk_salts, out=out[lo:hi])
    return out


def _popcount_bytes(clks: np.ndarray) -> np.ndarray:
    # For NumPy < 2.0, which has no bitwise_count: a byte lookup table.
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    as_bytes = np.ascontiguousarray(clks).view(np.uint8).reshape(clks.shape[0], -1)
    return table[as_bytes].sum(axis=1, dtype=np.int64)


def popcount(clks: np.ndarray) -> np.ndarray:
    """Return the number of set bits of each CLK.

    Parameters
    ----------
    clks
        Bit-packed CLKs, ``uint64`` of shape ``(n, words)``.

    Returns
    -------
    numpy.ndarray
        ``int64`` of shape ``(n,)``.

    Examples
    --------
    >>> popcount(np.array([[0b1011, 1 << 63], [0, 0]], dtype=np.uint64))
    array([4, 0])
    """
    clks = np.asarray(clks)
    if clks.dtype != np.uint64 or clks.ndim != 2:
        raise ValueError(
            f"expected bit-packed CLKs, uint64 of shape (n, words); "
            f"got {clks.dtype} of shape {clks.shape}"
        )
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(clks).sum(axis=1, dtype=np.int64)
    return _popcount_bytes(clks)
