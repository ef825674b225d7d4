"""The encoder's kernels compiled by Numba, for runs long enough to pay for compiling them.

Each has the name, arguments and effect of the NumPy kernel in :mod:`oda_fed.encoding.kernels`,
which calls it instead once :func:`oda_fed.encoding.kernels.use_jit` has been called; the array
forms are described there. Loading Numba and these kernels' cached code costs a process about
0.4 s; after that they run 1.5 to 2.5 times as fast as the NumPy kernels, over rows in
parallel (each parallel iteration writes only its own row or value).

Only ``@njit`` functions over arrays live here, so that Numba's on-disk cache, which tracks this
file alone, is invalidated whenever a kernel changes. The tests check every kernel against its
plain-Python twin in :mod:`oda_fed.encoding.reference`.
"""

from __future__ import annotations

import numpy as np

from oda_fed.encoding.kernels import import_numba

import_numba()  # without PyYAML and cffi, whoever imports this module first

from numba import njit, prange  # noqa: E402


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
    """:func:`oda_fed.encoding.kernels.set_token_bits`, compiled, in parallel."""
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
    """:func:`oda_fed.encoding.kernels.or_masks`, compiled, in parallel."""
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
    """:func:`oda_fed.encoding.kernels.ngram_keys`, compiled, in parallel."""
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
    """:func:`oda_fed.encoding.kernels.all_allowed`, compiled, in parallel."""
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
    """:func:`oda_fed.encoding.kernels.plain_decimals`, compiled, in parallel."""
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
def base64_rows(
    raw: np.ndarray,
    nbytes: int,
    first: int,
    alphabet: np.ndarray,
    reverse: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`oda_fed.encoding.kernels.base64_rows`, compiled, in parallel."""
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
