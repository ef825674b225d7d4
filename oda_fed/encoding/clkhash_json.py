"""CLKs as clkhash writes them: ``{"clks": [base64, ...]}``, for anonlink and clkhash tools.

Bit order
---------
clkhash serialises a CLK's big-endian ``bitarray`` with ``tobytes()``: filter bit ``i`` is bit
``7 - i % 8`` (most significant first) of byte ``i // 8``, and an ``l`` that is not a multiple of
8 is padded with zero bits at the end. oda-fed keeps bit ``i`` in ``uint64`` word ``i // 64`` at
bit ``i % 64`` (least significant first), which as little-endian bytes is bit ``i % 8`` of byte
``i // 8``. The conversion is therefore: take the little-endian bytes, keep the first
``ceil(l / 8)``, and reverse the order of the bits within each byte (and back).

For example filter bit 0 alone is the word ``1`` here and the byte ``0x80`` in clkhash; bit 9
alone is the word ``1 << 9`` here and the bytes ``00 40`` in clkhash.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from pathlib import Path
from typing import BinaryIO

import numpy as np

from oda_fed.durable import write_atomic
from oda_fed.errors import InputDataError

# Byte -> the same byte with its bit order reversed (bit 0 <-> bit 7, ...).
_REVERSED = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)
# base64's characters, by the value of their six bits.
_BASE64 = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8
)

# Rows of CLK JSON written at a time, through one buffer (11.5 MB at 1024 bits): reused, its
# pages are touched once, and the memory stays bounded whatever the number of CLKs.
_JSON_BLOCK_ROWS = 65_536


def _reverse_bits_in_bytes(words: np.ndarray) -> np.ndarray:
    """A copy of ``uint64`` words with the bit order of each of their bytes reversed.

    The same as ``_REVERSED`` on the bytes, in three swaps of bit groups over whole words, which
    is several times faster than looking up every byte.
    """
    out = words.copy()
    scratch = np.empty_like(out)
    for shift, mask in ((1, 0x5555555555555555), (2, 0x3333333333333333), (4, 0x0F0F0F0F0F0F0F0F)):
        shift, mask = np.uint64(shift), np.uint64(mask)
        np.right_shift(out, shift, out=scratch)
        scratch &= mask
        out &= mask
        out <<= shift
        out |= scratch
    return out


def _check_clks(clks: np.ndarray, bits: int) -> np.ndarray:
    """``clks`` as C-contiguous ``uint64`` words, refused unless ``bits`` long."""
    clks = np.asarray(clks)
    words = math.ceil(bits / 64)
    if clks.dtype != np.uint64 or clks.ndim != 2 or clks.shape[1] != words:
        raise ValueError(
            f"expected uint64 CLKs of shape (n, {words}) for {bits} bits; "
            f"got {clks.dtype} of shape {clks.shape}"
        )
    if bits % 64 and len(clks) and (clks[:, -1] >> np.uint64(bits % 64)).any():
        raise ValueError(f"CLKs have bits set at or beyond bit {bits}")
    return np.ascontiguousarray(clks)


def to_clkhash_bytes(clks: np.ndarray, *, bits: int) -> np.ndarray:
    """Each CLK as the bytes clkhash serialises: ``uint8`` of shape ``(n, ceil(bits / 8))``.

    Examples
    --------
    >>> to_clkhash_bytes(np.array([[1 | 1 << 9]], dtype=np.uint64), bits=16).tolist()
    [[128, 64]]
    """
    clks = _check_clks(clks, bits)
    reversed_words = _reverse_bits_in_bytes(clks.astype("<u8", copy=False))
    raw = reversed_words.view(np.uint8).reshape(len(clks), 8 * clks.shape[1])
    return raw[:, : math.ceil(bits / 8)]


def from_clkhash_bytes(data: np.ndarray) -> np.ndarray:
    """CLKs from clkhash bytes (``uint8`` of shape ``(n, nbytes)``), in oda-fed's layout.

    Examples
    --------
    >>> from_clkhash_bytes(np.array([[128, 64]], dtype=np.uint8)).tolist()
    [[513]]
    """
    data = np.asarray(data, dtype=np.uint8)
    words = math.ceil(data.shape[1] / 8)
    padded = np.zeros((data.shape[0], words * 8), dtype=np.uint8)
    padded[:, : data.shape[1]] = _REVERSED[data]
    return padded.view("<u8").astype(np.uint64)


def write_clkhash_json(clks: np.ndarray, path: Path, *, bits: int) -> Path:
    """Write CLKs as clkhash does: ``{"clks": [base64 of each CLK's bytes, ...]}``.

    The file is readable by clkhash's and anonlink-client's tools. It is written atomically.

    Parameters
    ----------
    clks
        ``uint64`` of shape ``(n, ceil(bits / 64))`` in oda-fed's layout (as
        :func:`oda_fed.encoding.encode_clkhash` returns them).
    path
        Where to write.
    bits
        The CLK length ``l``; each CLK is ``ceil(bits / 8)`` bytes.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When ``clks`` is not of that shape, or has bits set at or beyond ``bits``.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "clks.json"
    >>> _ = write_clkhash_json(np.array([[1]], dtype=np.uint64), out, bits=64)
    >>> out.read_text()
    '{"clks": ["gAAAAAAAAAA="]}'
    """
    clks = _check_clks(clks, bits)  # before the file is touched

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            _write_json(fh, clks, math.ceil(bits / 8))

    return write_atomic(Path(path), write)


def _write_json(fh: BinaryIO, clks: np.ndarray, nbytes: int) -> None:
    """Write ``json.dumps({"clks": [base64 of each CLK's bytes, ...]})`` to ``fh``.

    Every CLK has the same width, so every item has the same width too: a kernel
    (:func:`oda_fed.encoding.kernels.base64_rows`) writes a block of rows' items into one reused
    buffer, on every core, and the buffer goes to the file as it is.
    """
    from oda_fed.encoding.kernels import base64_rows

    n = len(clks)
    raw = clks.astype("<u8", copy=False).view(np.uint8)
    width = 4 * -(-nbytes // 3) + 4  # '"<base64>", '
    buffer = np.empty((min(n, _JSON_BLOCK_ROWS), width), dtype=np.uint8)
    fh.write(b'{"clks": [')
    for start in range(0, n, _JSON_BLOCK_ROWS):
        rows = buffer[: min(_JSON_BLOCK_ROWS, n - start)]
        base64_rows(raw, nbytes, start, _BASE64, _REVERSED, rows)
        flat = rows.reshape(-1)
        fh.write(flat[:-2] if start + len(rows) == n else flat)  # no ", " after the last
    fh.write(b"]}")


def read_clkhash_json(path: Path) -> np.ndarray:
    """Read CLKs written by clkhash (or :func:`write_clkhash_json`) into oda-fed's layout.

    Parameters
    ----------
    path
        A ``{"clks": [base64, ...]}`` file.

    Returns
    -------
    numpy.ndarray
        ``uint64`` of shape ``(n, ceil(nbytes / 8))``, where ``nbytes`` is the length of each
        CLK; bits past the end of the bytes are 0.

    Raises
    ------
    InputDataError
        When the file cannot be read, is not JSON of that shape, holds invalid base64, or its
        CLKs differ in length.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "clks.json"
    >>> _ = out.write_text('{"clks": ["gEA="]}')
    >>> read_clkhash_json(out).tolist()
    [[513]]
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the CLKs: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{path}: not a clkhash CLK file (not JSON): {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("clks"), list):
        raise InputDataError(f'{path}: not a clkhash CLK file: expected {{"clks": [...]}}')
    rows = []
    for i, text in enumerate(document["clks"]):
        try:
            rows.append(base64.b64decode(text, validate=True))
        except (TypeError, binascii.Error, ValueError) as exc:
            raise InputDataError(f"{path}: CLK {i} (counting from 0) is not base64") from exc
    sizes = {len(row) for row in rows}
    if len(sizes) > 1:
        raise InputDataError(f"{path}: the CLKs differ in length ({sorted(sizes)} bytes)")
    size = sizes.pop() if sizes else 0
    data = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), size)
    return from_clkhash_bytes(data)
