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

import numpy as np

from oda_fed.durable import write_atomic
from oda_fed.errors import InputDataError

# Byte -> the same byte with its bit order reversed (bit 0 <-> bit 7, ...).
_REVERSED = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)


def to_clkhash_bytes(clks: np.ndarray, *, bits: int) -> np.ndarray:
    """Each CLK as the bytes clkhash serialises: ``uint8`` of shape ``(n, ceil(bits / 8))``.

    Examples
    --------
    >>> to_clkhash_bytes(np.array([[1 | 1 << 9]], dtype=np.uint64), bits=16).tolist()
    [[128, 64]]
    """
    clks = np.asarray(clks)
    words = math.ceil(bits / 64)
    if clks.dtype != np.uint64 or clks.ndim != 2 or clks.shape[1] != words:
        raise ValueError(
            f"expected uint64 CLKs of shape (n, {words}) for {bits} bits; "
            f"got {clks.dtype} of shape {clks.shape}"
        )
    raw = np.ascontiguousarray(clks, dtype="<u8").view(np.uint8).reshape(len(clks), 8 * words)
    size = math.ceil(bits / 8)
    if bits % 64 and np.unpackbits(raw, axis=1, bitorder="little")[:, bits:].any():
        raise ValueError(f"CLKs have bits set at or beyond bit {bits}")
    return _REVERSED[raw[:, :size]]


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
    encoded = [
        base64.b64encode(row.tobytes()).decode("ascii") for row in to_clkhash_bytes(clks, bits=bits)
    ]
    text = json.dumps({"clks": encoded})
    return write_atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


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
