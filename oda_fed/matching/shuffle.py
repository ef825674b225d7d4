"""Merging the units' pairs on the workers: a map-reduce shuffle by runs of left rows.

LSH band spans and token rules each find pairs, a close pair in many of them. Instead of
sending every unit's pairs to the coordinator to merge, each map unit writes its distinct pair
keys (``left * scale + right``, which grow with the left row) into the pair of sources' private
shared folder, cut into ``parts`` runs of left rows (``map-K-P.npy``), and returns only how many
each run holds. One reduce unit per run then reads that run from every map unit, sorts and
dedupes it (``merged-P.npy``). The runs are disjoint and in order: the coordinator only
concatenates them, into the one array it keeps.

Token rules' pairs keep the order :func:`~oda_fed.matching.probabilistic.merge_rule_pairs`
gives them (each pair where it first appears, rule by rule), so a second round orders them:
each map run keeps the place where each key first appears in its rule, the first reduce keeps
each pair's earliest place over all the rules (``first-P-Q.npy``, cut into runs of places)
and the second sorts each run of places (``merged-Q.npy``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from oda_fed.matching.blocking import LshParams, _Join, _sorted_unique
from oda_fed.matching.units import Done, _bands, _rule, _timed

#: Fewest left rows a reduce unit gets: below, a unit's overhead costs more than its merge.
MIN_MERGE_ROWS = 50_000
#: Reduce units per worker, so that one large run does not hold up the rest.
MERGES_PER_WORKER = 2

#: :meth:`DaskExecutor._run <oda_fed.matching.executor.DaskExecutor._run>`.
Run = Callable[..., None]
#: A map unit's result: how many keys each of its runs holds.
Counts = list[int]


def parts_for(n_left: int, *, workers: int, min_rows: int = MIN_MERGE_ROWS) -> int:
    """How many runs of left rows to merge in: a few per worker, none smaller than
    ``min_rows`` rows (at least one).

    Examples
    --------
    >>> parts_for(1_000_000, workers=4), parts_for(60_000, workers=4), parts_for(0, workers=4)
    (8, 2, 1)
    """
    return max(1, min(MERGES_PER_WORKER * workers, -(-n_left // max(min_rows, 1))))


def cuts(n: int, parts: int, scale: int) -> np.ndarray:
    """The first key of each run but the first: runs of about ``n / parts`` rows (or places),
    a row's keys starting at ``row * scale``.

    Examples
    --------
    >>> cuts(10, 3, 4).tolist()
    [12, 24]
    """
    return np.arange(1, parts, dtype=np.int64) * n // parts * scale


def _save_runs(rows: np.ndarray, at: np.ndarray, stem: str) -> Counts:
    """``rows`` (sorted by their first column) cut at ``at`` into ``stem-P.npy``, empty runs
    unwritten; how many rows each run holds."""
    first = rows if rows.ndim == 1 else rows[:, 0]
    bounds = [0, *np.searchsorted(first, at).tolist(), len(rows)]
    for p, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if hi > lo:
            np.save(f"{stem}-{p}.npy", rows[lo:hi])
    return [hi - lo for lo, hi in zip(bounds, bounds[1:], strict=False)]


def _bands_to_runs(
    path_a: str,
    path_b: str,
    params: LshParams,
    start: int,
    stop: int,
    max_block: int | None,
    ratio: tuple[int, int],
    stem: str,
    at: np.ndarray,
) -> tuple[Counts, _Join]:
    join = _bands(path_a, path_b, params, start, stop, max_block, ratio)
    # The figures go back; the keys stay in the shared folder.
    return _save_runs(join.keys, at, stem), replace(join, keys=np.empty(0, np.int64))


def lsh_bands_runs(
    path_a: str,
    path_b: str,
    params: LshParams,
    start: int,
    stop: int,
    max_block: int | None,
    ratio: tuple[int, int],
    threads: int,
    stem: str,
    at: np.ndarray,
) -> Done:
    """LSH bands ``start:stop`` of ``params`` over all left and right rows (on ``threads``
    kernel threads, 0: all), the distinct pair keys that pass ``ratio`` in any of them written
    in runs cut at ``at`` (``stem-P.npy``): returns each run's count and the join's figures,
    without keys."""
    return _timed(threads, _bands_to_runs, path_a, path_b, params, start, stop, max_block,
                  ratio, stem, at)  # fmt: skip


def _rule_to_runs(
    tokens_a: dict[str, str],
    tokens_b: dict[str, str],
    rule: tuple[str, ...],
    max_block: int,
    width: int,
    stem: str,
    at: np.ndarray,
) -> tuple[Counts, int] | None:
    found = _rule(tokens_a, tokens_b, rule, max_block)
    if found is None:
        return None
    left, right = found
    key = left * np.int64(width) + right
    # Stable: each key with the place it first appears at in this rule.
    keys, place = np.unique(key, return_index=True)
    return _save_runs(np.stack([keys, place.astype(np.int64)], axis=1), at, stem), len(key)


def token_rule_runs(
    tokens_a: dict[str, str],
    tokens_b: dict[str, str],
    rule: tuple[str, ...],
    max_block: int,
    width: int,
    stem: str,
    at: np.ndarray,
) -> Done:
    """The row pairs whose keyed tokens agree on ``rule``
    (:func:`~oda_fed.matching.probabilistic.rule_pairs`, from each side's token columns saved
    at the paths given by name) as distinct keys ``left * width + right``, each with the place
    it first appears at, written in runs cut at ``at``: returns
    each run's count and how many pairs the rule found (None where a side lacks its tokens)."""
    return _timed(0, _rule_to_runs, tokens_a, tokens_b, rule, max_block, width, stem, at)


def _read(paths: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.load(p) for p in paths])


def _merge(stems: Sequence[str], part: int, out: str) -> int:
    keys = _sorted_unique(_read([f"{s}-{part}.npy" for s in stems]))
    np.save(out, keys)
    return len(keys)


def merge_runs(stems: Sequence[str], part: int, out: str) -> Done:
    """Run ``part`` of every map unit's keys (``stem-part.npy``), sorted, each key once, saved
    at ``out``: returns how many."""
    return _timed(0, _merge, stems, part, out)


def _first(stems: Sequence[tuple[str, int]], part: int, stem: str, at: np.ndarray) -> Counts:
    runs = [np.load(f"{s}-{part}.npy") for s, _ in stems]
    key = np.concatenate([r[:, 0] for r in runs])
    place = np.concatenate([r[:, 1] + offset for r, (_, offset) in zip(runs, stems, strict=True)])
    order = np.lexsort((place, key))  # by key, then place: each key's first place first
    key, place = key[order], place[order]
    first = np.ones(len(key), dtype=bool)
    np.not_equal(key[1:], key[:-1], out=first[1:])
    key, place = key[first], place[first]
    order = np.argsort(place)  # places are distinct
    return _save_runs(np.stack([place[order], key[order]], axis=1), at, stem)


def first_places(stems: Sequence[tuple[str, int]], part: int, stem: str, at: np.ndarray) -> Done:
    """Run ``part`` of every rule's keys (``(stem, offset)``: the rule's file stem, and how many
    pairs the rules before it found), each key once at its first place over all the rules,
    written in runs of places cut at ``at`` (``stem-Q.npy``): returns each run's count."""
    return _timed(0, _first, stems, part, stem, at)


def _order(stems: Sequence[str], part: int, out: str) -> int:
    rows = _read([f"{s}-{part}.npy" for s in stems])
    keys = rows[np.argsort(rows[:, 0]), 1]
    np.save(out, keys)
    return len(keys)


def order_runs(stems: Sequence[str], part: int, out: str) -> Done:
    """Run ``part`` of places of every :func:`first_places` unit, its keys in order of place,
    saved at ``out``: returns how many."""
    return _timed(0, _order, stems, part, out)


# --- the coordinator's side ----------------------------------------------------------------


def stem(folder: str, kind: str, k: int) -> str:
    """Where unit ``k`` of a round writes its runs."""
    return os.path.join(folder, f"{kind}-{k}")


def merged_keys(run: Run, folder: str, counts: Sequence[Counts], *, what: str) -> np.ndarray:
    """The map units' runs (their ``counts``, by unit: ``map-K``), each merged by a reduce unit;
    the merged runs in order."""
    return _reduce(run, folder, counts, kind="map", unit=merge_runs, what=what)


def first_keys(
    run: Run, folder: str, found: Sequence[tuple[Counts, int] | None], *, what: str
) -> np.ndarray:
    """The token rules' keys (their runs' counts and pairs found, by rule: ``map-K``), each
    once, in order of first appearance over the rules."""
    offsets = np.cumsum([0] + [f[1] if f else 0 for f in found]).tolist()
    used = [(k, f[0]) for k, f in enumerate(found) if f is not None]
    if not used:
        return np.empty(0, np.int64)
    parts = len(used[0][1])
    at = cuts(offsets[-1], parts, 1)
    calls, which = [], []
    for p in range(parts):
        stems = [(stem(folder, "map", k), offsets[k]) for k, c in used if c[p]]
        if stems:
            calls.append((first_places, stems, p, stem(folder, "first", p), at))
            which.append(p)
    places: list[Counts] = [[0] * parts for _ in range(parts)]
    run(what, calls, take=lambda i, c: places.__setitem__(which[i], c))
    return _reduce(run, folder, places, kind="first", unit=order_runs, what=what)


def _reduce(run: Run, folder: str, counts: Sequence[Counts], *, kind: str,
            unit: Callable[..., Done], what: str) -> np.ndarray:  # fmt: skip
    """Run P of the ``kind`` units' files (their ``counts``), by a ``unit`` each; the runs'
    results (``merged-P.npy``) concatenated."""
    parts = len(counts[0]) if counts else 0
    calls, which = [], []
    for p in range(parts):
        stems = [stem(folder, kind, k) for k, c in enumerate(counts) if c[p]]
        if stems:
            calls.append((unit, stems, p, os.path.join(folder, f"merged-{p}.npy")))
            which.append(p)
    sizes = [0] * parts
    run(what, calls, take=lambda i, n: sizes.__setitem__(which[i], n))
    out = np.empty(sum(sizes), dtype=np.int64)
    at = 0
    for p in which:
        # Straight from the page cache into the one array kept.
        out[at : at + sizes[p]] = np.load(os.path.join(folder, f"merged-{p}.npy"), mmap_mode="r")
        at += sizes[p]
    return out
