"""Plain Python twins of :mod:`oda_fed.encoding.kernels`, written for clarity, for tests.

Each function has the same name, arguments and effect as its kernel. Bits are set one at a time
on Python integers (bit ``b`` of a row is ``1 << b``) and only then written back as ``uint64``
words, so these twins share no word arithmetic with the kernels.
"""

from __future__ import annotations

import numpy as np


def _row_int(row: np.ndarray) -> int:
    return sum(int(word) << (64 * w) for w, word in enumerate(row))


def _write_row(out: np.ndarray, r: int, value: int) -> None:
    for w in range(out.shape[1]):
        out[r, w] = (value >> (64 * w)) & (2**64 - 1)


def set_token_bits(
    value_of_row: np.ndarray,
    occ_offsets: np.ndarray,
    occ_tokens: np.ndarray,
    occ_ks: np.ndarray,
    tok_offsets: np.ndarray,
    positions: np.ndarray,
    out: np.ndarray,
) -> None:
    """OR into each row of ``out`` the bits of the tokens of its value; negative = nothing."""
    for r, v in enumerate(value_of_row.tolist()):
        if v < 0:
            continue
        bits = _row_int(out[r])
        for o in range(int(occ_offsets[v]), int(occ_offsets[v + 1])):
            base = int(tok_offsets[int(occ_tokens[o])])
            for p in positions[base : base + int(occ_ks[o])].tolist():
                bits |= 1 << p
        _write_row(out, r, bits)


def or_masks(codes: np.ndarray, masks: np.ndarray, out: np.ndarray) -> None:
    """OR into each row of ``out`` the mask rows its codes name; negative codes are skipped."""
    for r in range(out.shape[0]):
        bits = _row_int(out[r])
        for c in codes[r].tolist():
            if c >= 0:
                bits |= _row_int(masks[c])
        _write_row(out, r, bits)
