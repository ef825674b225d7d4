"""Fixtures for the linked-index tests: real CLKs of a synthetic region, and small made-up ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from oda_fed.config import LoadedProject
from oda_fed.index import Extract, LinkedIndex
from oda_fed.matching.settings import LinkSettings
from oda_fed.node.encode import EncodedSource

SOURCES = ("council", "police", "social_care")


@dataclass(frozen=True)
class Region:
    """Three partners' files, encoded, with the project and secret that made them."""

    folder: Path
    loaded: LoadedProject
    secret: bytes
    encoded: dict[str, EncodedSource]
    truth: pd.DataFrame

    @property
    def words(self) -> int:
        return self.loaded.project.linkage.wire_bits // 64

    @property
    def threshold(self) -> float:
        """A fixed threshold, so the tests do not depend on the synthetic project's default."""
        return 0.8

    @property
    def settings(self) -> LinkSettings:
        return LinkSettings(threshold=self.threshold)

    def extract(self, source: str, rows: np.ndarray | slice | None = None) -> Extract:
        """``source``'s extract, or only the records at ``rows``."""
        return extract_of(self.encoded[source], rows)

    def first(self, share: float) -> dict[str, Extract]:
        """Every source's first ``share`` of records: an earlier extract."""
        return {s: self.extract(s, slice(0, int(len(self.encoded[s]) * share))) for s in SOURCES}

    def everything(self) -> dict[str, Extract]:
        return {s: self.extract(s) for s in SOURCES}

    def open(self, path: Path, *, create: bool = True) -> LinkedIndex:
        return LinkedIndex.open(
            path, fingerprint=self.loaded.fingerprint, words=self.words, create=create
        )


@pytest.fixture(scope="session")
def region(tmp_path_factory: pytest.TempPathFactory) -> Region:
    from oda_fed.config import load_project
    from oda_fed.node.encode import encode_file
    from oda_fed.node.sources import layout_for
    from oda_fed.synth import generate, write, write_project

    folder = tmp_path_factory.mktemp("index-region")
    synthetic = generate(population=1200, partners=3, seed=5, errors="medium")
    write(synthetic, folder)
    write_project(synthetic, folder / "project.toml")
    loaded = load_project(folder / "project.toml")
    secret = bytes(range(32))
    encoded = {
        s: encode_file(
            folder / f"{s}.csv",
            project=loaded.project,
            layout=layout_for(loaded.project, s),
            secret=secret,
        )
        for s in SOURCES
    }
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    return Region(folder=folder, loaded=loaded, secret=secret, encoded=encoded, truth=truth)


def extract_of(encoded: EncodedSource, rows: np.ndarray | slice | None = None) -> Extract:
    """An encoded file's records (or those at ``rows``) as the index takes them."""
    take = np.arange(len(encoded))[rows if rows is not None else slice(None)]
    return Extract(
        record_ids=[str(r) for r in encoded.record_ids[take]],
        clks=np.ascontiguousarray(encoded.clks[take]),
    )


def clk(*spans: tuple[int, int], words: int = 2) -> np.ndarray:
    """One CLK row with bits ``[lo, hi)`` of each span set."""
    bits = np.zeros(words * 64, dtype=bool)
    for lo, hi in spans:
        bits[lo:hi] = True
    packed = np.packbits(bits.reshape(words, 64)[:, ::-1], axis=1).view(">u8").ravel()
    return packed.astype(np.uint64)


def clks(*rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack(rows)).astype(np.uint64)


def partition(links: pd.DataFrame) -> set[frozenset[tuple[str, str]]]:
    """Entities as sets of (source, record_id), whatever their ids."""
    return {
        frozenset(zip(group.source, group.record_id, strict=True))
        for _, group in links.groupby("entity_id")
    }


def linked_pairs(links: pd.DataFrame) -> set[frozenset[tuple[str, str]]]:
    """Every pair of records that share an entity."""
    out = set()
    for entity in partition(links):
        members = sorted(entity)
        out.update(frozenset((a, b)) for i, a in enumerate(members) for b in members[i + 1 :])
    return out


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """The helpers above for test modules (``--import-mode=importlib`` cannot import conftest)."""
    return SimpleNamespace(
        SOURCES=SOURCES,
        clk=clk,
        clks=clks,
        extract_of=extract_of,
        partition=partition,
        linked_pairs=linked_pairs,
    )
