"""The per-round keyed transformation of CLKs and tokens, against plain Python."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.encoding import reference
from oda_fed.encoding.rounds import RoundTransform

SECRET = bytes(range(32))


def _clks(n: int, words: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, size=(n, words), dtype=np.uint64) * 2 + 1


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    ones = lambda x: sum(bin(int(w)).count("1") for w in x)  # noqa: E731
    return 2 * ones(a & b) / (ones(a) + ones(b))


@pytest.mark.parametrize("words", [1, 2, 16])
def test_the_kernel_matches_plain_python(words: int) -> None:
    clks = _clks(7, words)
    moved = RoundTransform(SECRET, context="p", round_id="r1", bits=64 * words)
    expected = np.empty_like(clks)
    out = moved.clks(clks)
    reference.permute_bits(clks, moved.permutation, expected)
    assert (out == expected).all()
    assert sorted(moved.permutation.tolist()) == list(range(64 * words))


def test_within_a_round_every_dice_score_is_unchanged() -> None:
    clks = _clks(20, 16)
    moved = RoundTransform(SECRET, context="p", round_id="r1", bits=1024).clks(clks)
    for i in range(0, 20, 3):
        for j in range(1, 20, 4):
            assert _dice(moved[i], moved[j]) == _dice(clks[i], clks[j])


def test_every_node_of_a_round_moves_bits_alike_and_no_two_rounds_do() -> None:
    clks = _clks(50, 16)
    first = RoundTransform(SECRET, context="p", round_id="r1", bits=1024)
    again = RoundTransform(SECRET, context="p", round_id="r1", bits=1024)
    assert (first.clks(clks) == again.clks(clks)).all()
    later = RoundTransform(SECRET, context="p", round_id="r2", bits=1024).clks(clks)
    # The coordinator's attack: find a record of round one among round two's CLKs by equality.
    rows = {row.tobytes() for row in first.clks(clks)}
    assert not any(row.tobytes() in rows for row in later)
    # Another secret (or project) gives another permutation too.
    other = RoundTransform(bytes(32), context="p", round_id="r1", bits=1024)
    assert not (other.permutation == first.permutation).all()


def test_tokens_stay_equal_within_a_round_and_change_between_rounds() -> None:
    tokens = {"nhs_number": [b"a" * 32, None, b"a" * 32, b""], "postcode": [b"a" * 32] * 4}
    r1 = RoundTransform(SECRET, context="p", round_id="r1", bits=64).tokens(tokens)
    r2 = RoundTransform(SECRET, context="p", round_id="r2", bits=64).tokens(tokens)
    nhs = r1["nhs_number"]
    assert nhs[0] == nhs[2] and nhs[1] is None and nhs[3] == b"" and len(nhs[0]) == 32
    assert nhs[0] != b"a" * 32 and nhs[0] != r2["nhs_number"][0]
    assert r1["postcode"][0] != nhs[0]  # the same value in another field is another token


def test_clks_of_the_wrong_width_are_refused() -> None:
    moved = RoundTransform(SECRET, context="p", round_id="r1", bits=1024)
    with pytest.raises(ValueError, match="1024 bits"):
        moved.clks(_clks(2, 8))
    with pytest.raises(ValueError, match="whole number of 64-bit words"):
        RoundTransform(SECRET, context="p", round_id="r1", bits=100)
