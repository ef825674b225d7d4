"""Encode records with a clkhash v3 linkage schema: the same bits as clkhash 0.18.3, much faster.

:func:`encode_clkhash` takes a schema from :func:`~oda_fed.encoding.clkhash_schema.load_clkhash_schema`,
the records and the secret, and returns the CLKs clkhash's ``generate_clks`` would, in oda-fed's
bit layout. It never imports clkhash; the interop tests check it against clkhash bit for bit.

What clkhash does, and so what this does
----------------------------------------
Per feature (column), each value is

1. checked (clkhash's ``validate_entries``), unless it equals the feature's missing-value
   sentinel: it must encode in the feature's encoding, match the format (string pattern, or
   length and case; a base-10 integer within bounds; a date ``strptime`` can read; an enum
   value). A value that fails is an :class:`~oda_fed.errors.InputDataError` naming the row and
   column, as clkhash raises;
2. formatted: the sentinel becomes ``replaceWith`` (itself by default); an integer is written
   back as Python writes ``int(value)``; a date as ``%Y%m%d``; a string is kept;
3. tokenised: ``ngram`` pads with ``n - 1`` spaces each side and keeps every n-gram, repeats
   included, positional ones as ``"{i + 1} {gram}"``; ``exact`` is the whole value; ``numeric``
   is the ``2 * resolution + 1`` points of a grid around the value (clkhash's
   ``NumericComparison``). An empty value has no tokens;
4. given ``k`` per token: ``bitsPerToken`` gives every token ``k``; ``bitsPerFeature = K`` over
   ``t`` tokens gives the first ``K % t`` tokens ``K // t + 1`` and the rest ``K // t``;
5. hashed into a Bloom filter of ``L = l * 2 ** xor_folds`` bits with the feature's keys
   ``(K1, K2)``, the ``2 i`` and ``2 i + 1``-th of ``2 * features`` HKDF keys of ``keySize``
   bytes (salt and info from the schema) from the secret. A token ``t`` (bytes in the
   feature's encoding) sets

   - ``blakeHash``: the first ``k`` of the little-endian ``uint16`` values of
     ``BLAKE2b(t, key=K1, salt=str(j))`` for ``j = 0, 1, ...``, each modulo ``L``;
   - ``doubleHash``: ``(h1 + i * h2) mod L`` for ``i < k``, with ``h1 = HMAC-SHA1(K1, t)`` and
     ``h2 = HMAC-MD5(K2, t)`` read as big-endian integers modulo ``L``; with
     ``prevent_singularity``, while ``h2 = 0``, ``h2 = HMAC-MD5(K2, t || utf8(chr(i)))`` for
     ``i = 0, 1, ...``.

A CLK is the OR over features, then folded ``xor_folds`` times (first half XOR second half).

Bit order
---------
clkhash holds a CLK in a big-endian ``bitarray``: filter bit ``i`` is bit ``7 - i % 8`` (most
significant first) of byte ``i // 8``, which is what it serialises. oda-fed keeps filter bit
``i`` in ``uint64`` word ``i // 64`` at bit ``i % 64`` (least significant first); written as
little-endian words that is bit ``i % 8`` of byte ``i // 8``. So the bytes are the same and the
bits within each byte are reversed; :mod:`oda_fed.encoding.clkhash_json` converts.

How it is fast
--------------
clkhash works record by record. Here each column of a chunk is factorised into distinct values
(on every core at once). The distinct values are checked and formatted together
(:func:`~oda_fed.encoding.clkhash_values.format_values`): with array kernels over their code
points wherever a check allows, the rest one by one exactly as clkhash does. The n-grams of all
values become integer keys at once; each distinct token is hashed once; and array kernels set
the bits over rows on every core (:mod:`oda_fed.encoding.engine`, :mod:`oda_fed.encoding.kernels`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Union

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oda_fed.encoding.clkhash_schema import (
    ClkhashFeature,
    ClkhashSchema,
    DateFormat,
    EnumFormat,
    NumericComparison,
)
from oda_fed.encoding.clkhash_values import format_values, shown, token_ks, tokenise
from oda_fed.encoding.codepoints import ArrowText
from oda_fed.encoding.distinct import dictionary_codes
from oda_fed.encoding.engine import FieldBatch, TokenCache, ValueCache, encode_batches
from oda_fed.encoding.token_batches import TokenLists
from oda_fed.errors import AuthError, InputDataError

CHUNK_ROWS = 100_000
"""Rows encoded at once; memory is bounded by a chunk plus the caches of distinct values."""

_KDF_HASHES = {"SHA256": hashes.SHA256, "SHA512": hashes.SHA512}


def derive_clkhash_keys(schema: ClkhashSchema, secret: bytes | str) -> list[tuple[bytes, bytes]]:
    """The two keys of each feature, as clkhash's ``generate_key_lists`` derives them.

    Examples
    --------
    >>> from oda_fed.encoding.clkhash_schema import parse_clkhash_schema
    >>> schema = parse_clkhash_schema({"version": 3, "clkConfig": {"l": 64,
    ...     "kdf": {"type": "HKDF", "keySize": 16}}, "features": [{"identifier": "id",
    ...     "ignored": True}]})
    >>> [len(key) for key in derive_clkhash_keys(schema, "secret")[0]]
    [16, 16]
    """
    ikm = _secret_bytes(secret)
    count = 2 * len(schema.features)
    material = HKDF(
        algorithm=_KDF_HASHES[schema.kdf_hash](),
        length=count * schema.key_size,
        salt=schema.kdf_salt,
        info=schema.kdf_info,
    ).derive(ikm)
    size = schema.key_size
    keys = [material[i * size : (i + 1) * size] for i in range(count)]
    return [(keys[2 * f], keys[2 * f + 1]) for f in range(len(schema.features))]


def _secret_bytes(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes | bytearray):
        raise TypeError(f"the secret must be bytes or str, not {type(secret).__name__}")
    if not secret:
        raise AuthError("the secret is empty; use the secret the partners agreed")
    return bytes(secret)


# --- step 5: hashing -----------------------------------------------------------------------------


def _blake_hasher(key: bytes, *, encoding: str, bits: int) -> Callable:
    salts = [str(j).encode() for j in range(-(-(1 << 16) // 32) + 1)]

    def positions(tokens: list[str], need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rounds = (need + 31) // 32
        blake2b = hashlib.blake2b
        digests = [
            blake2b(data, key=key, salt=salts[j]).digest()
            for token, count in zip(tokens, rounds.tolist(), strict=True)
            for data in (token.encode(encoding),)
            for j in range(count)
        ]
        shorts = np.frombuffer(b"".join(digests), dtype="<u2").astype(np.uint32)
        return shorts % np.uint32(bits), rounds * 32

    return positions


def _double_hasher(
    keys: tuple[bytes, bytes], *, encoding: str, bits: int, non_singular: bool
) -> Callable:
    key_sha1, key_md5 = keys

    def positions(tokens: list[str], need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.empty(len(tokens), dtype=np.int64)
        step = np.empty(len(tokens), dtype=np.int64)
        for i, token in enumerate(tokens):
            data = token.encode(encoding)
            first[i] = int.from_bytes(hmac.digest(key_sha1, data, "sha1"), "big") % bits
            h2 = int.from_bytes(hmac.digest(key_md5, data, "md5"), "big") % bits
            extra = 0
            while non_singular and h2 == 0:
                salted = data + chr(extra).encode("utf-8")
                h2 = int.from_bytes(hmac.digest(key_md5, salted, "md5"), "big") % bits
                extra += 1
            step[i] = h2
        lengths = need.astype(np.int64)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        rank = np.arange(int(lengths.sum()), dtype=np.int64) - starts
        out = (np.repeat(first, lengths) + rank * np.repeat(step, lengths)) % bits
        return out.astype(np.uint32), lengths

    return positions


class _FeatureEncoder:
    """One feature's keys, caches and value pipeline."""

    def __init__(self, feature: ClkhashFeature, keys: tuple[bytes, bytes], *, bits: int) -> None:
        self.feature = feature
        if feature.hash_type == "blakeHash":
            hasher = _blake_hasher(keys[0], encoding=feature.encoding, bits=bits)
        else:
            hasher = _double_hasher(
                keys,
                encoding=feature.encoding,
                bits=bits,
                non_singular=feature.prevent_singularity,
            )
        # Values are remembered across chunks only where checking or tokenising them takes
        # Python code per value; otherwise doing it again costs less than looking them up.
        per_value = isinstance(feature.format, DateFormat | EnumFormat) or isinstance(
            feature.comparison, NumericComparison
        )
        self.values = ValueCache(TokenCache(hasher), self._prepare, remember=per_value)

    def _prepare(self, values: Sequence[str]) -> tuple[TokenLists, np.ndarray, dict[int, str]]:
        formatted, problems, points = format_values(self.feature, values)
        found, unreadable = tokenise(formatted, self.feature.comparison, points=points)
        problems.update(unreadable)
        return found, token_ks(self.feature, found.counts), problems

    def batch(self, codes: np.ndarray, values: Sequence[str]) -> tuple[FieldBatch, _Problem | None]:
        """The feature's part of a chunk whose column :func:`_factorize` gave ``codes`` and
        ``values``, and its first problem (by row), if any."""
        batch, problems = self.values.batch(codes, values)
        if not problems:
            return batch, None
        # clkhash checks every value before it hashes any, so a failed check is reported first.
        checks = [i for i, problem in problems.items() if problem.startswith("invalid")]
        bad = np.zeros(len(values), dtype=bool)
        bad[checks or list(problems)] = True
        row = int(np.flatnonzero(bad[codes])[0])
        value = values[int(codes[row])]
        message = f"{problems[int(codes[row])]}: {shown(value)}"
        return batch, (0 if checks else 1, row, self.feature.index, message)


_Problem = tuple[int, int, int, str]
"""(0 for a failed check or 1 for a value that cannot be hashed, row, feature index, message)."""


if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Rows = Union["pd.DataFrame", "pa.Table", Sequence[Sequence[str]]]
"""A chunk of records: a pandas frame, an Arrow table of text columns, or rows of strings."""


def _is_pandas(value: object) -> bool:
    # Not imported for this: a process that never loaded pandas (oda-fed encode with a
    # clkhash schema reads with Arrow) holds no pandas object.
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame | pd.Series)


def _is_pandas_text(column: object) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(getattr(column, "dtype", None), pd.StringDtype)


def _is_arrow(value: object) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(value, pa.Table | pa.Array | pa.ChunkedArray)


def _is_table(rows: object) -> bool:
    return _is_arrow(rows) or _is_pandas(rows)


def _arrow_factorize(column: object, identifier: str) -> tuple[np.ndarray, pa.Array]:
    import pyarrow as pa

    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        raise InputDataError(
            f"column {identifier!r}: values must be strings, found {column.type} (read the "
            "file with every column as text)"
        )
    return dictionary_codes(column)


def _factorize(column: object, identifier: str) -> tuple[np.ndarray, Sequence[str]]:
    """Row -> distinct value codes; a missing cell (None, NaN) is the empty string, as clkhash
    reads an empty CSV cell."""
    if _is_arrow(column):
        codes, dictionary = _arrow_factorize(column, identifier)
        if not dictionary.null_count and codes.min(initial=0) >= 0:
            return codes, ArrowText(dictionary)  # Python strings made only if a value needs one
        values = dictionary.to_pylist()
    else:
        import pandas as pd  # only for rows given as a frame or Python values

        if not isinstance(column, pd.Series | np.ndarray):
            column = np.asarray(column, dtype=object)
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        codes = np.asarray(codes, dtype=np.int64)
        values = np.asarray(uniques, dtype=object).tolist()
    # A string column holds only strings (missing cells aside), so only others are checked.
    if not _is_arrow(column) and not _is_pandas_text(column):
        for value in values:
            if not isinstance(value, str):
                raise InputDataError(
                    f"column {identifier!r}: values must be strings, found a "
                    f"{type(value).__name__} (read the file with dtype=str)"
                )
    missing = codes < 0
    if missing.any():
        try:
            empty = values.index("")
        except ValueError:
            empty = len(values)
            values.append("")
        codes[missing] = empty
    return codes, values


def _fold(clks: np.ndarray, *, bits: int, folds: int) -> np.ndarray:
    """XOR-fold ``folds`` times: each fold XORs the first half of the bits with the second."""
    for _ in range(folds):
        half = bits // 2
        if half % 64 == 0:
            clks = clks[:, : half // 64] ^ clks[:, half // 64 : bits // 64]
        else:
            raw = np.ascontiguousarray(clks, dtype="<u8").view(np.uint8)
            as_bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :bits]
            folded = as_bits[:, :half] ^ as_bits[:, half:]
            padded = np.zeros((len(clks), -(-half // 64) * 64), dtype=np.uint8)
            padded[:, :half] = folded
            clks = np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)
        bits = half
    return np.ascontiguousarray(clks)


class ClkhashEncoder:
    """Encodes chunks of records with one clkhash schema and secret, keeping its caches.

    Parameters
    ----------
    schema
        The checked schema.
    secret
        The secret the partners share (a ``str`` is used as its UTF-8 bytes, as clkhash does).

    Examples
    --------
    >>> from oda_fed.encoding.clkhash_schema import parse_clkhash_schema
    >>> schema = parse_clkhash_schema({"version": 3, "clkConfig": {"l": 64, "kdf": {"type":
    ...     "HKDF"}}, "features": [{"identifier": "name", "format": {"type": "string"},
    ...     "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerToken": 3}}}]})
    >>> ClkhashEncoder(schema, secret="secret").encode([["ab"], [""]]).shape
    (2, 1)
    """

    def __init__(self, schema: ClkhashSchema, *, secret: bytes | str) -> None:
        self.schema = schema
        keys = derive_clkhash_keys(schema, secret)
        self._features = [
            _FeatureEncoder(feature, keys[feature.index], bits=schema.hash_bits)
            for feature in schema.features
            if not feature.ignored
        ]

    def encode(
        self,
        rows: Rows,
        *,
        first_row: int = 0,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Encode one chunk of rows (see :func:`encode_clkhash`).

        ``first_row`` numbers the rows in messages; ``out``, when given, is an all-zero
        ``uint64[len(rows), ceil(l / 64)]`` C-contiguous array to write the CLKs into.
        """
        columns = _columns(rows, self.schema, first_row=first_row)
        n = len(rows)
        # Factorising a column of pandas strings runs in Arrow without the GIL, so columns
        # are factorised on every core at once; the rest of each feature's work follows in turn.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            factorized = list(
                pool.map(
                    lambda encoder: _factorize(
                        columns(encoder.feature.index), encoder.feature.identifier
                    ),
                    self._features,
                )
            )
        found = [
            encoder.batch(codes, values)
            for encoder, (codes, values) in zip(self._features, factorized, strict=True)
        ]
        problems = [problem for _, problem in found if problem is not None]
        if problems:
            _, row, index, message = min(problems)
            raise InputDataError(
                f"row {first_row + row} (counting from 0), column "
                f"{self.schema.features[index].identifier!r}: {message}"
            )
        batches = [batch for batch, _ in found]
        hash_bits = self.schema.hash_bits
        if self.schema.xor_folds == 0:
            return encode_batches(batches, rows=n, words=-(-hash_bits // 64), out=out)
        clks = encode_batches(batches, rows=n, words=-(-hash_bits // 64))
        folded = _fold(clks, bits=hash_bits, folds=self.schema.xor_folds)
        if out is None:
            return folded
        out[...] = folded
        return out


def _columns(rows: Rows, schema: ClkhashSchema, *, first_row: int) -> Callable[[int], object]:
    """Check the shape of ``rows`` and return ``column(index)``."""
    width = len(schema.features)
    if _is_table(rows):
        header = [str(name) for name in rows.columns] if _is_pandas(rows) else rows.column_names
        expected = schema.identifiers
        if header != expected:
            differ = [
                f"column {i}: {got!r} where the schema has {want!r}"
                for i, (got, want) in enumerate(zip(header, expected, strict=False))
                if got != want
            ]
            if len(header) != len(expected):
                differ.append(f"{len(header)} columns where the schema has {len(expected)}")
            raise InputDataError(
                f"the columns do not match the schema's features: {'; '.join(differ)}"
            )
        if _is_arrow(rows):
            return rows.column
        return lambda index: rows.iloc[:, index]
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputDataError(
                f"row {first_row + i} (counting from 0) has {len(row)} entries; "
                f"the schema has {width} features"
            )
    transposed = list(zip(*rows, strict=True)) if len(rows) else [()] * width
    return lambda index: transposed[index]


def encode_clkhash(
    schema: ClkhashSchema,
    rows: Rows,
    *,
    secret: bytes | str,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Encode records with a clkhash schema: the CLKs clkhash 0.18.3 makes, in oda-fed's layout.

    Parameters
    ----------
    schema
        From :func:`~oda_fed.encoding.clkhash_schema.load_clkhash_schema`.
    rows
        One entry per schema feature, in the schema's order, ignored features included: a
        ``DataFrame`` whose column names are the feature identifiers, or a sequence of rows.
        Values are strings; ``None`` or NaN counts as the empty string (as clkhash reads an
        empty CSV cell).
    secret
        The secret the partners share; a ``str`` is used as its UTF-8 bytes.
    progress
        Called after each chunk of rows with the number of rows encoded so far.

    Returns
    -------
    numpy.ndarray
        ``uint64`` of shape ``(n, ceil(l / 64))``: bit ``b`` of a CLK is in word ``b // 64`` at
        bit ``b % 64`` (least significant first); bits from ``l`` on are 0. See "Bit order" in
        this module's docstring for how that maps onto clkhash's bytes.

    Raises
    ------
    InputDataError
        When the columns do not match the schema, a row has the wrong number of entries, a
        value is not a string, or a value fails the schema's checks (the message names the
        row, counting from 0, and the column, and shows at most 32 characters of the value).
    AuthError
        When the secret is empty.

    Examples
    --------
    >>> from oda_fed.encoding.clkhash_schema import parse_clkhash_schema
    >>> schema = parse_clkhash_schema({"version": 3, "clkConfig": {"l": 128, "kdf": {"type":
    ...     "HKDF"}}, "features": [{"identifier": "name", "format": {"type": "string"},
    ...     "hashing": {"comparison": {"type": "ngram", "n": 2}, "strategy": {"bitsPerToken": 5}}}]})
    >>> import pandas as pd
    >>> clks = encode_clkhash(schema, pd.DataFrame({"name": ["anna", "ann"]}), secret="s3cret")
    >>> clks.shape, clks.dtype
    ((2, 2), dtype('uint64'))
    """
    encoder = ClkhashEncoder(schema, secret=secret)
    n = len(rows)
    out = np.zeros((n, math.ceil(schema.bits / 64)), dtype=np.uint64)
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n)
        if _is_table(rows):
            chunk = rows.iloc[lo:hi] if _is_pandas(rows) else rows.slice(lo, hi - lo)
        else:
            chunk = rows[lo:hi]
        encoder.encode(chunk, first_row=lo, out=out[lo:hi])
        if progress is not None:
            progress(hi)
    if n == 0:
        # A schema with a bad header or widths must still be refused for no rows.
        encoder.encode(rows, first_row=0)
    return out
