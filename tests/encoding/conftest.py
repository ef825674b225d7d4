"""Fixtures shared by these tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, so that every run sees the same synthetic data."""
    return np.random.default_rng(20240611)
