"""Shared fixtures for the matching tests: a seeded generator, a CLK-pair strategy, and each
executor in turn (in this process, and a real Dask LocalCluster)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

ALL_ONES = 2**64 - 1


@st.composite
def _clks(draw: st.DrawFn, *, words: int, max_rows: int) -> np.ndarray:
    """Small CLK arrays rich in edge cases: empty, all-zero and all-one rows, duplicates, and
    sparse rows whose few bits make ties and exact Dice values such as 0.8 likely."""
    n = draw(st.integers(0, max_rows))
    rows: list[list[int]] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["zero", "ones", "sparse", "random", "duplicate"]))
        if kind == "duplicate" and rows:
            rows.append(list(rows[draw(st.integers(0, len(rows) - 1))]))
        elif kind == "zero":
            rows.append([0] * words)
        elif kind == "ones":
            rows.append([ALL_ONES] * words)
        elif kind == "random":
            rows.append(draw(st.lists(st.integers(0, ALL_ONES), min_size=words, max_size=words)))
        else:
            # Bits only in the low byte of the first and last word.
            low = draw(st.integers(0, 255))
            high = draw(st.integers(0, 255)) if words > 1 else 0
            rows.append([low] + [0] * (words - 2) + [high] if words > 1 else [low])
    return np.array(rows, dtype=np.uint64).reshape(n, words)


@st.composite
def _clk_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    words = draw(st.sampled_from([1, 2, 16]))
    return draw(_clks(words=words, max_rows=9)), draw(_clks(words=words, max_rows=9))


@pytest.fixture(scope="session")
def clk_pairs() -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Hypothesis strategy for two CLK arrays with the same word count (draw it with st.data())."""
    return _clk_pairs()


@pytest.fixture
def rng() -> np.random.Generator:
    """Seeded generator, so every failure reproduces."""
    return np.random.default_rng(20240611)


@pytest.fixture(params=["threads", "dask"])
def executor(request: pytest.FixtureRequest):
    """Each executor in turn: the default in-process one, and the session's LocalCluster of 2
    worker processes (``dask_executor`` in tests/conftest.py). A test taking it must give the
    same results on both."""
    from oda_fed.matching.executor import Executor

    if request.param == "threads":
        return Executor()
    return request.getfixturevalue("dask_executor")
