"""The tokens a standardised value contributes to a CLK, one value at a time or in batches.

Every token starts with the field name and a colon, so that equal strings in two fields stay
distinct tokens even before keyed hashing separates them. Tokens of one kind within a field are
plain (``"first_name:_j"``); a field with several kinds marks the extra ones ``kind=``
(``"dob:y=1980"``, ``"postcode:out=LS6"``). Standardised values never contain ``=``, so the kinds
cannot collide.

:func:`tokens` tokenises one value. :func:`token_lists` tokenises a batch of distinct values into
a :class:`TokenLists` (compressed sparse rows) with the same tokens per value; for n-gram fields
it slices all values at once as a matrix of code points (:func:`ngram_lists`) and builds a string
only once per distinct token, which is what makes encoding a large population fast.

Each field type has one entry in ``_TOKENIZERS``; a type without a batch tokenizer in
``_BATCH_TOKENIZERS`` is batched by calling its one-value tokenizer on each value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oda_fed.encoding.fields import FieldEncoding
from oda_fed.standardise import InvalidValue

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_PAD = "_"

# Code points need 21 bits, so an n-gram packs into one uint64 (a fast hash key) when
# 21 * n bits, plus the position bits of a positional n-gram, fit.
_CODE_BITS = 21
_MAX_POSITION_BITS = 22


@dataclass(frozen=True)
class TokenLists:
    """The tokens of a batch of values, in compressed sparse row form.

    Value ``v`` has the tokens ``keys[index[i]]`` for ``i`` in
    ``range(offsets[v], offsets[v + 1])``, in order, repeats kept.

    Parameters
    ----------
    offsets
        ``int64[u + 1]``, starting at 0 and non-decreasing.
    index
        ``int64[m]``, each in ``range(len(keys))``.
    keys
        The tokens (strings, or any hashable key); normally distinct.

    Examples
    --------
    >>> batch = TokenLists.from_lists([["a", "b"], [], ["b"]])
    >>> batch.lists()
    [['a', 'b'], [], ['b']]
    >>> batch.counts.tolist()
    [2, 0, 1]
    """

    offsets: np.ndarray
    index: np.ndarray
    keys: list[Hashable]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """Number of tokens of each value, ``int64[u]``."""
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[Hashable]]) -> TokenLists:
        """Build from one list of tokens per value."""
        ids: dict[Hashable, int] = {}
        index = [ids.setdefault(token, len(ids)) for tokens_ in lists for token in tokens_]
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets, np.asarray(index, dtype=np.int64), list(ids))

    @classmethod
    def concat(cls, parts: Sequence[TokenLists]) -> TokenLists:
        """The values of ``parts`` one batch after another."""
        if len(parts) == 1:
            return parts[0]
        keys: list[Hashable] = []
        indexes, counts = [], []
        for part in parts:
            indexes.append(part.index + len(keys))
            counts.append(part.counts)
            keys.extend(part.keys)
        offsets = np.zeros(sum(len(p) for p in parts) + 1, dtype=np.int64)
        if len(offsets) > 1:
            np.cumsum(np.concatenate(counts), out=offsets[1:])
        return cls(offsets, np.concatenate(indexes) if indexes else _EMPTY, keys)

    @classmethod
    def single(cls, keys: Sequence[Hashable]) -> TokenLists:
        """One token per value: value ``v`` has the token ``keys[v]``."""
        index, distinct = pd.factorize(np.asarray(keys, dtype=object))
        offsets = np.arange(len(keys) + 1, dtype=np.int64)
        return cls(offsets, np.asarray(index, dtype=np.int64), list(distinct))

    @classmethod
    def scatter(cls, size: int, parts: Sequence[tuple[np.ndarray, TokenLists]]) -> TokenLists:
        """``size`` values, where ``parts`` gives the tokens of values ``indices`` as a batch."""
        counts = np.zeros(size, dtype=np.int64)
        for indices, part in parts:
            counts[indices] = part.counts
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        index = np.zeros(offsets[-1], dtype=np.int64)
        keys: list[Hashable] = []
        for indices, part in parts:
            index[_moved(part.offsets, new_starts=offsets[indices], counts=part.counts)] = (
                part.index + len(keys)
            )
            keys.extend(part.keys)
        return cls(offsets, index, keys)

    def then(self, other: TokenLists) -> TokenLists:
        """Each value's tokens here followed by its tokens in ``other`` (same number of values)."""
        mine, theirs = self.counts, other.counts
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(mine + theirs, out=offsets[1:])
        index = np.empty(offsets[-1], dtype=np.int64)
        # Occurrence i of value v moves from its old offset to the value's new one.
        index[_moved(self.offsets, new_starts=offsets, counts=mine)] = self.index
        moved = _moved(other.offsets, new_starts=offsets[:-1] + mine, counts=theirs)
        index[moved] = other.index + len(self.keys)
        return TokenLists(offsets, index, [*self.keys, *other.keys])

    def lists(self) -> list[list[Hashable]]:
        """One list of tokens per value (for inspection and tests)."""
        index = self.index.tolist()
        bounds = self.offsets.tolist()
        return [
            [self.keys[i] for i in index[lo:hi]] for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]


_EMPTY = np.zeros(0, dtype=np.int64)


def _moved(old_offsets: np.ndarray, *, new_starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """New places of the occurrences that start at ``old_offsets`` when values move."""
    shift = np.repeat(new_starts[: len(counts)] - old_offsets[:-1], counts)
    return np.arange(old_offsets[-1], dtype=np.int64) + shift


def ngrams(value: str, n: int) -> list[str]:
    """Return the distinct n-grams of ``value`` padded with ``_`` at each end, in first-seen order.

    The padding (one character each side when n > 1) gives the first and last letters tokens of
    their own. A value shorter than ``n`` after padding is one token.

    Examples
    --------
    >>> ngrams("john", 2)
    ['_j', 'jo', 'oh', 'hn', 'n_']
    >>> ngrams("anna", 1)
    ['a', 'n']
    """
    padded = f"{_PAD}{value}{_PAD}" if n > 1 else value
    if len(padded) <= n:
        return [padded]
    return list(dict.fromkeys(padded[i : i + n] for i in range(len(padded) - n + 1)))


def ngram_lists(
    values: Sequence[str],
    n: int,
    *,
    pad: str,
    pad_width: int,
    positional: bool = False,
    prefix: str = "",
) -> TokenLists:
    """Return the n-grams of every value at once, in order, repeats kept.

    Each value is padded with ``pad_width`` copies of ``pad`` at each end, then cut into its
    ``len(padded) - n + 1`` n-grams. An empty value has no tokens; a non-empty value shorter
    than ``n`` after padding is one token, the padded value. A positional n-gram is
    ``f"{i + 1} {gram}"`` (counting from 1, as clkhash writes them). Every token is prefixed
    with ``prefix``.

    Parameters
    ----------
    values
        The values; each distinct value should appear once, as work is per value.
    n
        The n of the n-grams, at least 1.
    pad
        One padding character.
    pad_width
        Copies of ``pad`` at each end.
    positional
        Whether tokens carry their position.
    prefix
        Put before every token.

    Returns
    -------
    TokenLists

    Examples
    --------
    >>> ngram_lists(["ab", ""], 2, pad=" ", pad_width=1).lists()
    [[' a', 'ab', 'b '], []]
    >>> ngram_lists(["ab"], 1, pad=" ", pad_width=0, positional=True).lists()
    [['1 a', '2 b']]
    """
    u = len(values)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=u)
    padded = lens + 2 * pad_width
    short = (lens > 0) & (padded < n)
    grams = np.where(lens > 0, np.maximum(padded - n + 1, 1), 0)
    offsets = np.zeros(u + 1, dtype=np.int64)
    np.cumsum(grams, out=offsets[1:])
    m = int(offsets[-1])

    cps = np.zeros((m, n), dtype=np.uint32)
    starts = np.zeros(m, dtype=np.int64)
    regular = np.flatnonzero((lens > 0) & ~short)
    # Values are sliced in buckets of similar length, so that one long value does not widen
    # the code point matrix of every other.
    order = regular[np.argsort(lens[regular], kind="stable")]
    lo = 0
    while lo < len(order):
        width = int(lens[order[lo]])
        limit = max(2 * width, 16)
        hi = int(np.searchsorted(lens[order], limit, side="right"))
        _slice_bucket(
            values,
            order[lo:hi],
            lens=lens,
            offsets=offsets,
            cps=cps,
            starts=starts,
            n=n,
            pad=pad,
            pad_width=pad_width,
        )
        lo = hi

    shorts = np.flatnonzero(short)
    if not shorts.size:
        index, keys = _distinct_grams(cps, starts, n, positional=positional, prefix=prefix)
        return TokenLists(offsets, index, keys)
    # Padded values shorter than n are each one token, the padded value (no positional form is
    # needed: clkhash's padding never makes a value shorter than n).
    index = np.empty(m, dtype=np.int64)
    sliced = np.ones(m, dtype=bool)
    sliced[offsets[shorts]] = False
    index[sliced], keys = _distinct_grams(
        cps[sliced], starts[sliced], n, positional=positional, prefix=prefix
    )
    whole = {f"{prefix}{pad * pad_width}{values[v]}{pad * pad_width}" for v in shorts.tolist()}
    ids = {key: len(keys) + j for j, key in enumerate(whole)}
    keys.extend(ids)
    index[offsets[shorts]] = [
        ids[f"{prefix}{pad * pad_width}{values[v]}{pad * pad_width}"] for v in shorts.tolist()
    ]
    return TokenLists(offsets, index, keys)


def _slice_bucket(
    values: Sequence[str],
    rows: np.ndarray,
    *,
    lens: np.ndarray,
    offsets: np.ndarray,
    cps: np.ndarray,
    starts: np.ndarray,
    n: int,
    pad: str,
    pad_width: int,
) -> None:
    """Write the n-grams of the values ``rows`` into ``cps`` (code points) and ``starts``."""
    width = int(lens[rows].max())
    text = np.array([values[v] for v in rows], dtype=f"<U{width}")
    matrix = np.full((len(rows), width + 2 * pad_width), ord(pad), dtype=np.uint32)
    matrix[:, pad_width : pad_width + width] = text.view(np.uint32).reshape(len(rows), width)
    # Lengths come from Python, so a value's own trailing NULs are kept; only the cells past
    # its end are reset to padding.
    ends = pad_width + lens[rows]
    matrix[np.arange(matrix.shape[1])[None, :] >= ends[:, None]] = ord(pad)
    windows = np.lib.stride_tricks.sliding_window_view(matrix, n, axis=1)
    count = ends + pad_width - n + 1
    valid = np.arange(windows.shape[1])[None, :] < count[:, None]
    which, start = np.nonzero(valid)
    at = offsets[rows[which]] + start
    cps[at] = windows[which, start]
    starts[at] = start


def _distinct_grams(
    cps: np.ndarray, starts: np.ndarray, n: int, *, positional: bool, prefix: str
) -> tuple[np.ndarray, list[Hashable]]:
    """Number the distinct n-grams (with position, if positional) and spell each once."""
    if len(cps) == 0:
        return np.zeros(0, dtype=np.int64), []
    position_bits = 64 - _CODE_BITS * n
    if not positional and position_bits >= 0 or positional and position_bits >= _MAX_POSITION_BITS:
        packed = np.zeros(len(cps), dtype=np.uint64)
        for j in range(n):
            packed |= cps[:, j].astype(np.uint64) << np.uint64(_CODE_BITS * (n - 1 - j))
        if positional:
            packed |= starts.astype(np.uint64) << np.uint64(_CODE_BITS * n)
        index, distinct = pd.factorize(packed)
        distinct = np.asarray(distinct, dtype=np.uint64)
        shifts = np.uint64(_CODE_BITS) * np.arange(n - 1, -1, -1, dtype=np.uint64)
        grams = ((distinct[:, None] >> shifts[None, :]) & np.uint64((1 << _CODE_BITS) - 1)).astype(
            np.uint32
        )
        positions = (distinct >> np.uint64(_CODE_BITS * n)).astype(np.int64)
    else:
        table = np.column_stack([cps, starts.astype(np.uint32)]) if positional else cps
        rows, index = np.unique(table, axis=0, return_inverse=True)
        grams = np.ascontiguousarray(rows[:, :n])
        positions = rows[:, n].astype(np.int64) if positional else np.zeros(len(rows), np.int64)
    spelled = _spell(grams)
    if positional:
        keys: list[Hashable] = [
            f"{prefix}{p + 1} {g}" for p, g in zip(positions.tolist(), spelled, strict=True)
        ]
    else:
        keys = [prefix + g for g in spelled] if prefix else list(spelled)
    return np.asarray(index, dtype=np.int64).reshape(-1), keys


def _spell(grams: np.ndarray) -> list[str]:
    """The strings of rows of code points."""
    n = grams.shape[1]
    # numpy's fixed-width strings drop trailing NULs, so rows holding a NUL are spelled by hand.
    spelled = np.ascontiguousarray(grams).view(f"<U{n}").reshape(-1).tolist()
    for i in np.flatnonzero((grams == 0).any(axis=1)).tolist():
        spelled[i] = "".join(map(chr, grams[i].tolist()))
    return spelled


# --- the tokens of each field type -------------------------------------------------------------


def _ngram_parts(value: str, encoding: FieldEncoding) -> list[str]:
    return ngrams(value, encoding.ngram)


def _date_parts(value: str, encoding: FieldEncoding) -> list[str]:
    match = _ISO_DATE.fullmatch(value)
    if match is None:
        raise InvalidValue("date", "not a standardised date (expected YYYY-MM-DD)", value=value)
    year, month, day = match.groups()
    low, high = sorted((day, month))
    # Ordered day and month agree only when both are right; the unordered pair also survives
    # a day/month swap, and the year alone survives any error in the day and month.
    return [f"y={year}", f"d={day}", f"m={month}", f"dm={low}/{high}"]


def _split_postcode(value: str) -> tuple[str, str]:
    """``(canonical, outward)``: the postcode with one space before the inward code."""
    compact = value.replace(" ", "")
    # The outward code (district) is all but the last three characters (the inward code).
    outward, inward = (compact[:-3], compact[-3:]) if len(compact) > 3 else (compact, "")
    return (f"{outward} {inward}" if inward else outward), outward


def _postcode_parts(value: str, encoding: FieldEncoding) -> list[str]:
    canonical, outward = _split_postcode(value)
    return [*ngrams(canonical, encoding.ngram), f"out={outward}"]


def _whole_value(value: str, encoding: FieldEncoding) -> list[str]:
    return [value]


Tokenizer = Callable[[str, FieldEncoding], list[str]]
"""Tokens of one non-empty value, without the field prefix."""

BatchTokenizer = Callable[[Sequence[str], FieldEncoding], TokenLists]
"""Tokens of many non-empty values, with the field prefix; the same tokens as the one-value form."""

_TOKENIZERS: dict[str, Tokenizer] = {
    "name": _ngram_parts,
    "free_text": _ngram_parts,
    "text": _ngram_parts,
    "address": _ngram_parts,
    "date_of_birth": _date_parts,
    "date": _date_parts,
    "postcode": _postcode_parts,
    "sex": _whole_value,
    "nhs_number": _whole_value,
    "uprn": _whole_value,
}


def _batch_ngrams(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    n = encoding.ngram
    return ngram_lists(values, n, pad=_PAD, pad_width=1 if n > 1 else 0, prefix=f"{encoding.name}:")


def _batch_postcodes(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    split = [_split_postcode(value) for value in values]
    if not all(canonical for canonical, _ in split):
        # A value of spaces only has an empty canonical form, which the one-value n-grams pad
        # into a token; such values are rare enough to take the one-value path.
        return TokenLists.from_lists([tokens(value, encoding) for value in values])
    grams = _batch_ngrams([canonical for canonical, _ in split], encoding)
    prefix = f"{encoding.name}:out="
    return grams.then(TokenLists.single([prefix + outward for _, outward in split]))


def _batch_whole_values(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    prefix = f"{encoding.name}:"
    return TokenLists.single([prefix + value for value in values])


_ZERO, _NINE, _DASH = ord("0"), ord("9"), ord("-")
_DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]


def _batch_dates(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    """Date tokens of many ``YYYY-MM-DD`` values, reading the digits as arrays of code points.

    Values not of exactly that ASCII form take the one-value path, which accepts the other
    digits the pattern allows and raises for the rest.
    """
    u = len(values)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=u)
    cps = np.array(values, dtype="<U10").view(np.uint32).reshape(u, 10)
    digits = cps[:, _DATE_DIGITS]
    fast = (
        (lens == 10)
        & ((digits >= _ZERO) & (digits <= _NINE)).all(axis=1)
        & (cps[:, 4] == _DASH)
        & (cps[:, 7] == _DASH)
    )
    d = digits[fast].astype(np.int64) - _ZERO
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    # Two-digit strings sort as their numbers, so the unordered pair is (min, max).
    pair = np.minimum(day, month) * 100 + np.maximum(day, month)
    prefix = encoding.name
    kinds = [
        (year, lambda y: f"{prefix}:y={y:04d}"),
        (day, lambda x: f"{prefix}:d={x:02d}"),
        (month, lambda x: f"{prefix}:m={x:02d}"),
        (pair, lambda x: f"{prefix}:dm={x // 100:02d}/{x % 100:02d}"),
    ]
    index = np.empty((len(year), len(kinds)), dtype=np.int64)
    keys: list[Hashable] = []
    for j, (numbers, spell) in enumerate(kinds):
        distinct, inverse = np.unique(numbers, return_inverse=True)
        index[:, j] = inverse.reshape(-1) + len(keys)
        keys.extend(spell(x) for x in distinct.tolist())
    offsets = np.arange(0, index.size + 1, len(kinds), dtype=np.int64)
    found = TokenLists(offsets, index.reshape(-1), keys)
    slow = np.flatnonzero(~fast)
    if not slow.size:
        return found
    rest = TokenLists.from_lists([tokens(values[i], encoding) for i in slow.tolist()])
    return TokenLists.scatter(u, [(np.flatnonzero(fast), found), (slow, rest)])


_BATCH_TOKENIZERS: dict[str, BatchTokenizer] = {
    "name": _batch_ngrams,
    "free_text": _batch_ngrams,
    "text": _batch_ngrams,
    "address": _batch_ngrams,
    "postcode": _batch_postcodes,
    "date_of_birth": _batch_dates,
    "date": _batch_dates,
    "sex": _batch_whole_values,
    "nhs_number": _batch_whole_values,
    "uprn": _batch_whole_values,
}


def tokens(value: str, encoding: FieldEncoding) -> list[str]:
    """Return the distinct tokens of a standardised value, in a deterministic order.

    - name, free text, address: padded n-grams (``"_john_"`` gives ``_j jo oh hn n_`` for
      n = 2).
    - date of birth (``YYYY-MM-DD``): the year, the ordered day, the ordered month, and the
      unordered {day, month} pair, so that a day/month swap still agrees on two tokens of four.
      ``ngram`` is not used.
    - postcode: the n-grams of the canonical postcode, plus the outward code as one token.
    - sex, NHS number, UPRN and any other type: the whole value as one token.

    Each token is prefixed with ``"<field name>:"``. An empty value has no tokens.

    Parameters
    ----------
    value
        A value as the standardiser of ``encoding.type`` returns it.
    encoding
        The field's encoding.

    Returns
    -------
    list of str

    Raises
    ------
    InvalidValue
        When a date is not in ``YYYY-MM-DD`` form.

    Examples
    --------
    >>> from oda_fed.encoding.fields import FieldEncoding
    >>> tokens("1980-04-03", FieldEncoding("dob", "date"))
    ['dob:y=1980', 'dob:d=03', 'dob:m=04', 'dob:dm=03/04']
    >>> tokens("LS6 2AB", FieldEncoding("postcode", "postcode", ngram=3))[-2:]
    ['postcode:AB_', 'postcode:out=LS6']
    """
    if not value:
        return []
    parts = _TOKENIZERS.get(encoding.type, _whole_value)(value, encoding)
    prefix = f"{encoding.name}:"
    return [prefix + part for part in parts]


def token_lists(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    """Return the tokens of many values: for each value, the tokens :func:`tokens` gives.

    Order within a value and repeats may differ from :func:`tokens` (they set the same bits);
    the set of tokens of each value is the same.

    Parameters
    ----------
    values
        Standardised values, each distinct value once (the work is per value).
    encoding
        The field's encoding.

    Returns
    -------
    TokenLists

    Raises
    ------
    InvalidValue
        When a date is not in ``YYYY-MM-DD`` form.

    Examples
    --------
    >>> from oda_fed.encoding.fields import FieldEncoding
    >>> token_lists(["jo", ""], FieldEncoding("f", "name")).lists()
    [['f:_j', 'f:jo', 'f:o_'], []]
    """
    batch = _BATCH_TOKENIZERS.get(encoding.type)
    if batch is None:
        return TokenLists.from_lists([tokens(value, encoding) for value in values])
    nonempty = [i for i, value in enumerate(values) if value]
    if len(nonempty) == len(values):
        return batch(values, encoding)
    # Empty values have no tokens; the batch tokenizers only see the others.
    found = batch([values[i] for i in nonempty], encoding)
    counts = np.zeros(len(values), dtype=np.int64)
    counts[nonempty] = found.counts
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return TokenLists(offsets, found.index, found.keys)
