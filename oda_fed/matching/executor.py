"""Where matching's heavy work runs: in this process (the default) or on a Dask cluster.

Candidate generation is the part of matching that grows with N × N: all-pairs Dice scoring
and LSH bands. Both split into independent units (:mod:`oda_fed.matching.units`): a block of
left rows against all right rows, or a span of bands over both sides; so do the steps that grow
with N or with the candidates: the quality pass (the other side in blocks of rows), field-aware
linkage's token blocking (a rule per unit) and its comparison levels (blocks of candidates; for
EM's u and household tables each block returns only its level patterns' counts, which add up);
and resolution into entities, as groups of whole connected components of the candidate graph
(:func:`~oda_fed.matching.solve.merge_components`), once the coordinator has ordered the edges
and learnt the trusted level from all of them.
:class:`Executor` runs each as one call in this process, on the Numba kernels' own threads,
exactly as matching always ran; :class:`DaskExecutor` submits the units to a Dask scheduler and
merges their sparse results in a fixed order, so the results are identical bit for bit. The pairs
of LSH bands and token rules, found many times over, are merged on the workers too
(:mod:`oda_fed.matching.shuffle`: a shuffle by runs of left rows, through files in the shared
folder), so the coordinator only concatenates the merged runs.

The CLKs (or token columns) reach the workers through shared storage, not the scheduler: each
pair of sources is written as ``.npy`` files into a private (0700) folder under ``shared_dir``
(a path every worker sees), with whatever the units write there for each other, and deleted,
folder and all, once its units are done. The workers are in the coordinator's trust domain: they
see CLKs, field evidence, keyed tokens and candidate pairs, never names or record ids.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from oda_fed.encoding.evidence import Evidence
from oda_fed.errors import ClusterError, ConfigError
from oda_fed.matching import probabilistic as fs
from oda_fed.matching import shuffle
from oda_fed.matching.blocking import BandProgress, LshParams, _Join, _join, merge_joins
from oda_fed.matching.candidates import (
    Candidates,
    best_two_scores,
    check_candidate_count,
    dice_candidates,
)
from oda_fed.matching.solve import (
    Clustering,
    PairCandidates,
    assemble,
    component_units,
    merge_all,
    ordered_edges,
    resolve,
)
from oda_fed.matching.units import (
    Done,
    best_two_of_rows,
    comparison_counts,
    comparison_rows,
    dice_rows,
    forget,
    resolve_components,
)

#: LSH bands per unit: each unit packs its bands' keys in one pass, 8 bytes per record a band
#: on both sides (10M records a side: 640 MB for 4 bands).
BANDS_PER_UNIT = 4
#: Units per worker for all-pairs scoring, so a slow worker does not hold up the rest.
UNITS_PER_WORKER = 4
#: Fewest candidate pairs per unit of comparison levels (see DaskExecutor.min_unit_pairs).
MIN_UNIT_PAIRS = 250_000
#: Fewest edges per unit of resolution (see DaskExecutor.min_unit_edges).
MIN_UNIT_EDGES = 250_000
#: Seconds to wait for a scheduler to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 10

_INSTALL = "pip install 'oda-fed[cluster]'"
#: A Dask scheduler, or "local" / "local:N" (as ``[coordinator] dask_scheduler`` takes it).
ADDRESS = r"((tcp|tls)://\S+|local(:[1-9][0-9]*)?)"


class Executor:
    """Runs candidate work in this process, on the kernels' threads: matching as it always ran.

    Examples
    --------
    >>> a = np.array([[0b1111]], dtype=np.uint64)
    >>> with Executor() as run:
    ...     run.dice(a, a, threshold=0.9).score.tolist()
    [1.0]
    """

    kind = "threads"

    def dice(self, a: np.ndarray, b: np.ndarray, *, threshold: float) -> Candidates:
        """:func:`~oda_fed.matching.dice_candidates` of ``a`` against ``b``."""
        return dice_candidates(a, b, threshold=threshold)

    def best_two(
        self, a: np.ndarray, b: np.ndarray, *, threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`~oda_fed.matching.candidates.best_two_scores` of ``a`` against ``b``."""
        return best_two_scores(a, b, threshold=threshold)

    def token_pairs(
        self, a: Evidence, b: Evidence, rules: Sequence[tuple[str, ...]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pairs whose keyed tokens agree on a rule (:func:`~.probabilistic.token_pairs`)."""
        return fs.token_pairs(a, b, rules)

    def levels(
        self,
        comparisons: Sequence[fs.Comparison],
        a: Evidence,
        b: Evidence,
        left: np.ndarray,
        right: np.ndarray,
    ) -> np.ndarray:
        """Each candidate's comparison levels (:func:`~.probabilistic.comparison_levels`)."""
        return fs.comparison_levels(comparisons, a, b, left, right)

    def join(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        params: LshParams,
        max_block: int | None,
        ratio: tuple[int, int],
        progress: BandProgress | None = None,
    ) -> _Join:
        """The LSH join of every band (:func:`~oda_fed.matching.blocking.blocked_candidates`)."""
        return _join(a, b, params=params, max_block=max_block, ratio=ratio, progress=progress)

    def level_counts(
        self,
        comparisons: Sequence[fs.Comparison],
        a: Evidence,
        b: Evidence,
        left: np.ndarray,
        right: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' distinct level patterns and how many have each
        (:func:`~.probabilistic.distinct_rows` of :meth:`levels`): all that a count needs."""
        levels = fs.comparison_levels(comparisons, a, b, left, right)
        return fs.distinct_rows(levels, [len(c.labels) for c in comparisons])

    def resolve(
        self,
        sizes: Sequence[int],
        pairs: Sequence[PairCandidates],
        *,
        one_per_source: bool = True,
        trusted_from: float | None = None,
    ) -> Clustering:
        """Entities from the candidates (:func:`~oda_fed.matching.solve.resolve`)."""
        return resolve(sizes, pairs, one_per_source=one_per_source, trusted_from=trusted_from)

    def close(self) -> None:
        """Release what the executor holds (nothing, here)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor(Executor):
    """Runs candidate work as units on a Dask cluster (see the module docstring).

    Open one with :func:`open_executor`. ``units`` collects every finished unit's
    :class:`~oda_fed.matching.units.Done` (its cost, never its result), for benchmarks.
    """

    kind = "dask"
    #: Fewest edges a unit of resolution gets: below, shipping them costs more than merging.
    min_unit_edges = MIN_UNIT_EDGES

    def __init__(self, client: Any, *, shared_dir: Path, cluster: Any = None,
                 bands_per_unit: int = BANDS_PER_UNIT, threads: int = 0) -> None:  # fmt: skip
        self.client = client
        #: The scheduler's address, kept for messages after the client is closed.
        self.address: str = client.scheduler.address
        self.shared_dir = Path(shared_dir)
        self.cluster = cluster
        self.bands_per_unit = bands_per_unit
        #: Kernel threads per unit (0: all the worker's); a LocalCluster shares the cores out.
        self.threads = threads
        self.units: list[tuple[str, Done]] = []
        #: Fewest candidates a unit of comparison levels gets: below, shipping the evidence
        #: costs more than the comparisons.
        self.min_unit_pairs = MIN_UNIT_PAIRS
        #: Fewest left rows a unit merging LSH or token pairs gets (see shuffle.parts_for).
        self.min_merge_rows = shuffle.MIN_MERGE_ROWS

    def workers(self) -> int:
        """Workers the scheduler knows now (at least 1)."""
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def dice(self, a: np.ndarray, b: np.ndarray, *, threshold: float) -> Candidates:
        spans = self._spans(len(a))
        if len(spans) < 2:  # nothing to share out
            return dice_candidates(a, b, threshold=threshold)
        parts: list[Candidates] = [dice_candidates(a[:0], b[:0], threshold=threshold)] * len(spans)
        with self._shared({"a": a, "b": b}) as paths:
            path_a, path_b = paths["a"], paths["b"]
            t = self.threads
            calls = [(dice_rows, path_a, path_b, lo, hi, float(threshold), t) for lo, hi in spans]
            self._run("dice rows", calls, take=parts.__setitem__)
        left = np.concatenate([p.left for p in parts])
        right = np.concatenate([p.right for p in parts])
        score = np.concatenate([p.score for p in parts])
        # The documented order: score descending, then left, then right.
        order = np.lexsort((right, left, -score))
        return Candidates(left=left[order], right=right[order], score=score[order])

    def best_two(
        self, a: np.ndarray, b: np.ndarray, *, threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        spans = self._spans(len(b))
        if len(spans) < 2:
            return best_two_scores(a, b, threshold=threshold)
        parts: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(spans)
        with self._shared({"a": a, "b": b}) as paths:
            path_a, path_b = paths["a"], paths["b"]
            t = self.threads
            calls = [(best_two_of_rows, path_a, path_b, lo, hi, float(threshold), t)
                     for lo, hi in spans]  # fmt: skip
            self._run("best two scores", calls, take=parts.__setitem__)
        # Each row's two highest of its blocks' best and second scores: the same two as over
        # all rows at once (NaN, none, sorts last).
        every = np.concatenate([np.stack(p, axis=1) for p in parts], axis=1)
        top = -np.sort(-every, axis=1)[:, :2]  # descending, NaN last
        return top[:, 0].copy(), top[:, 1].copy()

    def token_pairs(
        self, a: Evidence, b: Evidence, rules: Sequence[tuple[str, ...]]
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(rules) < 2 or not len(a) or not len(b):
            return fs.token_pairs(a, b, rules)
        return self._token_pairs_shuffled(a, b, rules)

    def _token_pairs_shuffled(
        self, a: Evidence, b: Evidence, rules: Sequence[tuple[str, ...]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A rule per unit, their pairs merged on the workers in the order
        :func:`~.probabilistic.merge_rule_pairs` gives (:mod:`.shuffle`)."""
        arrays = {("a", k): v for k, v in a.tokens.items()}
        arrays.update({("b", k): v for k, v in b.tokens.items()})
        if not arrays:  # no rule finds a pair, and no folder to shuffle in
            return fs.token_pairs(a, b, rules)
        found: list[Any] = [None] * len(rules)
        width = max(len(b), 1)  # as merge_rule_pairs keys a pair
        with self._shared(arrays) as paths:  # the token columns only, never the filters
            side_a = {k: p for (side, k), p in paths.items() if side == "a"}
            side_b = {k: p for (side, k), p in paths.items() if side == "b"}
            folder = os.path.dirname(next(iter(paths.values())))
            at = shuffle.cuts(len(a), self._merges(len(a)), width)
            calls = [(shuffle.token_rule_runs, side_a, side_b, tuple(r), fs.TOKEN_BLOCK, width,
                      shuffle.stem(folder, "map", k), at) for k, r in enumerate(rules)]  # fmt: skip
            self._run("token rules", calls, take=found.__setitem__)
            keys = shuffle.first_keys(self._run, folder, found, what="merge token pairs")
        return keys // width, keys % width

    def levels(
        self,
        comparisons: Sequence[fs.Comparison],
        a: Evidence,
        b: Evidence,
        left: np.ndarray,
        right: np.ndarray,
    ) -> np.ndarray:
        spans = self._spans(len(left), at_least=self.min_unit_pairs)
        if len(spans) < 2:
            return fs.comparison_levels(comparisons, a, b, left, right)
        parts: list[np.ndarray] = [np.empty((0, len(comparisons)), np.int8)] * len(spans)
        with self._shared(_evidence_arrays(a, b, left, right)) as paths:
            sides = _evidence_paths(paths)
            calls = [(comparison_rows, *sides, lo, hi, tuple(comparisons)) for lo, hi in spans]
            self._run("comparison levels", calls, take=parts.__setitem__)
        return np.concatenate(parts)

    def level_counts(
        self,
        comparisons: Sequence[fs.Comparison],
        a: Evidence,
        b: Evidence,
        left: np.ndarray,
        right: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        # A map-reduce: each unit counts its candidates' patterns; integer sums here.
        spans = self._spans(len(left), at_least=self.min_unit_pairs)
        if len(spans) < 2:
            return super().level_counts(comparisons, a, b, left, right)
        parts: list[Any] = [None] * len(spans)
        with self._shared(_evidence_arrays(a, b, left, right)) as paths:
            sides = _evidence_paths(paths)
            calls = [(comparison_counts, *sides, lo, hi, tuple(comparisons)) for lo, hi in spans]
            self._run("level counts", calls, take=parts.__setitem__)
        return fs.add_counts(parts, [len(c.labels) for c in comparisons])

    def resolve(
        self,
        sizes: Sequence[int],
        pairs: Sequence[PairCandidates],
        *,
        one_per_source: bool = True,
        trusted_from: float | None = None,
    ) -> Clustering:
        # Deduplication, the order and the trusted level need all edges: they stay here.
        edges = ordered_edges(sizes, pairs, one_per_source=one_per_source,
                              trusted_from=trusted_from)  # fmt: skip
        units = len(self._spans(len(edges.score), at_least=self.min_unit_edges))
        order, spans = component_units(edges, units) if units > 1 else (None, [])
        if len(spans) < 2:  # one unit, or one component holds nearly all edges
            return merge_all(edges)
        parts: list[Any] = [None] * len(spans)
        arrays = {"a": edges.node_a[order], "b": edges.node_b[order], "score": edges.score[order]}
        with self._shared(arrays) as paths:
            calls = [(resolve_components, paths["a"], paths["b"], paths["score"], lo, hi,
                      edges.offsets.tolist(), edges.one_per_source, edges.level)
                     for lo, hi in spans]  # fmt: skip
            self._run("resolution components", calls, take=parts.__setitem__)
        return assemble(edges, parts)

    def _spans(self, n: int, *, at_least: int = 1) -> list[tuple[int, int]]:
        rows = max(at_least, math.ceil(n / (UNITS_PER_WORKER * self.workers())))
        return [(lo, min(lo + rows, n)) for lo in range(0, n, rows)]

    def join(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        params: LshParams,
        max_block: int | None,
        ratio: tuple[int, int],
        progress: BandProgress | None = None,
    ) -> _Join:
        if len(a) == 0 or len(b) == 0 or params.bands <= 1:
            return _join(a, b, params=params, max_block=max_block, ratio=ratio, progress=progress)
        return self._join_shuffled(a, b, params=params, max_block=max_block, ratio=ratio,
                                   progress=progress)  # fmt: skip

    def _join_shuffled(self, a: np.ndarray, b: np.ndarray, *, params: LshParams,
                       max_block: int | None, ratio: tuple[int, int],
                       progress: BandProgress | None) -> _Join:  # fmt: skip
        """The bands in spans, their keys merged on the workers (:mod:`.shuffle`)."""
        step = self.bands_per_unit
        spans = [(lo, min(lo + step, params.bands)) for lo in range(0, params.bands, step)]
        found: list[Any] = [None] * len(spans)
        bands = [0]

        def take(k: int, part: tuple[list[int], _Join]) -> None:
            found[k] = part  # counts and figures: the keys stay in the shared folder
            bands[0] += spans[k][1] - spans[k][0]
            if progress is not None:
                progress(bands[0], params.bands)

        with self._shared({"a": a, "b": b}) as paths:
            path_a, path_b = paths["a"], paths["b"]
            folder = os.path.dirname(path_a)
            right_bits = max(len(b) - 1, 0).bit_length()
            at = shuffle.cuts(len(a), self._merges(len(a)), 1 << right_bits)
            calls = [(shuffle.lsh_bands_runs, path_a, path_b, params, lo, hi, max_block, ratio,
                      self.threads, shuffle.stem(folder, "map", k), at)
                     for k, (lo, hi) in enumerate(spans)]  # fmt: skip
            self._run("LSH bands", calls, take=take)
            keys = shuffle.merged_keys(self._run, folder, [c for c, _ in found],
                                       what="merge LSH pairs")  # fmt: skip
        check_candidate_count(len(keys), num=ratio[0], den=ratio[1])
        # The figures add up as merge_joins adds them; the keys are already merged.
        return replace(merge_joins([j for _, j in found], ratio=ratio), keys=keys)

    def _merges(self, n_left: int) -> int:
        return shuffle.parts_for(n_left, workers=self.workers(), min_rows=self.min_merge_rows)

    @contextmanager
    def _shared(self, arrays: dict[Any, np.ndarray]):
        """``arrays`` (CLKs, token columns) as files every worker sees, by name, in a private
        folder removed afterwards (the workers close their maps of it first)."""
        try:
            self.shared_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="clks-", dir=self.shared_dir)  # mode 0700
        except OSError as exc:
            raise ClusterError(
                f"cannot write CLKs for the Dask workers under {self.shared_dir} ({exc}): set a "
                "shared folder every worker can read"
            ) from None
        try:
            paths: dict[str, str] = {}
            saved: dict[int, str] = {}  # one file for an array given twice (a source with itself)
            for k, (name, array) in enumerate(arrays.items()):
                if id(array) not in saved:
                    saved[id(array)] = os.path.join(folder, f"{k}.npy")
                    np.save(saved[id(array)], np.ascontiguousarray(array))
                paths[name] = saved[id(array)]
            yield paths
        finally:
            # A dead cluster's maps went with it.
            with contextlib.suppress(Exception):
                self.client.run(forget, folder)
            shutil.rmtree(folder, ignore_errors=True)

    def _run(self, what: str, calls: list[tuple], *, take: Callable[[int, Any], None]) -> None:
        """Submit ``calls`` (function, arguments) and hand each result to ``take`` with its
        place in ``calls`` as it arrives; unit costs go to :attr:`units`."""
        from distributed import as_completed

        futures = []
        try:
            futures = [self.client.submit(f, *args, pure=False) for f, *args in calls]
            place = {f.key: k for k, f in enumerate(futures)}
            for future in as_completed(futures):
                done: Done = future.result()
                future.release()  # the worker may drop its copy now
                take(place[future.key], done.result)
                # Costs only: the result went to take(), not into this record.
                self.units.append((what, replace(done, result=None)))
        except (OSError, TimeoutError) as exc:
            raise ClusterError(_lost(what, exc)) from None
        except Exception as exc:
            if type(exc).__module__.startswith("distributed"):  # KilledWorker, CommClosedError
                raise ClusterError(_lost(what, exc)) from None
            raise
        finally:
            if futures:
                self.client.cancel(futures)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _evidence_arrays(a: Evidence, b: Evidence, left: np.ndarray, right: np.ndarray) -> dict:
    """Both sides' field evidence and the candidates, to share with the workers."""
    arrays: dict[Any, np.ndarray] = {"left": left, "right": right}
    for side, ev in (("a", a), ("b", b)):
        arrays.update({(side, "filters", k): v for k, v in ev.filters.items()})
        arrays.update({(side, "tokens", k): v for k, v in ev.tokens.items()})
    return arrays


def _evidence_paths(paths: dict[Any, str]) -> tuple:
    """The shared :func:`_evidence_arrays`' files as a comparison unit takes them: each side's
    ``(filters, tokens)``, name to file, then the left and right candidates' files."""

    def side(name: str) -> tuple[dict[str, str], dict[str, str]]:
        of = {kind: {k[2]: p for k, p in paths.items() if k[:2] == (name, kind)}
              for kind in ("filters", "tokens")}  # fmt: skip
        return of["filters"], of["tokens"]

    return side("a"), side("b"), paths["left"], paths["right"]


def _lost(what: str, exc: BaseException) -> str:
    return (
        f"the Dask cluster failed while matching ({what}: {type(exc).__name__}: {exc}); the "
        "round stays unmatched: check the workers' memory and logs, then match it again"
    )


def check_address(address: str, *, what: str) -> str:
    """``address`` if it names a scheduler or a local cluster, as ``dask_scheduler`` takes it.

    Examples
    --------
    >>> check_address("local:4", what="--dask")
    'local:4'
    """
    if not re.fullmatch(ADDRESS, address):
        raise ConfigError(
            f"{what} '{address}' is not a Dask scheduler (tcp://HOST:PORT, tls://HOST:PORT) or "
            "local[:N]"
        )
    return address


def open_executor(
    address: str | None,
    *,
    shared_dir: Path | None = None,
    tls: tuple[Path, Path, Path] | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Executor:
    """The executor for ``address``: None runs in this process; ``"local"`` or ``"local:N"``
    starts a Dask ``LocalCluster`` of N worker processes (default 2) on this machine; anything
    else (``tcp://host:8786``, ``tls://…``) is a running scheduler. ``tls`` is the client's
    ``(CA, certificate, key)`` files for a ``tls://`` scheduler, whose workers must present
    certificates from that CA. ``shared_dir`` (default: a folder in the system's temporary
    folder) must be a path every worker sees.

    Raises
    ------
    ClusterError
        ``distributed`` is not installed, or the scheduler does not answer within ``timeout``.
    """
    if address is None:
        return Executor()
    if address.startswith("tls://") and tls is None:
        raise ClusterError(
            f"{address}: a tls:// scheduler needs a client certificate; name it as the "
            "coordinator's dask_scheduler, which uses the coordinator's [tls] files"
        )
    try:
        from distributed import Client, LocalCluster, Security
    except ImportError:
        raise ClusterError(
            f"matching on a Dask cluster ({address}) needs the 'distributed' package: {_INSTALL}"
        ) from None
    folder = (
        Path(shared_dir)
        if shared_dir is not None
        else Path(tempfile.gettempdir()) / (f"oda-fed-dask-{os.getuid()}")
    )
    cluster, workers = None, 0
    try:
        if address == "local" or address.startswith("local:"):
            workers = int(address.partition(":")[2] or 2)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)  # fmt: skip
            client = Client(cluster, timeout=timeout)
        else:
            security = None
            if tls is not None:
                ca, cert, key = (str(p) for p in tls)
                security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                                    require_encryption=True)  # fmt: skip
            client = Client(address, security=security, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} ({exc}): start it (dask scheduler), "
            "or fix dask_scheduler / --dask; the round stays unmatched until then"
        ) from None
    # On one machine, each worker's kernels get an equal share of the cores, not all of them.
    threads = max(1, (os.cpu_count() or 1) // workers) if cluster is not None else 0
    return DaskExecutor(client, shared_dir=folder, cluster=cluster, threads=threads)
