"""Numba kernels of CLK hardening: keyed bit selection with XOR (diffusion and permutation).

Only ``@njit`` functions over arrays live here, so that Numba's on-disk cache, which tracks this
file alone, is invalidated whenever a kernel changes. The wrapper that checks inputs and derives the
tap sets is :func:`oda_fed.encoding.hardening.harden`; the plain-NumPy twin of each kernel lives in
``tests/encoding/test_hardening.py``, which checks that the two agree.

CLKs are ``uint64[:, ::1]`` arrays: row ``r`` is one CLK, bit ``b`` lives in word ``b // 64`` at
position ``b % 64``, least significant bit first.
"""

from __future__ import annotations

import numpy as np

from oda_fed.encoding.kernels import import_numba

import_numba()  # without PyYAML and cffi, whoever imports this module first

from numba import njit, prange  # noqa: E402


@njit(cache=True, parallel=True)
def xor_taps(clks: np.ndarray, taps: np.ndarray, out: np.ndarray) -> None:
    """Write into ``out`` the CLKs whose output bit ``j`` is the XOR of input bits ``taps[j, :]``.

    ``clks`` is ``uint64[n, words_in]``, ``taps`` is ``int64[m, t]`` with every entry in
    ``[0, 64 * words_in)``, and ``out`` is a preallocated ``uint64[n, m // 64]`` (``m`` a multiple
    of 64). With ``t = 1`` this is a bit permutation or selection; with ``t > 1`` it is the
    diffusion layer. A tap listed twice cancels itself, as XOR does. Each parallel iteration
    writes only its own row of ``out``.

    Examples
    --------
    >>> clks = np.array([[0b10]], dtype=np.uint64)
    >>> taps = np.zeros((64, 1), dtype=np.int64); taps[0, 0] = 1
    >>> out = np.zeros((1, 1), dtype=np.uint64)
    >>> xor_taps(clks, taps, out); int(out[0, 0])
    1
    """
    n = clks.shape[0]
    t = taps.shape[1]
    words_out = out.shape[1]
    one = np.uint64(1)
    for r in prange(n):
        for w in range(words_out):
            # Build a whole output word in a register, then store it once.
            word = np.uint64(0)
            for b in range(64):
                j = w * 64 + b
                parity = np.uint64(0)
                for s in range(t):
                    p = taps[j, s]
                    # Shifts take unsigned counts: a signed count would promote to float64.
                    parity ^= (clks[r, p >> 6] >> np.uint64(p & 63)) & one
                word |= parity << np.uint64(b)
            out[r, w] = word
