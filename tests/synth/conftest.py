"""Shared, seeded synthetic regions for the synth tests (built once per session: they are pure)."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.synth.generator import Simulation, simulate


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture(scope="session")
def medium3() -> Simulation:
    """The demo's shape: three partners at the default error level."""
    return simulate(population=3000, partners=3, seed=11, errors="medium")


@pytest.fixture(scope="session")
def all_partners() -> Simulation:
    """Every profile, at the high level so that every kind of error shows up."""
    return simulate(population=4000, partners=6, seed=5, errors="high")
