"""Numba kernels of the CLK encoder: set the cached bit positions of tokens into CLK rows.

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
