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
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from oda_fed.durable import write_atomic
from oda_fed.errors import InputDataError

# Byte -> the same byte with its bit order reversed (bit 0 <-> bit 7, ...).
_REVERSED = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)

# Rows of CLK JSON encoded at a time: bounds the scratch memory (about 0.4 kB a row at 1024 bits)
# without costing speed.
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
    little = np.ascontiguousarray(clks, dtype="<u8")
    raw = little.view(np.uint8).reshape(len(clks), 8 * words)
    size = math.ceil(bits / 8)
    if bits % 64 and np.unpackbits(raw, axis=1, bitorder="little")[:, bits:].any():
        raise ValueError(f"CLKs have bits set at or beyond bit {bits}")
    reversed_words = _reverse_bits_in_bytes(little)
    return reversed_words.view(np.uint8).reshape(len(clks), 8 * words)[:, :size]


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
    data = to_clkhash_bytes(clks, bits=bits)  # checks the shape and the bits before writing

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            for part in _json_parts(data):
                fh.write(part)

    return write_atomic(Path(path), write)


def _json_parts(data: np.ndarray) -> Iterator[bytes | memoryview]:
    """The bytes of ``json.dumps({"clks": [base64 of each row, ...]})``, in parts.

    ``data`` is clkhash's bytes of each CLK (``uint8`` of shape ``(n, nbytes)``, as
    :func:`to_clkhash_bytes` returns them). Every row has the same width, so every row's base64
    has the same width too: each block of rows is padded to whole 3-byte groups and encoded in one
    call, and the zero bytes' characters at each row's end become clkhash's ``=`` padding.

    Examples
    --------
    >>> b"".join(_json_parts(np.array([[128, 64], [0, 0]], dtype=np.uint8)))
    b'{"clks": ["gEA=", "AAA="]}'
    >>> b"".join(_json_parts(np.zeros((0, 128), dtype=np.uint8)))
    b'{"clks": []}'
    """
    n, size = data.shape
    groups = -(-size // 3)
    pad = 3 * groups - size  # clkhash's base64 ends in this many '='
    width = 4 * groups
    yield b'{"clks": ['
    for start in range(0, n, _JSON_BLOCK_ROWS):
        block = data[start : start + _JSON_BLOCK_ROWS]
        padded = np.zeros((len(block), 3 * groups), dtype=np.uint8)
        padded[:, :size] = block
        chars = np.frombuffer(binascii.b2a_base64(padded, newline=False), dtype=np.uint8)
        # Each row as '"<base64>", ': four bytes more than its base64.
        rows = np.empty((len(block), width + 4), dtype=np.uint8)
        rows[:, 0] = ord('"')
        rows[:, 1 : width + 1] = chars.reshape(len(block), width)
        if pad:
            rows[:, width + 1 - pad : width + 1] = ord("=")
        rows[:, width + 1 :] = np.frombuffer(b'", ', dtype=np.uint8)
        flat = rows.reshape(-1)
        # No ", " after the last row; a view, not a copy (the file takes any buffer).
        yield memoryview(flat[:-2] if start + len(block) == n else flat)
    yield b"]}"


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
