"""The engine shared by every CLK encoder: cached tokens and the kernels that set their bits.

An encoder (:class:`oda_fed.encoding.clk.ClkEncoder` for the project's own encoding,
:func:`oda_fed.encoding.clkhash.encode_clkhash` for clkhash schemas) keeps per field a
:class:`ValueCache` over a :class:`TokenCache`. For each chunk of rows it factorises every column
into row -> distinct value codes, asks the value cache for a :class:`FieldBatch` (the token
occurrences of each distinct value), and :func:`encode_batches` returns the chunk's CLKs.

Why it is fast
--------------
Values repeat across a population (first names, dates, postcodes), and tokens repeat far more
even where values do not (the n-grams of addresses and ids), so work is done once per distinct
thing. Each chunk's distinct values are checked and tokenised together, as arrays of code points
(:mod:`oda_fed.encoding.codepoints`): n-grams become integer keys in an array kernel, and only
distinct keys become token strings. Each distinct token is hashed once per encoder and its bit
positions kept (:class:`TokenCache`). Where a value needs Python code of its own (a date to
parse, say), the :class:`ValueCache` also keeps each value's tokens across chunks; otherwise
tokenising a chunk's values again costs less than looking them up. Bits are set by the kernels
of :mod:`oda_fed.encoding.kernels` (NumPy, or Numba's for long runs) over rows on every core.
For a field whose values repeat, each distinct value's bits are first collected into a
one-value mask and each row ORs its masks word by word
(:func:`~oda_fed.encoding.kernels.or_masks`); for a field whose values hardly repeat (more
distinct values than half its rows), or whose masks would take too much memory, rows set
their bits directly. Both give the same bits.

Memory stays bounded by the chunk (its codes, token occurrences and masks) plus the two caches,
which are emptied between chunks once they pass ``max_values`` values or ``max_tokens`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from oda_fed.encoding import kernels
from oda_fed.encoding.distinct import factorize
from oda_fed.encoding.token_batches import TokenLists

Hasher = Callable[[list[Hashable], np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``(keys, need) -> (positions, lengths)``: the bit positions of new tokens.

``positions`` is ``uint32``, the positions of every key one after another; ``lengths[i]`` is how
many belong to key ``i`` and is at least ``need[i]``. The first ``k`` positions of a key must not
depend on ``need`` (an occurrence that sets ``k`` positions uses the first ``k``).
"""

# Masks are used while they cost less than setting positions row by row, and while they take at
# most this much memory per chunk.
_MASK_BYTES = 256 << 20
_INITIAL = 1024

Tokenise = Callable[[list[str]], tuple[TokenLists, np.ndarray, dict[int, str]]]
"""``values -> (tokens, ks, problems)``: the tokens of new distinct values.

``ks`` (``int64``, one per token occurrence) is how many positions each occurrence sets.
``problems`` maps the index of a value that cannot be encoded to what is wrong with it; such a
value must have no tokens, and is not cached.
"""


class TokenCache:
    """Bit positions of the distinct tokens of one field, hashing each token once.

    Parameters
    ----------
    hasher
        Computes the positions of tokens not seen before (see :data:`Hasher`).

    Examples
    --------
    >>> def hasher(keys, need):
    ...     lengths = np.maximum(need, 1)
    ...     return np.arange(lengths.sum(), dtype=np.uint32), lengths
    >>> cache = TokenCache(hasher)
    >>> cache.ids(["a", "b", "a"], np.array([1, 2, 1])).tolist()
    [0, 1, 0]
    >>> len(cache), cache.lengths.tolist()
    (2, [1, 2])
    """

    def __init__(self, hasher: Hasher) -> None:
        self._hasher = hasher
        self.clear()

    def clear(self) -> None:
        """Forget every token."""
        self._ids: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._positions = np.zeros(_INITIAL, dtype=np.uint32)
        self._used = 0
        self._offsets = np.zeros(_INITIAL, dtype=np.int64)
        self._lengths = np.zeros(_INITIAL, dtype=np.int64)
        # One more than the largest position cached, so callers can check it fits their CLKs.
        self.position_bound = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def positions(self) -> np.ndarray:
        """``uint32``: every cached position; token ``t``'s start at ``offsets[t]``."""
        return self._positions[: self._used]

    @property
    def offsets(self) -> np.ndarray:
        """``int64[len(self)]``: where each token's positions start."""
        return self._offsets[: len(self)]

    @property
    def lengths(self) -> np.ndarray:
        """``int64[len(self)]``: how many positions of each token are cached."""
        return self._lengths[: len(self)]

    def keys(self, rows: np.ndarray) -> list[Hashable]:
        """The tokens of cache rows."""
        return [self._keys[row] for row in rows.tolist()]

    def ids(self, keys: Sequence[Hashable], need: np.ndarray) -> np.ndarray:
        """Return the cache row of each key, hashing new keys and extending short ones.

        Parameters
        ----------
        keys
            Tokens; repeats get the same row.
        need
            ``int64[len(keys)]``: positions each key must have cached.

        Returns
        -------
        numpy.ndarray
            ``int64[len(keys)]``.
        """
        get = self._ids.get
        found = np.fromiter((get(key, -1) for key in keys), dtype=np.int64, count=len(keys))
        fresh = np.flatnonzero(found < 0)
        if fresh.size:
            start = len(self._keys)
            for i in fresh.tolist():
                key = keys[i]
                row = self._ids.get(key)
                if row is None:
                    row = self._ids[key] = len(self._keys)
                    self._keys.append(key)
                found[i] = row
            fresh_need = np.zeros(len(self._keys) - start, dtype=np.int64)
            np.maximum.at(fresh_need, found[fresh] - start, need[fresh])
            self._store(np.arange(start, len(self._keys)), fresh_need)
        short = need > self._lengths[found]
        if short.any():
            # A longer run of positions is hashed again; the first ones do not change.
            rows, inverse = np.unique(found[short], return_inverse=True)
            more = np.zeros(len(rows), dtype=np.int64)
            np.maximum.at(more, inverse, need[short])
            self._store(rows, more)
        return found

    def _store(self, rows: np.ndarray, need: np.ndarray) -> None:
        positions, lengths = self._hasher(self.keys(rows), need)
        lengths = np.asarray(lengths, dtype=np.int64)
        top = int(rows.max()) + 1 if rows.size else 0
        if top > len(self._offsets):
            size = max(top, 2 * len(self._offsets))
            self._offsets = _grown(self._offsets, size)
            self._lengths = _grown(self._lengths, size)
        end = self._used + len(positions)
        if end > len(self._positions):
            self._positions = _grown(self._positions, max(end, 2 * len(self._positions)))
        self._positions[self._used : end] = positions
        if len(positions):
            self.position_bound = max(self.position_bound, int(positions.max()) + 1)
        starts = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        self._offsets[rows] = self._used + starts
        self._lengths[rows] = lengths
        self._used = end


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=array.dtype)
    out[: len(array)] = array
    return out


@dataclass(frozen=True)
class FieldBatch:
    """One field of one chunk of rows, ready for :func:`encode_batches`.

    Parameters
    ----------
    codes
        ``int64[n]``: each row's distinct value; negative for a row this field sets no bits in.
    offsets
        ``int64[u + 1]``: value ``v``'s token occurrences are ``offsets[v]:offsets[v + 1]``.
    tokens
        ``int64[m]``: the cache row of each token occurrence.
    ks
        ``int64[m]``: positions each token occurrence sets.
    cache
        The field's token cache, which holds the positions.
    """

    codes: np.ndarray
    offsets: np.ndarray
    tokens: np.ndarray
    ks: np.ndarray
    cache: TokenCache

    @property
    def values(self) -> int:
        """Number of distinct values."""
        return len(self.offsets) - 1


class ValueCache:
    """Distinct value -> its token occurrences, so that each value is tokenised once per encoder.

    Parameters
    ----------
    cache
        The field's token cache.
    tokenise
        Tokenises values not seen before (see :data:`Tokenise`).
    max_values, max_tokens
        When this cache holds more values, or the token cache more tokens, both are emptied
        before the next chunk, so that a field of unique values (an id) cannot grow them
        without bound.
    remember
        Whether to keep values across chunks. When tokenising is vectorised, tokenising a
        chunk's values again costs less than looking each one up, so only tokens are kept.

    Examples
    --------
    >>> from oda_fed.encoding.token_batches import TokenLists
    >>> cache = TokenCache(lambda keys, need: (np.zeros(int(need.sum()), np.uint32), need))
    >>> def tokenise(values):
    ...     found = TokenLists.from_lists([list(value) for value in values])
    ...     return found, np.ones(len(found.index), dtype=np.int64), {}
    >>> batch, problems = ValueCache(cache, tokenise).batch(np.array([0, 1, 0]), ["ab", "b"])
    >>> batch.offsets.tolist(), batch.tokens.tolist()
    ([0, 2, 3], [0, 1, 1])
    """

    def __init__(
        self,
        cache: TokenCache,
        tokenise: Tokenise,
        *,
        max_values: int = 1_000_000,
        max_tokens: int = 2_000_000,
        remember: bool = True,
    ) -> None:
        self.cache = cache
        self._tokenise = tokenise
        self._remember = remember
        self._max_values = max_values
        self._max_tokens = max_tokens
        self.clear()

    def clear(self) -> None:
        """Forget every value and token."""
        self.cache.clear()
        self._ids: dict[str, int] = {}
        self._offsets = np.zeros(_INITIAL, dtype=np.int64)
        self._lengths = np.zeros(_INITIAL, dtype=np.int64)
        self._tokens = np.zeros(_INITIAL, dtype=np.int64)
        self._ks = np.zeros(_INITIAL, dtype=np.int64)
        self._used = 0

    def __len__(self) -> int:
        return len(self._ids)

    def batch(self, codes: np.ndarray, values: Sequence[str]) -> tuple[FieldBatch, dict[int, str]]:
        """The field batch of a chunk whose rows have the distinct ``values`` by ``codes``.

        Returns the batch and the problems of values that cannot be encoded (index into
        ``values`` -> what is wrong); those values set no bits.
        """
        if len(self) > self._max_values or len(self.cache) > self._max_tokens:
            self.clear()
        if not self._remember:
            found, ks, problems = self._tokenise(values)
            tokens = self._token_rows(found, ks)
            return FieldBatch(codes, found.offsets, tokens, ks, self.cache), problems
        get = self._ids.get
        ids = np.fromiter((get(value, -1) for value in values), dtype=np.int64, count=len(values))
        problems: dict[int, str] = {}
        fresh = np.flatnonzero(ids < 0)
        if fresh.size:
            ids[fresh], found = self._add([values[i] for i in fresh.tolist()])
            problems = {int(fresh[i]): problem for i, problem in found.items()}
        lengths = self._lengths[ids]
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        source = np.repeat(self._offsets[ids] - offsets[:-1], lengths) + np.arange(
            offsets[-1], dtype=np.int64
        )
        batch = FieldBatch(codes, offsets, self._tokens[source], self._ks[source], self.cache)
        return batch, problems

    def _add(self, values: list[str]) -> tuple[np.ndarray, dict[int, str]]:
        """Tokenise and cache new values; return their ids (a value with a problem gets the
        id of an empty token list, and is not cached)."""
        found, ks, problems = self._tokenise(values)
        rows = self._token_rows(found, ks)
        counts = found.counts
        first = len(self._ids)
        top = first + len(values)
        ids = np.arange(first, top, dtype=np.int64)
        # Problem values get slots too (never looked up again), which keeps the arrays simple.
        self._ids.update(zip(values, range(first, top), strict=True))
        for i in problems:
            self._ids.pop(values[i], None)
        if top > len(self._offsets):
            size = max(top, 2 * len(self._offsets))
            self._offsets = _grown(self._offsets, size)
            self._lengths = _grown(self._lengths, size)
        end = self._used + len(rows)
        if end > len(self._tokens):
            size = max(end, 2 * len(self._tokens))
            self._tokens = _grown(self._tokens, size)
            self._ks = _grown(self._ks, size)
        self._tokens[self._used : end] = rows
        self._ks[self._used : end] = ks
        self._offsets[first:top] = self._used + found.offsets[:-1]
        self._lengths[first:top] = counts
        self._used = end
        return ids, problems

    def _token_rows(self, found: TokenLists, ks: np.ndarray) -> np.ndarray:
        """The token cache row of each token occurrence, hashing tokens not seen before."""
        need = np.zeros(len(found.keys), dtype=np.int64)
        # Each distinct token needs as many positions as its most demanding occurrence.
        np.maximum.at(need, found.index, ks)
        return self.cache.ids(found.keys, need)[found.index]


def encode_batches(
    batches: Sequence[FieldBatch], *, rows: int, words: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Return the CLKs of a chunk: the OR over fields of the bits of each row's value.

    Parameters
    ----------
    batches
        One per field, all with ``rows`` codes.
    rows
        Number of rows in the chunk.
    words
        ``uint64`` words per CLK; every cached position must be below ``64 * words``.
    out
        Optional all-zero ``uint64[rows, words]`` C-contiguous array to write into.

    Returns
    -------
    numpy.ndarray
        ``uint64[rows, words]``, C-contiguous (``out`` when given).

    Examples
    --------
    >>> cache = TokenCache(lambda keys, need: (np.array([1, 3], dtype=np.uint32), np.array([2])))
    >>> row = cache.ids(["t"], np.array([2]))
    >>> batch = FieldBatch(np.array([0, -1, 0]), np.array([0, 1]), row, np.array([2]), cache)
    >>> encode_batches([batch], rows=3, words=1)[:, 0].tolist()
    [10, 0, 10]
    """
    if out is None:
        out = np.zeros((rows, words), dtype=np.uint64)
    if out.shape != (rows, words) or out.dtype != np.uint64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint64 of shape {(rows, words)}")
    for batch in batches:
        # The kernels do not check bounds: a position past the CLK would write past its row.
        if batch.cache.position_bound > 64 * words or len(batch.codes) != rows:
            raise ValueError(f"a field batch does not fit {rows} CLKs of {64 * words} bits")
    # Each distinct value's bits are set once, into a mask, and each row ORs its values' masks
    # word by word. A field whose values hardly repeat (an id) sets its rows' bits direct, as
    # does one whose masks alone would pass _MASK_BYTES; the rest go in groups that fit it.
    group: list[FieldBatch] = []
    for batch in batches:
        if 2 * batch.values > rows or batch.values * words * 8 > _MASK_BYTES:
            _set_bits(batch, value_of_row=batch.codes, out=out)
            continue
        if (sum(b.values for b in group) + batch.values) * words * 8 > _MASK_BYTES:
            _or_value_masks(group, rows=rows, words=words, out=out)
            group = []
        group.append(batch)
    _or_value_masks(group, rows=rows, words=words, out=out)
    return out


def _or_value_masks(batches: list[FieldBatch], *, rows: int, words: int, out: np.ndarray) -> None:
    if not batches:
        return
    masks = np.zeros((sum(batch.values for batch in batches), words), dtype=np.uint64)
    codes = np.empty((rows, len(batches)), dtype=np.int64)
    first = 0
    for f, batch in enumerate(batches):
        last = first + batch.values
        _set_bits(
            batch, value_of_row=np.arange(batch.values, dtype=np.int64), out=masks[first:last]
        )
        codes[:, f] = np.where(batch.codes >= 0, batch.codes + first, -1)
        first = last
    kernels.or_masks(codes, masks, out)


def _set_bits(batch: FieldBatch, *, value_of_row: np.ndarray, out: np.ndarray) -> None:
    kernels.set_token_bits(
        np.ascontiguousarray(value_of_row, dtype=np.int64),
        batch.offsets,
        np.ascontiguousarray(batch.tokens, dtype=np.int64),
        np.ascontiguousarray(batch.ks, dtype=np.int64),
        batch.cache.offsets,
        batch.cache.positions,
        out,
    )


def tokenise_in_blocks(
    values: Sequence[str], tokenise: Callable[[Sequence[str]], TokenLists], *, block: int
) -> TokenLists:
    """``tokenise`` over ``values`` in blocks of ``block`` values, to bound its temporaries."""
    if len(values) <= block:
        return tokenise(values)
    return TokenLists.concat(
        [tokenise(values[lo : lo + block]) for lo in range(0, len(values), block)]
    )


def salted(batch: FieldBatch, *, salt_codes: np.ndarray, salt_values: Sequence[str]) -> FieldBatch:
    """Re-key a field batch by (salt, value), so that each salt hashes its own tokens.

    Parameters
    ----------
    batch
        The unsalted batch.
    salt_codes
        ``int64[n]``: each row's salt in ``salt_values``; negative for an unsalted row.
    salt_values
        The distinct salts.

    Returns
    -------
    FieldBatch
        Its values are the distinct (salt, value) pairs of the rows. An unsalted pair keeps its
        tokens; a salted pair's tokens are the cache's ``(salt, token)`` keys, so the cache's
        hasher must accept both.
    """
    u = max(batch.values, 1)
    codes = np.full(len(batch.codes), -1, dtype=np.int64)
    present = batch.codes >= 0
    pair_codes, pairs = factorize((salt_codes[present] + 1) * u + batch.codes[present])
    codes[present] = pair_codes
    pairs = np.asarray(pairs, dtype=np.int64)
    pair_value, pair_salt = pairs % u, pairs // u - 1

    counts = np.diff(batch.offsets)[pair_value]
    offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    source = np.repeat(batch.offsets[pair_value] - offsets[:-1], counts) + np.arange(
        offsets[-1], dtype=np.int64
    )
    occ_salt = np.repeat(pair_salt, counts)
    occ_token = batch.tokens[source]
    ks = batch.ks[source]
    tokens = occ_token.copy()
    salty = np.flatnonzero(occ_salt >= 0)
    if salty.size:
        t = max(len(batch.cache), 1)
        index, distinct = factorize(occ_salt[salty] * t + occ_token[salty])
        distinct = np.asarray(distinct, dtype=np.int64)
        names = batch.cache.keys(distinct % t)
        keys = [
            (salt_values[s], name) for s, name in zip((distinct // t).tolist(), names, strict=True)
        ]
        need = np.zeros(len(keys), dtype=np.int64)
        np.maximum.at(need, index, ks[salty])
        tokens[salty] = batch.cache.ids(keys, need)[index]
    return FieldBatch(codes, offsets, tokens, ks, batch.cache)
