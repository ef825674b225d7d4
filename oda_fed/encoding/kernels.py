"""Array kernels of the CLK encoder: read values as code points, cut them into n-gram keys, set
the cached bit positions of tokens into CLK rows, and write CLKs as clkhash's base64.

Two implementations share each kernel's name, arguments and effect:

- **NumPy** (here, the default): whole-array operations over blocks of rows, spread over the
  cores by threads (NumPy releases the GIL inside each operation; ``NUMBA_NUM_THREADS``, when
  set, bounds these threads as it does Numba's). Nothing to compile, so a short run, such as
  ``oda-fed encode`` on a few hundred thousand rows, starts at once.
- **Numba** (:mod:`oda_fed.encoding.jit_kernels`): loops compiled to machine code, 1.5 to 2.5
  times as fast, but importing Numba and loading the compiled code costs a process about 0.4 s
  before its first row, more than hashing 300,000 records takes. :func:`use_jit` switches a
  process to them; :func:`use_jit_for` does so for a run of at least :data:`JIT_ROWS` rows,
  which the node's file encoders call with the rows they count for their progress bar (in
  ``oda-fed encode`` and the node's rounds).

Both give the same bits: every kernel has a plain-Python twin of the same name in
:mod:`oda_fed.encoding.reference`, and the tests check both implementations against it. The
orchestration (token caches, which kernel runs when) is :mod:`oda_fed.encoding.engine`.

The arrays describe a batch of distinct values and their tokens in compressed sparse row form:

- ``occ_offsets`` (``int64[u + 1]``): value ``v`` has token occurrences
  ``occ_offsets[v]:occ_offsets[v + 1]``;
- ``occ_tokens`` (``int64[m]``): the token (a row of the token cache) of each occurrence;
- ``occ_ks`` (``int64[m]``): how many bit positions that occurrence sets (the first ``k`` of
  its token's cached positions, so one cached row serves every ``k``);
- ``tok_offsets`` (``int64[t]``) and ``positions`` (``uint32[...]``): token ``t``'s positions
  start at ``positions[tok_offsets[t]]``; there are at least as many as any occurrence uses.

Values are code points in the form of :class:`oda_fed.encoding.codepoints.CodePoints`: ``data``
(``uint32``) with ``offsets`` (``int64[u + 1]``).

CLKs and masks are ``uint64[:, ::1]``: bit ``b`` lives in word ``b // 64`` at position
``b % 64``, least significant bit first.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np

JIT_ROWS = 1_000_000
"""Rows from which a run pays for Numba's start-up (about 0.4 s) with faster kernels."""

# Rows of work per block: a block's temporaries (a bit matrix, gathered masks) stay about this
# size, within the cores' caches, and the blocks are shared among threads.
_BLOCK_BYTES = 1 << 20


def _threads() -> int:
    """Threads for the NumPy kernels: as many as Numba's (``NUMBA_NUM_THREADS``, so that one
    setting bounds both), else one per core this process may run on."""
    setting = os.environ.get("NUMBA_NUM_THREADS", "")
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_WORKERS = _threads()
_LEAST_ROWS = 512
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_JIT: ModuleType | None = None

_Kernel = TypeVar("_Kernel", bound=Callable[..., None])


def use_jit(on: bool = True) -> None:
    """Run this process's kernels compiled by Numba from now on (see the module's docstring),
    or, with ``on=False``, the NumPy kernels again.

    Imports Numba and :mod:`oda_fed.encoding.jit_kernels`; each kernel's first call then loads
    its cached machine code (compiling it once per installation).
    """
    global _JIT
    if not on:
        _JIT = None
    elif _JIT is None:
        from oda_fed.encoding import jit_kernels  # imports Numba through import_numba

        _JIT = jit_kernels


def use_jit_for(rows: int) -> bool:
    """Switch to the Numba kernels (:func:`use_jit`) for a run of at least :data:`JIT_ROWS`
    rows; return whether the process uses them."""
    if rows >= JIT_ROWS:
        use_jit()
    return _JIT is not None


def import_numba() -> None:
    """Import Numba without two optional packages it loads for features oda-fed never uses.

    When they are installed (Dask needs PyYAML), Numba imports PyYAML to read a
    ``.numba_config.yaml`` and builds a cffi ``FFI`` for cffi functions in kernels, which loads
    cffi's C parser: about 0.05 s. Both are hidden from Numba only while it loads them, so
    later imports of either work. A Numba config file in the working directory is still read,
    and a process that has loaded Numba or either package already is left as it is.
    """
    if "numba" in sys.modules:
        return
    optional = {"cffi"} if Path(".numba_config.yaml").exists() else {"yaml", "cffi"}
    hidden = [name for name in optional if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import numba.core.typing.cffi_utils  # noqa: F401  (its FFI is None: no cffi kernels)
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _or_jit(kernel: _Kernel) -> _Kernel:
    """The NumPy ``kernel``, or its Numba twin once the process uses those."""
    name = kernel.__name__

    @functools.wraps(kernel)
    def chosen(*args: object) -> None:
        if _JIT is not None:
            return getattr(_JIT, name)(*args)
        return kernel(*args)

    return chosen  # type: ignore[return-value]


def _in_blocks(rows: int, block: int, work: Callable[[list[tuple[int, int]]], None]) -> None:
    """Call ``work(spans)`` on the cores, each call with its share of ``[lo, hi)`` row spans of
    at most ``block`` rows (fewer, so that every core has a share, down to ``_LEAST_ROWS``), so
    that a call can reuse its own buffers across its spans. This thread takes a share too."""
    workers = _WORKERS or 1
    block = max(1, min(block, max(_LEAST_ROWS, -(-rows // workers))))
    spans = [(lo, min(lo + block, rows)) for lo in range(0, rows, block)]
    workers = min(workers, len(spans))
    if workers <= 1:
        work(spans)
        return
    pool = _pool()
    shares = [pool.submit(work, spans[w::workers]) for w in range(1, workers)]
    work(spans[0::workers])
    for share in shares:
        share.result()


def _pool() -> ThreadPoolExecutor:
    """One pool of threads for every kernel call: starting threads per call costs more than a
    small call's work."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max((_WORKERS or 1) - 1, 1), "oda-fed-kernels")
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, so start a new pool."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _runs(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, as ``int64``."""
    ends = np.cumsum(counts, dtype=np.int64)
    total = int(ends[-1]) if len(ends) else 0
    return np.repeat(starts.astype(np.int64) - (ends - counts), counts) + np.arange(
        total, dtype=np.int64
    )


def _value_of_point(offsets: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The value that holds each of ``points`` (indexes into the code points)."""
    return np.searchsorted(offsets, points, side="right") - 1


@_or_jit
def set_token_bits(
    value_of_row: np.ndarray,
    occ_offsets: np.ndarray,
    occ_tokens: np.ndarray,
    occ_ks: np.ndarray,
    tok_offsets: np.ndarray,
    positions: np.ndarray,
    out: np.ndarray,
) -> None:
    """OR into each row ``r`` of ``out`` the bits of the tokens of value ``value_of_row[r]``.

    A negative value index sets nothing (a missing value). Each distinct (token, k) of the
    occurrences becomes a one-token mask, each value's mask is the OR of its occurrences'
    (gathers of whole words, not a write per bit), and each row ORs its value's mask.

    Examples
    --------
    >>> out = np.zeros((2, 1), dtype=np.uint64)
    >>> set_token_bits(
    ...     np.array([0, -1]), np.array([0, 1]), np.array([0]), np.array([2]),
    ...     np.array([0]), np.array([3, 5], dtype=np.uint32), out)
    >>> out[:, 0].tolist()
    [40, 0]
    """
    counts = np.diff(occ_offsets)
    values, words = len(counts), out.shape[1]
    if not len(occ_tokens) or not len(out):
        return
    radix = int(occ_ks.max()) + 1
    pair, kinds = _pairs(occ_tokens.astype(np.int64) * radix + occ_ks)
    one_token = _one_token_masks(kinds // radix, kinds % radix, tok_offsets, positions, words)
    # Column j of `slots` holds the j-th tokens' masks of the values that have one, the first
    # have[j] values in `order`: by decreasing number of tokens, unless all have as many.
    if counts.min() == counts.max() and occ_offsets[0] == 0 and len(pair) == counts.sum():
        order, widest = None, int(counts[0])
        have = np.full(widest, values, dtype=np.int64)
        slots = pair.reshape(values, widest).T
    else:
        order = np.argsort(counts.max() - counts, kind="stable")
        ranked = counts[order]
        widest = int(ranked[0])
        have = np.searchsorted(-ranked, -np.arange(widest), side="left")
        slots = np.empty((widest, values), dtype=np.int64)
        at = np.repeat(np.arange(values, dtype=np.int64), ranked)
        column = np.arange(len(at), dtype=np.int64) - np.repeat(np.cumsum(ranked) - ranked, ranked)
        slots.reshape(-1)[column * values + at] = pair[_runs(occ_offsets[order], ranked)]
    # Value v's mask goes straight into row v when the rows are the values in order (one mask
    # per distinct value, or a field of distinct values); otherwise into a row of its own.
    straight = order is None and np.array_equal(value_of_row, np.arange(values))
    masks = out if straight else np.zeros((values + 1, words), dtype=np.uint64)

    def work(spans: list[tuple[int, int]]) -> None:
        gathered = np.empty((_BLOCK_BYTES // (8 * words) + 1, words), dtype=np.uint64)
        for lo, hi in spans:
            for j in range(widest):
                top = min(hi, int(have[j]))
                if top <= lo:
                    break
                part = gathered[: top - lo]
                np.take(one_token, slots[j, lo:top], axis=0, out=part)
                masks[lo:top] |= part

    _in_blocks(values, _BLOCK_BYTES // (8 * words), work)
    if straight:
        return
    rank = np.arange(values + 1, dtype=np.int64)  # the last row, all zero: no value
    if order is not None:
        rank[order] = rank[:values].copy()
    _gather_or(rank[np.where(value_of_row < 0, values, value_of_row)].reshape(-1, 1), masks, out)


def _pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index, distinct)``: the distinct keys, ascending, and each key's place among them."""
    if len(keys) and int(keys.max()) < 1 << 22:
        # Small keys: numbered through a table, without sorting.
        present = np.zeros(int(keys.max()) + 1, dtype=np.bool_)
        present[keys] = True
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[keys], np.flatnonzero(present)
    distinct, index = np.unique(keys, return_inverse=True)
    return index.reshape(-1), distinct


def _one_token_masks(
    tokens: np.ndarray, ks: np.ndarray, tok_offsets: np.ndarray, positions: np.ndarray, words: int
) -> np.ndarray:
    """``uint64[len(tokens), words]``: row ``i`` has the first ``ks[i]`` positions of token
    ``tokens[i]`` set. A block of rows sets its positions in a matrix of one byte per bit,
    packed into words."""
    width = 64 * words
    masks = np.zeros((len(tokens), words), dtype=np.uint64)
    block = max(1, _BLOCK_BYTES // width)

    def work(spans: list[tuple[int, int]]) -> None:
        matrix = np.zeros(block * width, dtype=np.bool_)
        for lo, hi in spans:
            k = ks[lo:hi]
            bits = positions[_runs(tok_offsets[tokens[lo:hi]], k)].astype(np.int64)
            part = matrix[: (hi - lo) * width]
            part[np.repeat(np.arange(hi - lo, dtype=np.int64) * width, k) + bits] = True
            packed = np.packbits(part.reshape(hi - lo, width), axis=1, bitorder="little")
            masks[lo:hi] = packed.view("<u8")
            part[...] = False

    _in_blocks(len(tokens), block, work)
    return masks


@_or_jit
def or_masks(codes: np.ndarray, masks: np.ndarray, out: np.ndarray) -> None:
    """OR into each row ``r`` of ``out`` the rows ``masks[codes[r, f]]`` of every field ``f``.

    ``codes`` is ``int64[n, fields]``, a negative code skipped; ``masks`` and ``out`` have the
    same number of words.

    Examples
    --------
    >>> out = np.zeros((2, 1), dtype=np.uint64)
    >>> or_masks(np.array([[0, 1], [-1, 1]]), np.array([[1], [4]], dtype=np.uint64), out)
    >>> out[:, 0].tolist()
    [5, 4]
    """
    # A zero row last: a negative code, clamped to -1, reads it.
    table = np.zeros((len(masks) + 1, out.shape[1]), dtype=np.uint64)
    table[:-1] = masks
    _gather_or(np.maximum(codes, -1), table, out)


def _gather_or(codes: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """OR ``table[codes[r, f]]`` into row ``r`` of ``out`` for every ``f``; codes index
    ``table`` (negative ones from its end)."""
    words = out.shape[1]
    block = max(1, _BLOCK_BYTES // (8 * words))

    def work(spans: list[tuple[int, int]]) -> None:
        gathered = np.empty((block, words), dtype=np.uint64)
        for lo, hi in spans:
            part, rows = gathered[: hi - lo], out[lo:hi]
            for f in range(codes.shape[1]):
                np.take(table, codes[lo:hi, f], axis=0, out=part)
                rows |= part

    _in_blocks(len(out), block, work)


@_or_jit
def ngram_keys(
    data: np.ndarray,
    offsets: np.ndarray,
    gram_offsets: np.ndarray,
    n: int,
    pad: int,
    pad_width: int,
    lut: np.ndarray,
    base: int,
    position_unit: int,
    out: np.ndarray,
) -> None:
    """Write the key of every n-gram of every value into ``out``.

    Value ``v`` (code points ``data[offsets[v]:offsets[v + 1]]``, padded with ``pad_width``
    copies of the code point ``pad`` at each end) has its n-grams, in order, at
    ``out[gram_offsets[v]:gram_offsets[v + 1]]``: as many as the caller made room for, at most
    ``len(padded) - n + 1``. Each code point ``c`` is a digit ``lut[c]`` (``c`` itself when
    ``lut`` is empty); the key of the n-gram starting at ``i`` is its digits in base ``base``,
    first most significant, plus ``i * position_unit`` (0 for plain n-grams). The caller checks
    that keys fit 64 bits.

    Examples
    --------
    >>> out = np.zeros(3, dtype=np.uint64)
    >>> ngram_keys(np.array([97, 98], dtype=np.uint32), np.array([0, 2]), np.array([0, 3]),
    ...     2, 32, 1, np.zeros(0, dtype=np.uint32), 1000, 0, out)
    >>> out.tolist()
    [32097, 97098, 98032]
    """
    lengths = np.diff(offsets)
    grams = np.diff(gram_offsets)
    # Every value padded, one after another, as digits; then the key of the n-gram starting at
    # each place, of which the asked-for ones are picked.
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths + 2 * pad_width, out=starts[1:])
    places = int(starts[-1]) - n + 1
    if places <= 0 or not int(grams.sum()):
        return
    if pad_width:
        padded = np.full(int(starts[-1]), pad, dtype=np.uint32)
        padded[_runs(starts[:-1] + pad_width, lengths)] = data
    else:
        padded = data
    digits = (lut[padded] if len(lut) else padded).astype(np.uint64)
    wide = np.uint64(base)
    keys = digits[:places].copy()
    for t in range(1, n):
        keys *= wide
        keys += digits[t : places + t]
    slots = out[int(gram_offsets[0]) : int(gram_offsets[-1])]
    if (grams == lengths + 2 * pad_width - n + 1).all():
        # Every n-gram of every value: all places but the last n - 1 of each value, which run
        # into the next.
        keep = np.ones(places, dtype=np.bool_)
        for back in range(1, n):
            keep[starts[1:-1] - back] = False
        slots[...] = keys[keep]
    else:
        np.take(keys, _runs(starts[:-1], grams), out=slots)
    if position_unit:
        at = np.arange(len(slots), dtype=np.int64) - np.repeat(
            gram_offsets[:-1] - gram_offsets[0], grams
        )
        slots += at.astype(np.uint64) * np.uint64(position_unit)


@_or_jit
def all_allowed(
    data: np.ndarray, offsets: np.ndarray, allowed: np.ndarray, out: np.ndarray
) -> None:
    """Set ``out[v]`` to whether every code point ``c`` of value ``v`` has ``allowed[c]``
    (a code point past the end of ``allowed`` is not allowed; an empty value passes).

    Examples
    --------
    >>> out = np.zeros(2, dtype=np.bool_)
    >>> all_allowed(np.array([1, 5], dtype=np.uint32), np.array([0, 1, 2]),
    ...     np.array([False, True]), out)
    >>> out.tolist()
    [True, False]
    """
    table = np.zeros(len(allowed) + 1, dtype=np.bool_)  # the last entry: past the end
    table[:-1] = allowed
    refused = np.flatnonzero(~table[np.minimum(data, len(allowed))])
    out[:] = True
    out[_value_of_point(offsets, refused)] = False


@_or_jit
def plain_decimals(
    data: np.ndarray, offsets: np.ndarray, most_digits: int, plain: np.ndarray, numbers: np.ndarray
) -> None:
    """Find the values that are 1 to ``most_digits`` ASCII digits without a leading zero (``0``
    alone is one), setting ``plain[v]`` and, for those, ``numbers[v]`` to the number.

    Examples
    --------
    >>> plain, numbers = np.zeros(2, dtype=np.bool_), np.zeros(2, dtype=np.int64)
    >>> plain_decimals(np.array([52, 50, 48, 55], dtype=np.uint32), np.array([0, 2, 4]), 18,
    ...     plain, numbers)
    >>> plain.tolist(), numbers.tolist()
    ([True, False], [42, 0])
    """
    lengths = np.diff(offsets)
    digits = data.astype(np.int64) - 48
    ok = (lengths >= 1) & (lengths <= most_digits)
    ok[_value_of_point(offsets, np.flatnonzero((digits < 0) | (digits > 9)))] = False
    longer = np.flatnonzero(ok & (lengths > 1))
    ok[longer[data[offsets[longer]] == 48]] = False  # a leading zero
    plain[:] = ok
    numbers[:] = 0
    starts = offsets[:-1][ok]
    if not len(starts):
        return
    # Each digit times its power of ten, 0 outside plain values; summed from each plain value's
    # start to the next one's, which adds only the zeros between.
    owner = np.repeat(np.arange(len(lengths)), lengths)
    inside = ok[owner]
    place = np.where(inside, np.repeat(offsets[1:] - 1, lengths) - np.arange(len(data)), 0)
    powers = np.uint64(10) ** np.arange(max(most_digits, 1), dtype=np.uint64)
    terms = np.where(inside, digits.astype(np.uint64) * powers[place], np.uint64(0))
    numbers[ok] = np.add.reduceat(terms, starts).view(np.int64)


@_or_jit
def base64_rows(
    raw: np.ndarray,
    nbytes: int,
    first: int,
    alphabet: np.ndarray,
    reverse: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write CLK ``first + i`` into ``out[i]`` as clkhash's JSON writes it: ``"<base64>", ``.

    ``raw`` holds the CLKs' words as little-endian bytes (``uint8[n, 8 * words]``); a CLK's
    bytes in clkhash are its first ``nbytes``, each with its bit order reversed through
    ``reverse`` (``uint8[256]``). ``alphabet`` holds base64's 64 characters (``uint8``).
    ``out`` is ``uint8`` with ``4 * ceil(nbytes / 3) + 4`` columns.

    Three bytes are two 12-bit halves, each two characters. The halves are read from the bytes
    as they are, as 16-bit words three bytes apart, and a table of 2 * 4096 character pairs
    reverses the bits as it spells them.
    """
    raw = np.ascontiguousarray(raw)
    whole, rest = divmod(nbytes, 3)  # groups of three bytes; a last one or two are padded
    width = 4 * (whole + (rest > 0))
    table = _base64_pairs(alphabet, reverse)
    stride = raw.strides[0]
    block = max(1, _BLOCK_BYTES // width)

    def halves(lo: int, hi: int, count: int, into: np.ndarray) -> None:
        """The table rows of the 12-bit halves of ``count`` groups of rows ``lo:hi``."""
        at = (first + lo) * stride
        shape, strides = (hi - lo, count), (stride, 3)
        low = np.ndarray(shape, dtype="<u2", buffer=raw, offset=at, strides=strides)
        high = np.ndarray(shape, dtype="<u2", buffer=raw, offset=at + 1, strides=strides)
        np.bitwise_and(low, 0xFFF, out=into[:, :, 0])  # byte 1 and the low half of byte 2
        np.right_shift(high, 4, out=into[:, :, 1])  # the high half of byte 2 and byte 3
        into[:, :, 1] |= 4096

    def work(spans: list[tuple[int, int]]) -> None:
        units = np.empty((block, whole, 2), dtype=np.uint16)
        pairs = np.empty((block, 2 * whole), dtype=np.uint16)
        for lo, hi in spans:
            line = out[lo:hi]
            if whole:
                part = units[: hi - lo]
                halves(lo, hi, whole, part)
                np.take(table, part.reshape(hi - lo, -1), out=pairs[: hi - lo])
                line[:, 1 : 4 * whole + 1] = pairs[: hi - lo].view(np.uint8)
            if rest:  # a 16-bit read would run past the CLK: the last bytes, padded, apart
                tail = np.zeros((hi - lo, 3), dtype=np.uint16)
                tail[:, :rest] = raw[first + lo : first + hi, 3 * whole : nbytes]
                ends = np.stack(
                    [tail[:, 0] | (tail[:, 1] & 15) << 8, tail[:, 1] >> 4 | tail[:, 2] << 4 | 4096],
                    axis=1,
                )
                line[:, 4 * whole + 1 : width + 1] = table[ends].view(np.uint8)
                line[:, width] = 61  # =
                if rest == 1:
                    line[:, width - 1] = 61
            line[:, 0] = line[:, width + 1] = 34  # "
            line[:, width + 2] = 44  # ,
            line[:, width + 3] = 32  # space

    _in_blocks(len(out), block, work)


def _base64_pairs(alphabet: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """``uint16[8192]``: the two base64 characters (first in the low byte) of a 12-bit half.

    Row ``u < 4096`` is the first half of a group, ``u = b1 | (b2 & 15) << 8``; row
    ``4096 + u`` the second, ``u = b2 >> 4 | b3 << 4``, the bytes as stored, before ``reverse``.
    """
    u = np.arange(4096, dtype=np.uint16)
    turned = reverse.astype(np.uint16)
    nibble = turned[:16] >> 4  # a half-byte, bits reversed
    first = turned[u & 255] << 4 | nibble[u >> 8]
    second = nibble[u & 15] << 8 | turned[u >> 4]
    spelled = alphabet.astype(np.uint16)
    pairs = spelled[np.arange(4096) >> 6] | spelled[np.arange(4096) & 63] << 8
    return np.concatenate([pairs[first], pairs[second]])
