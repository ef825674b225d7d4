"""Plain Python twins of :mod:`oda_fed.encoding.kernels`, written for clarity, for tests.

Each function has the same name, arguments and effect as its kernel, in both of the kernels'
implementations (NumPy and Numba); :func:`permute_bits` is the twin of the per-round
permutation in :mod:`oda_fed.encoding.rounds`. Bits are set one at a time
on Python integers (bit ``b`` of a row is ``1 << b``) and only then written back as ``uint64``
words, so these twins share no word arithmetic with the kernels; n-gram keys and decimal numbers
are computed with Python integers and strings.
"""

from __future__ import annotations

import base64

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
    """Write each value's n-gram keys: digits (``lut[c]``, or ``c``) in base ``base``, plus the
    position times ``position_unit``."""
    for v in range(len(offsets) - 1):
        value = [int(c) for c in data[int(offsets[v]) : int(offsets[v + 1])]]
        padded = [pad] * pad_width + value + [pad] * pad_width
        first = int(gram_offsets[v])
        for i in range(int(gram_offsets[v + 1]) - first):
            key = 0
            for c in padded[i : i + n]:
                key = key * base + (int(lut[c]) if len(lut) else c)
            out[first + i] = (key + i * position_unit) % 2**64


def all_allowed(
    data: np.ndarray, offsets: np.ndarray, allowed: np.ndarray, out: np.ndarray
) -> None:
    """Whether each value's code points are all allowed (inside ``allowed`` and true there)."""
    table = allowed.tolist()
    for v in range(len(offsets) - 1):
        chunk = data[int(offsets[v]) : int(offsets[v + 1])].tolist()
        out[v] = all(c < len(table) and table[c] for c in chunk)


def plain_decimals(
    data: np.ndarray, offsets: np.ndarray, most_digits: int, plain: np.ndarray, numbers: np.ndarray
) -> None:
    """Which values are plain decimals (``str(int(s)) == s``, at most ``most_digits`` ASCII
    digits), and their numbers (0 for the others)."""
    for v in range(len(offsets) - 1):
        text = "".join(chr(c) for c in data[int(offsets[v]) : int(offsets[v + 1])].tolist())
        ok = (
            0 < len(text) <= most_digits
            and all("0" <= ch <= "9" for ch in text)
            and str(int(text)) == text
        )
        plain[v] = ok
        numbers[v] = int(text) if ok else 0


def permute_bits(clks: np.ndarray, permutation: np.ndarray, out: np.ndarray) -> None:
    """Bit ``j`` of each output row is bit ``permutation[j]`` of the input row, as integers."""
    for r in range(clks.shape[0]):
        value = _row_int(clks[r])
        moved = sum(((value >> int(s)) & 1) << j for j, s in enumerate(permutation.tolist()))
        _write_row(out, r, moved)


def base64_rows(
    raw: np.ndarray,
    nbytes: int,
    first: int,
    alphabet: np.ndarray,
    reverse: np.ndarray,
    out: np.ndarray,
) -> None:
    """Each CLK's bits, most significant first in each byte, through :mod:`base64` and quoted.

    The tables are base64's and the bit reversal's own, so this twin does not read them.
    """
    for i in range(out.shape[0]):
        value = _row_int(raw[first + i].view("<u8"))
        bits = "".join(str((value >> b) & 1) for b in range(8 * nbytes))
        data = bytes(int(bits[8 * j : 8 * j + 8], 2) for j in range(nbytes))
        out[i] = np.frombuffer(b'"' + base64.b64encode(data) + b'", ', dtype=np.uint8)
