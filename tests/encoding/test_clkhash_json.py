"""clkhash's CLK JSON: bit order, lengths that are not whole bytes or words, and bad files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from oda_fed.encoding import read_clkhash_json, write_clkhash_json
from oda_fed.encoding.clkhash_json import from_clkhash_bytes, to_clkhash_bytes
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
