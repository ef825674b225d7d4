"""Tokens of a batch of values, and n-grams cut from many values at once.

:class:`TokenLists` holds the tokens of a batch of values in compressed sparse rows.
:func:`ngram_lists` cuts every value of a batch into n-grams at once: the values become one array
of code points (:class:`~oda_fed.encoding.codepoints.CodePoints`), a kernel
(:func:`~oda_fed.encoding.kernels.ngram_keys`) turns each n-gram into an integer key, the keys are
numbered, and only the distinct n-grams are spelled as strings. n-grams repeat far more than
values do (an address is new, its letter pairs are not), which is what makes this fast.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from oda_fed.encoding import kernels
from oda_fed.encoding.codepoints import CodePoints
from oda_fed.encoding.distinct import factorize

# Code points need 21 bits, so an n-gram packs into one uint64 (a fast hash key) when
# 21 * n bits, plus the position bits of a positional n-gram, fit.
_CODE_BITS = 21
# n-gram keys are numbered with a table when there are at most this many possible keys (or at
# most twice as many as n-grams), and never more than the larger bound.
_DENSE_KEYS = 1 << 16
_MAX_DENSE_KEYS = 1 << 24


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
        import pandas as pd  # keys of any hashable type; not on clkhash's path

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


def ngram_lists(
    values: Sequence[str],
    n: int,
    *,
    pad: str,
    pad_width: int,
    positional: bool = False,
    prefix: str = "",
    points: CodePoints | None = None,
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
    points
        The code points of ``values``, when the caller has them already.

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
    points = CodePoints.of(values) if points is None else points
    lens = points.lengths
    padded = lens + 2 * pad_width
    short = (lens > 0) & (padded < n)
    grams = np.where(lens > 0, np.maximum(padded - n + 1, 1), 0)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(grams, out=offsets[1:])
    m = int(offsets[-1])

    sliced = np.ones(m, dtype=bool)
    sliced[offsets[:-1][short]] = False
    regular = np.where(short, 0, grams)
    most = int(regular.max(initial=0))
    found = _keyed_grams(
        points,
        regular,
        n,
        pad=ord(pad),
        pad_width=pad_width,
        most=most,
        positional=positional,
        prefix=prefix,
    )
    if found is None:
        found = _sliced_grams(
            values,
            n,
            pad=pad,
            pad_width=pad_width,
            positional=positional,
            prefix=prefix,
            lens=lens,
            offsets=offsets,
            short=short,
            keep=sliced,
        )
    shorts = np.flatnonzero(short)
    if not shorts.size:
        return TokenLists(offsets, *found)
    # Padded values shorter than n are each one token, the padded value (no positional form is
    # needed: clkhash's padding never makes a value shorter than n).
    index = np.empty(m, dtype=np.int64)
    index[sliced], keys = found
    whole = [f"{prefix}{pad * pad_width}{values[v]}{pad * pad_width}" for v in shorts.tolist()]
    ids = {key: len(keys) + j for j, key in enumerate(dict.fromkeys(whole))}
    keys.extend(ids)
    index[offsets[shorts]] = [ids[key] for key in whole]
    return TokenLists(offsets, index, keys)


def _keyed_grams(
    points: CodePoints,
    grams: np.ndarray,
    n: int,
    *,
    pad: int,
    pad_width: int,
    most: int,
    positional: bool,
    prefix: str,
) -> tuple[np.ndarray, list[Hashable]] | None:
    """Number the first ``grams[v]`` n-grams of each value by integer keys and spell each
    distinct one once; ``None`` when the keys would not fit 64 bits.

    When the values use few distinct code points, each is a digit of a small alphabet and the
    keys are dense enough to number with a table (no hashing or sorting); otherwise keys pack
    21 bits per code point and are numbered by hashing.
    """
    seen = np.zeros(max(int(points.data.max(initial=0)), pad) + 1, dtype=bool)
    seen[points.data] = True
    seen[pad] = True
    alphabet = np.flatnonzero(seen)
    letters = len(alphabet)
    spots = max(most, 1) if positional else 1
    counts = np.zeros(len(grams) + 1, dtype=np.int64)
    np.cumsum(grams, out=counts[1:])
    keys = np.empty(int(counts[-1]), dtype=np.uint64)
    dense = letters**n * spots
    if dense <= max(_DENSE_KEYS, 2 * len(keys)) and dense <= _MAX_DENSE_KEYS:
        lut = np.zeros(len(seen), dtype=np.uint32)
        lut[alphabet] = np.arange(letters, dtype=np.uint32)
        unit = letters**n if positional else 0
        kernels.ngram_keys(
            points.data,
            points.offsets,
            counts,
            n,
            pad,
            pad_width,
            lut,
            np.uint64(letters),
            np.uint64(unit),
            keys,
        )
        # Dense keys are below 2**24, so they index as int64 (which numpy indexes fastest).
        slots = keys.view(np.int64)
        present = np.zeros(dense, dtype=bool)
        present[slots] = True
        distinct = np.flatnonzero(present).astype(np.uint64)
        rank = np.cumsum(present, dtype=np.int64) - 1
        index = rank[slots]
        radix = letters
    else:
        position_bits = 64 - _CODE_BITS * n
        # Positions go above the code points, so they must fit the bits left.
        if position_bits < 0 or positional and (1 << position_bits) < most:
            return None
        unit = 1 << (_CODE_BITS * n) if positional else 0
        kernels.ngram_keys(
            points.data,
            points.offsets,
            counts,
            n,
            pad,
            pad_width,
            np.zeros(0, dtype=np.uint32),
            np.uint64(1 << _CODE_BITS),
            np.uint64(unit),
            keys,
        )
        if not len(keys):
            return np.zeros(0, dtype=np.int64), []
        index, distinct = factorize(keys)
        distinct = np.asarray(distinct, dtype=np.uint64)
        radix = 1 << _CODE_BITS
        alphabet = None
    powers = np.array([radix ** (n - 1 - t) for t in range(n)], dtype=np.uint64)
    digits = (distinct[:, None] // powers[None, :]) % np.uint64(radix)
    grams_cps = digits.astype(np.uint32) if alphabet is None else alphabet[digits].astype(np.uint32)
    positions = distinct // np.uint64(radix**n) if positional else None
    return index, _spelled_keys(grams_cps, positions, prefix=prefix)


def _sliced_grams(
    values: Sequence[str],
    n: int,
    *,
    pad: str,
    pad_width: int,
    positional: bool,
    prefix: str,
    lens: np.ndarray,
    offsets: np.ndarray,
    short: np.ndarray,
    keep: np.ndarray,
) -> tuple[np.ndarray, list[Hashable]]:
    """The general path of :func:`ngram_lists`, for n-grams too wide to pack in 64 bits: each
    n-gram's code points are a row of a matrix, sliced from fixed-width strings. Only the slots
    ``keep`` (not those of values shorter than n) are numbered."""
    m = int(offsets[-1])
    cps = np.full((m, n), ord(pad), dtype=np.uint32)
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
    return _distinct_grams(cps[keep], starts[keep], n, positional=positional, prefix=prefix)


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
    """Number the distinct rows of n-gram code points (with position, if positional) and spell
    each once."""
    if len(cps) == 0:
        return np.zeros(0, dtype=np.int64), []
    table = np.column_stack([cps, starts.astype(np.uint32)]) if positional else cps
    rows, index = np.unique(table, axis=0, return_inverse=True)
    positions = rows[:, n] if positional else None
    keys = _spelled_keys(np.ascontiguousarray(rows[:, :n]), positions, prefix=prefix)
    return np.asarray(index, dtype=np.int64).reshape(-1), keys


def _spelled_keys(
    grams: np.ndarray, positions: np.ndarray | None, *, prefix: str
) -> list[Hashable]:
    """Token strings of n-grams (rows of code points), with ``"{position + 1} "`` when given."""
    spelled = _spell(grams)
    if positions is not None:
        return [f"{prefix}{p + 1} {g}" for p, g in zip(positions.tolist(), spelled, strict=True)]
    return [prefix + g for g in spelled] if prefix else list(spelled)


def _spell(grams: np.ndarray) -> list[str]:
    """The strings of rows of code points."""
    n = grams.shape[1]
    # numpy's fixed-width strings drop trailing NULs, so rows holding a NUL are spelled by hand.
    spelled = np.ascontiguousarray(grams).view(f"<U{n}").reshape(-1).tolist()
    for i in np.flatnonzero((grams == 0).any(axis=1)).tolist():
        spelled[i] = "".join(map(chr, grams[i].tolist()))
    return spelled
