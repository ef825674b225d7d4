"""Numba kernels of the CLK encoder: read values as code points, cut them into n-gram keys, and
set the cached bit positions of tokens into CLK rows.

Only ``@njit`` functions over arrays live here, so that Numba's on-disk cache, which tracks this
file alone, is invalidated whenever a kernel changes. Every kernel has a plain-Python twin of the
same name in :mod:`oda_fed.encoding.reference`; the orchestration (token caches, which kernel
runs when) is :mod:`oda_fed.encoding.engine`.

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

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
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

    A negative value index sets nothing (a missing value). Each parallel iteration writes only
    its own row of ``out``, so no locks are needed.

    Examples
    --------
    >>> out = np.zeros((2, 1), dtype=np.uint64)
    >>> set_token_bits(
    ...     np.array([0, -1]), np.array([0, 1]), np.array([0]), np.array([2]),
    ...     np.array([0]), np.array([3, 5], dtype=np.uint32), out)
    >>> out[:, 0].tolist()
    [40, 0]
    """
    one = np.uint64(1)
    for r in prange(out.shape[0]):
        v = value_of_row[r]
        if v < 0:
            continue
        for o in range(occ_offsets[v], occ_offsets[v + 1]):
            base = tok_offsets[occ_tokens[o]]
            for j in range(occ_ks[o]):
                p = np.int64(positions[base + j])
                out[r, p >> 6] |= one << np.uint64(p & 63)


@njit(cache=True, parallel=True)
def or_masks(codes: np.ndarray, masks: np.ndarray, out: np.ndarray) -> None:
    """OR into each row ``r`` of ``out`` the rows ``masks[codes[r, f]]`` of every field ``f``.

    ``codes`` is ``int64[n, fields]``, a negative code skipped; ``masks`` and ``out`` have the
    same number of words. Each parallel iteration writes only its own row of ``out``.

    Examples
    --------
    >>> out = np.zeros((2, 1), dtype=np.uint64)
    >>> or_masks(np.array([[0, 1], [-1, 1]]), np.array([[1], [4]], dtype=np.uint64), out)
    >>> out[:, 0].tolist()
    [5, 4]
    """
    words = out.shape[1]
    for r in prange(out.shape[0]):
        for f in range(codes.shape[1]):
            c = codes[r, f]
            if c < 0:
                continue
            for w in range(words):
                out[r, w] |= masks[c, w]


@njit(cache=True, parallel=True)
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
    that keys fit 64 bits. Each parallel iteration writes only its own value's slots.

    Examples
    --------
    >>> out = np.zeros(3, dtype=np.uint64)
    >>> ngram_keys(np.array([97, 98], dtype=np.uint32), np.array([0, 2]), np.array([0, 3]),
    ...     2, 32, 1, np.zeros(0, dtype=np.uint32), 1000, 0, out)
    >>> out.tolist()
    [32097, 97098, 98032]
    """
    wide = np.uint64(base)
    unit = np.uint64(position_unit)
    mapped = len(lut) > 0
    for v in prange(len(offsets) - 1):
        lo = offsets[v]
        length = offsets[v + 1] - lo
        first = gram_offsets[v]
        for i in range(gram_offsets[v + 1] - first):
            key = np.uint64(0)
            for t in range(n):
                j = i + t - pad_width
                c = data[lo + j] if 0 <= j < length else pad
                digit = np.uint64(lut[c]) if mapped else np.uint64(c)
                key = key * wide + digit
            out[first + i] = key + np.uint64(i) * unit


@njit(cache=True, parallel=True)
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
    size = len(allowed)
    for v in prange(len(offsets) - 1):
        ok = True
        for o in range(offsets[v], offsets[v + 1]):
            c = data[o]
            if c >= size or not allowed[c]:
                ok = False
                break
        out[v] = ok


@njit(cache=True, parallel=True)
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
    for v in prange(len(offsets) - 1):
        lo, hi = offsets[v], offsets[v + 1]
        ok = 1 <= hi - lo <= most_digits and not (hi - lo > 1 and data[lo] == 48)
        number = 0
        for o in range(lo, hi):
            if not ok:
                break
            c = data[o]
            if c < 48 or c > 57:
                ok = False
            else:
                number = number * 10 + (np.int64(c) - 48)
        plain[v] = ok
        numbers[v] = number if ok else 0


@njit(cache=True, parallel=True)
def permute_bits(clks: np.ndarray, permutation: np.ndarray, out: np.ndarray) -> None:
    """Set bit ``j`` of each row of ``out`` to bit ``permutation[j]`` of the row of ``clks``
    (a per-round keyed permutation: popcounts and every Dice score are unchanged)."""
    one = np.uint64(1)
    for i in prange(clks.shape[0]):
        for k in range(out.shape[1]):
            acc = np.uint64(0)
            for b in range(64):
                s = permutation[k * 64 + b]
                bit = (clks[i, s >> 6] >> np.uint64(s & 63)) & one
                acc |= bit << np.uint64(b)
            out[i, k] = acc


@njit(cache=True, parallel=True)
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
    ``out`` is ``uint8`` with ``4 * ceil(nbytes / 3) + 4`` columns. Each parallel iteration
    writes only its own row of ``out``.
    """
    whole = nbytes // 3  # groups of three bytes; a last group of one or two is padded
    rest = nbytes - 3 * whole
    width = 4 * (whole + (rest > 0))
    for i in prange(out.shape[0]):
        row = raw[first + i]
        line = out[i]
        line[0] = 34  # "
        for g in range(whole):
            j = 3 * g
            acc = (
                (np.int64(reverse[row[j]]) << 16)
                | (np.int64(reverse[row[j + 1]]) << 8)
                | np.int64(reverse[row[j + 2]])
            )
            o = 1 + 4 * g
            line[o] = alphabet[acc >> 18]
            line[o + 1] = alphabet[(acc >> 12) & 63]
            line[o + 2] = alphabet[(acc >> 6) & 63]
            line[o + 3] = alphabet[acc & 63]
        if rest:
            j = 3 * whole
            acc = np.int64(reverse[row[j]]) << 16
            if rest == 2:
                acc |= np.int64(reverse[row[j + 1]]) << 8
            o = 1 + 4 * whole
            line[o] = alphabet[acc >> 18]
            line[o + 1] = alphabet[(acc >> 12) & 63]
            line[o + 2] = alphabet[(acc >> 6) & 63] if rest == 2 else 61  # =
            line[o + 3] = 61
        line[width + 1] = 34  # "
        line[width + 2] = 44  # ,
        line[width + 3] = 32  # space
