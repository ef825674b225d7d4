"""clkhash's CLK JSON: bit order, lengths that are not whole bytes or words, and bad files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from oda_fed.encoding import read_clkhash_json, write_clkhash_json
from oda_fed.encoding.clkhash_json import (
    _REVERSED,
    _reverse_bits_in_bytes,
    from_clkhash_bytes,
    to_clkhash_bytes,
)
from oda_fed.errors import InputDataError


def _bit(b: int, *, words: int) -> np.ndarray:
    clk = np.zeros((1, words), dtype=np.uint64)
    clk[0, b // 64] = np.uint64(1) << np.uint64(b % 64)
    return clk


def test_bit_order_is_big_endian_within_bytes_as_bitarray_writes_it() -> None:
    # Filter bit i is bit 7 - i % 8 (most significant first) of byte i // 8.
    for b in (0, 1, 7, 8, 9, 63, 64, 127):
        data = to_clkhash_bytes(_bit(b, words=2), bits=128)[0]
        expected = np.zeros(16, dtype=np.uint8)
        expected[b // 8] = 0x80 >> (b % 8)
        np.testing.assert_array_equal(data, expected)


def test_round_trip(rng: np.random.Generator, tmp_path: Path) -> None:
    clks = rng.integers(0, 2**64, size=(50, 16), dtype=np.uint64)
    path = write_clkhash_json(clks, tmp_path / "clks.json", bits=1024)
    document = json.loads(path.read_text())
    assert list(document) == ["clks"] and len(document["clks"]) == 50
    assert all(len(base64.b64decode(c)) == 128 for c in document["clks"])
    np.testing.assert_array_equal(read_clkhash_json(path), clks)


@pytest.mark.parametrize("bits", [1, 12, 30, 100, 136])
def test_lengths_that_are_not_whole_words_or_bytes(
    bits: int, rng: np.random.Generator, tmp_path: Path
) -> None:
    words = -(-bits // 64)
    clks = rng.integers(0, 2**64, size=(7, words), dtype=np.uint64)
    # Clear every bit from `bits` on, as an encoder of that length leaves them.
    keep = np.unpackbits(clks.view(np.uint8), axis=1, bitorder="little")
    keep[:, bits:] = 0
    clks = np.packbits(keep, axis=1, bitorder="little").view(np.uint64)
    data = to_clkhash_bytes(clks, bits=bits)
    assert data.shape == (7, -(-bits // 8))
    path = write_clkhash_json(clks, tmp_path / "clks.json", bits=bits)
    np.testing.assert_array_equal(read_clkhash_json(path), clks)
    np.testing.assert_array_equal(from_clkhash_bytes(data), clks)


def test_bits_past_the_length_are_refused() -> None:
    with pytest.raises(ValueError, match="beyond bit 30"):
        to_clkhash_bytes(_bit(30, words=1), bits=30)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        to_clkhash_bytes(np.zeros((1, 1), dtype=np.uint64), bits=128)
    with pytest.raises(ValueError, match="uint64"):
        to_clkhash_bytes(np.zeros((1, 2), dtype=np.int64), bits=128)


def test_no_clks(tmp_path: Path) -> None:
    path = write_clkhash_json(np.zeros((0, 16), dtype=np.uint64), tmp_path / "c.json", bits=1024)
    assert json.loads(path.read_text()) == {"clks": []}
    assert read_clkhash_json(path).shape == (0, 0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ('["gA=="]', 'expected {"clks"'),
        ('{"clks": "gA=="}', 'expected {"clks"'),
        ('{"clks": ["gA==", "not base64!"]}', r"CLK 1 \(counting from 0\) is not base64"),
        ('{"clks": [7]}', "CLK 0"),
        ('{"clks": ["gA==", "gAA="]}', r"differ in length \(\[1, 2\] bytes\)"),
    ],
)
def test_bad_files_are_input_errors(text: str, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "clks.json"
    path.write_text(text)
    with pytest.raises(InputDataError, match=problem):
        read_clkhash_json(path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="cannot read"):
        read_clkhash_json(tmp_path / "nope.json")


def _as_clkhash_writes_it(clks: np.ndarray, *, bits: int) -> bytes:
    """clkhash's own way: base64 of each CLK's bytes, one by one, into ``json.dumps``."""
    rows = to_clkhash_bytes(clks, bits=bits)
    return json.dumps({"clks": [base64.b64encode(r.tobytes()).decode() for r in rows]}).encode()


@pytest.mark.parametrize("bits", [1, 8, 12, 16, 24, 64, 100, 136, 1000, 1024])
@pytest.mark.parametrize("records", [0, 1, 2, 7])
@pytest.mark.parametrize("block_rows", [1, 3, 65_536])
def test_the_file_is_byte_for_byte_what_per_record_base64_writes(
    bits: int,
    records: int,
    block_rows: int,
    rng: np.random.Generator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every CLK width modulo 3 (so every '=' padding) and blocks that split the rows anywhere.
    monkeypatch.setattr("oda_fed.encoding.clkhash_json._JSON_BLOCK_ROWS", block_rows)
    words = -(-bits // 64)
    clks = rng.integers(0, 2**64, size=(records, words), dtype=np.uint64)
    keep = np.unpackbits(clks.view(np.uint8), axis=1, bitorder="little")
    keep[:, bits:] = 0
    clks = np.packbits(keep, axis=1, bitorder="little").view(np.uint64).reshape(records, words)
    path = write_clkhash_json(clks, tmp_path / "clks.json", bits=bits)
    assert path.read_bytes() == _as_clkhash_writes_it(clks, bits=bits)


def test_all_zero_and_all_one_clks_are_written_as_clkhash_writes_them(tmp_path: Path) -> None:
    clks = np.array([[0] * 16, [2**64 - 1] * 16], dtype=np.uint64)
    path = write_clkhash_json(clks, tmp_path / "clks.json", bits=1024)
    assert path.read_bytes() == _as_clkhash_writes_it(clks, bits=1024)
    assert json.loads(path.read_text())["clks"][1] == base64.b64encode(b"\xff" * 128).decode()


def test_bit_reversal_over_words_is_the_byte_table(rng: np.random.Generator) -> None:
    every_byte = np.arange(256, dtype=np.uint8).reshape(16, 16)
    raw = np.concatenate([every_byte, rng.integers(0, 256, size=(5, 16), dtype=np.uint8)])
    words = raw.view("<u8")
    assert (_reverse_bits_in_bytes(words).view(np.uint8) == _REVERSED[raw]).all()
