"""Matching's work units: plain functions over CLK files that a cluster's workers open themselves.

A unit reads its CLKs from ``.npy`` files in a folder every worker sees, memory-mapped, so the
workers of one machine share one copy in the page cache, and returns sparse arrays only
(candidate pairs, or pair keys), never a matrix. Its arguments are paths and row or band ranges,
so the scheduler moves almost nothing. :mod:`oda_fed.matching.executor` submits them.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

import numba
import numpy as np

from oda_fed.encoding.evidence import Evidence
from oda_fed.matching.blocking import _Join, _join
from oda_fed.matching.candidates import Candidates, best_two_scores, dice_candidates
from oda_fed.matching.probabilistic import (
    Comparison,
    comparison_levels,
    distinct_rows,
    rule_pairs,
)
from oda_fed.matching.solve import merge_components

T = TypeVar("T")

# Per worker process: the CLK files of the rounds under way, opened once. forget() drops a
# finished round's, so a deleted file's pages are freed.
_OPEN: dict[str, np.ndarray] = {}


@dataclass(frozen=True)
class Done(Generic[T]):
    """A unit's result, with what it cost: wall and CPU seconds (all the kernels' threads), and
    the worker process's id and peak resident memory so far."""

    result: T
    seconds: float
    cpu_seconds: float
    pid: int
    peak_rss: int


def clks_at(path: str) -> np.ndarray:
    """The CLK array saved at ``path``, memory-mapped read-only, opened once per process."""
    if path not in _OPEN:
        _OPEN[path] = np.load(path, mmap_mode="r")
    return _OPEN[path]


def forget(folder: str) -> int:
    """Close this process's CLK files under ``folder``; returns how many it held."""
    gone = [p for p in _OPEN if os.path.dirname(p) == folder]
    for p in gone:
        del _OPEN[p]
    return len(gone)


def _timed(threads: int, run, *args) -> Done:
    if threads > 0:  # this thread's share of the worker's kernel threads (0: all of them)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    wall, cpu = time.perf_counter(), time.process_time()
    result = run(*args)
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Done(result, time.perf_counter() - wall, time.process_time() - cpu, os.getpid(), peak)


def _dice_rows(path_a: str, path_b: str, start: int, stop: int, threshold: float) -> Candidates:
    found = dice_candidates(clks_at(path_a)[start:stop], clks_at(path_b), threshold=threshold)
    return Candidates(left=found.left + start, right=found.right, score=found.score)


def dice_rows(
    path_a: str, path_b: str, start: int, stop: int, threshold: float, threads: int = 0
) -> Done:
    """Left rows ``start:stop`` against every right row: the candidates at ``threshold``, with
    left indices of the whole left array; on ``threads`` kernel threads (0: all)."""
    return _timed(threads, _dice_rows, path_a, path_b, start, stop, threshold)


def _best_two(path_a: str, path_b: str, start: int, stop: int, threshold: float):
    return best_two_scores(clks_at(path_a), clks_at(path_b)[start:stop], threshold=threshold)


def best_two_of_rows(
    path_a: str, path_b: str, start: int, stop: int, threshold: float, threads: int = 0
) -> Done:
    """Every left row's best and second-best score against right rows ``start:stop`` (NaN
    where there is none at or above ``threshold``)."""
    return _timed(threads, _best_two, path_a, path_b, start, stop, threshold)


def _rule(tokens_a: dict[str, str], tokens_b: dict[str, str], rule: tuple[str, ...],
          max_block: int) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    return rule_pairs(_evidence_at({}, tokens_a), _evidence_at({}, tokens_b), rule,
                      max_block=max_block)  # fmt: skip


def _bands(path_a, path_b, params, start, stop, max_block, ratio) -> _Join:
    return _join(clks_at(path_a), clks_at(path_b), params=params, max_block=max_block,
                 ratio=ratio, span=range(start, stop))  # fmt: skip


def _evidence_at(filters: dict[str, str], tokens: dict[str, str]) -> Evidence:
    return Evidence(filters={k: clks_at(p) for k, p in filters.items()},
                    tokens={k: clks_at(p) for k, p in tokens.items()})  # fmt: skip


def _levels(side_a, side_b, path_left, path_right, start, stop, comparisons) -> np.ndarray:
    left = np.asarray(clks_at(path_left)[start:stop])
    right = np.asarray(clks_at(path_right)[start:stop])
    return comparison_levels(comparisons, _evidence_at(*side_a), _evidence_at(*side_b), left,
                             right)  # fmt: skip


def comparison_rows(
    side_a: tuple[dict[str, str], dict[str, str]],
    side_b: tuple[dict[str, str], dict[str, str]],
    path_left: str,
    path_right: str,
    start: int,
    stop: int,
    comparisons: tuple[Comparison, ...],
) -> Done:
    """The comparison levels of candidates ``start:stop`` (their left and right records in the
    files ``path_left``, ``path_right``), from each side's field evidence: ``(filters,
    tokens)``, name to file."""
    return _timed(0, _levels, side_a, side_b, path_left, path_right, start, stop, comparisons)


def _components(path_a, path_b, path_score, start, stop, offsets, one_per_source, level):
    a, b, score = (np.array(clks_at(p)[start:stop]) for p in (path_a, path_b, path_score))
    return merge_components(a, b, score, offsets=offsets, one_per_source=one_per_source,
                            level=level)  # fmt: skip


def resolve_components(
    path_a: str,
    path_b: str,
    path_score: str,
    start: int,
    stop: int,
    offsets: list[int],
    one_per_source: bool,
    level: float,
) -> Done:
    """The greedy merge of edges ``start:stop`` (whole connected components, in the global
    order) of the edge files: :func:`~oda_fed.matching.solve.merge_components`."""
    return _timed(0, _components, path_a, path_b, path_score, start, stop, offsets,
                  one_per_source, level)  # fmt: skip


def _counts(side_a, side_b, path_left, path_right, start, stop, comparisons):
    levels = _levels(side_a, side_b, path_left, path_right, start, stop, comparisons)
    return distinct_rows(levels, [len(c.labels) for c in comparisons])


def comparison_counts(
    side_a: tuple[dict[str, str], dict[str, str]],
    side_b: tuple[dict[str, str], dict[str, str]],
    path_left: str,
    path_right: str,
    start: int,
    stop: int,
    comparisons: tuple[Comparison, ...],
) -> Done:
    """The distinct level patterns of candidates ``start:stop`` and how many have each (the map
    of a count whose reduce is :func:`~oda_fed.matching.probabilistic.add_counts`); the
    arguments as :func:`comparison_rows` takes them."""
    return _timed(0, _counts, side_a, side_b, path_left, path_right, start, stop, comparisons)
