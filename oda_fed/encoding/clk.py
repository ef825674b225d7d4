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

How it is computed
------------------
Values repeat (first names, dates, postcodes) and tokens repeat far more, so per field each
distinct token is hashed once into a one-token bit mask, each distinct value's mask is the OR of
its tokens' masks, and each row ORs in its value's mask with a vectorised gather.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from oda_fed.encoding.fields import FieldEncoding
from oda_fed.encoding.keys import derive_field_keys
from oda_fed.encoding.tokens import tokens
from oda_fed.errors import ConfigError, InputDataError

WORD_BITS = 64
MAX_BITS = 1 << 16  # positions come from uint16 values
_POSITIONS_PER_DIGEST = 32  # a 64-byte digest holds 32 uint16 values

# Bound the temporaries: token masks gathered per block of distinct values, rows ORed per block.
_VALUE_BLOCK = 8192
_ROW_BLOCK = 65536


class _FieldMasks:
    """Token -> one-token bit mask cache of one field, hashing each distinct token once."""

    def __init__(self, encoding: FieldEncoding, key: bytes, *, bits: int) -> None:
        self.encoding = encoding
        self.key = key
        self.bits = bits
        self.ids: dict[str, int] = {}
        self._pending: list[str] = []
        self._masks = np.zeros((0, bits // WORD_BITS), dtype=np.uint64)

    def token_ids(self, value: str) -> list[int]:
        """Ids of the tokens of ``value`` (rows of :meth:`masks`), registering new tokens."""
        found = []
        for token in tokens(value, self.encoding):
            token_id = self.ids.get(token)
            if token_id is None:
                token_id = self.ids[token] = len(self.ids)
                self._pending.append(token)
            found.append(token_id)
        return found

    def positions(self, new: Sequence[str]) -> np.ndarray:
        """The ``k`` bit positions of each token, shape ``(len(new), k)``."""
        k = self.encoding.k
        rounds = -(-k // _POSITIONS_PER_DIGEST)
        people = [j.to_bytes(16, "little") for j in range(rounds)]
        digests = b"".join(
            hashlib.blake2b(token.encode("utf-8"), key=self.key, digest_size=64, person=p).digest()
            for token in new
            for p in people
        )
        values = np.frombuffer(digests, dtype="<u2").reshape(len(new), -1)[:, :k]
        return values.astype(np.intp) % self.bits

    def masks(self) -> np.ndarray:
        """One-token bit masks, a row per token id; hashes tokens registered since the last call."""
        if self._pending:
            new, self._pending = self._pending, []
            positions = self.positions(new)
            fresh = np.zeros((len(new), self._masks.shape[1]), dtype=np.uint64)
            rows = np.repeat(np.arange(len(new)), positions.shape[1])
            flat = positions.ravel()
            bit = np.left_shift(np.uint64(1), (flat % WORD_BITS).astype(np.uint64))
            np.bitwise_or.at(fresh, (rows, flat // WORD_BITS), bit)
            self._masks = np.concatenate([self._masks, fresh])
        return self._masks


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


def _value_masks(column: Sequence[str | None], masks: _FieldMasks) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes, value_masks)``: row -> distinct value, and one bit mask per value.

    ``value_masks`` has one extra all-zero row at the end; missing rows have code -1 and so
    read it.
    """
    name = masks.encoding.name
    codes, uniques = pd.factorize(np.asarray(column, dtype=object), use_na_sentinel=True)
    bounds = np.zeros(len(uniques) + 1, dtype=np.intp)
    flat_ids: list[int] = []
    for i, value in enumerate(uniques):
        if not isinstance(value, str):
            raise InputDataError(
                f"linkage field {name!r}: values must be standardised strings or None, "
                f"found a {type(value).__name__}"
            )
        flat_ids.extend(masks.token_ids(value))
        bounds[i + 1] = len(flat_ids)
    token_masks = masks.masks()
    ids = np.asarray(flat_ids, dtype=np.intp)

    out = np.zeros((len(uniques) + 1, token_masks.shape[1]), dtype=np.uint64)
    for lo in range(0, len(uniques), _VALUE_BLOCK):
        hi = min(lo + _VALUE_BLOCK, len(uniques))
        starts, ends = bounds[lo:hi], bounds[lo + 1 : hi + 1]
        # reduceat misreads empty segments (and fails on one at the very end), so values
        # without tokens are left out of it and keep their all-zero mask.
        filled = np.flatnonzero(ends > starts)
        if filled.size == 0:
            continue
        first = starts[filled[0]]
        gathered = token_masks[ids[first : ends[filled[-1]]]]
        out[lo + filled] = np.bitwise_or.reduceat(gathered, starts[filled] - first, axis=0)
    return codes, out


def encode_records(
    table: Mapping[str, Sequence[str | None]],
    *,
    fields: Sequence[FieldEncoding],
    secret: bytes,
    context: str,
    bits: int = 1024,
) -> np.ndarray:
    """Encode standardised records into bit-packed Bloom-filter CLKs.

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
        When a field has no column, the columns differ in length, a value is not a string, or a
        date is not ``YYYY-MM-DD``.
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
    _check_bits(bits)
    if not fields:
        raise ConfigError("no linkage fields to encode")
    keys = derive_field_keys(secret, context=context, fields=fields)
    missing = [field.name for field in fields if field.name not in table]
    if missing:
        raise InputDataError(f"no column for linkage field(s) {missing}")
    lengths = {field.name: len(table[field.name]) for field in fields}
    if len(set(lengths.values())) > 1:
        raise InputDataError(f"linkage field columns differ in length: {lengths}")
    n = lengths[fields[0].name]

    clks = np.zeros((n, bits // WORD_BITS), dtype=np.uint64)
    for field in fields:
        if field.k == 0:
            continue
        masks = _FieldMasks(field, keys[field.name], bits=bits)
        codes, value_masks = _value_masks(table[field.name], masks)
        for lo in range(0, n, _ROW_BLOCK):
            block = slice(lo, min(lo + _ROW_BLOCK, n))
            clks[block] |= value_masks[codes[block]]
    return clks


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
