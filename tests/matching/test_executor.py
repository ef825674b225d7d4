"""Matching on a Dask cluster gives what matching in this process gives, exactly.

Every unit type runs on a real ``distributed.LocalCluster`` of 2 worker processes (the session's
``dask_executor``): all-pairs row blocks, LSH band spans, and both linkage pipelines built on
them (CLK-only with keyed tokens, and field evidence with EM).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding.evidence import Evidence
from oda_fed.errors import ClusterError, ConfigError
from oda_fed.matching import (
    Candidates,
    PairCandidates,
    dice_candidates,
    resolve,
    shuffle,
    threshold_ratio,
)
from oda_fed.matching.blocking import Blocking, LshParams, _Join, _join, blocked_candidates
from oda_fed.matching.candidates import best_two_scores
from oda_fed.matching.executor import DaskExecutor, Executor, check_address, open_executor
from oda_fed.matching.link import link_clks, link_with_quality
from oda_fed.matching.settings import LinkSettings
from oda_fed.matching.units import Done

WORDS = 16


def _words(rng: np.random.Generator, n: int, ands: int) -> np.ndarray:
    out = rng.integers(0, 2**64, size=(n, WORDS), dtype=np.uint64)
    for _ in range(ands - 1):
        out &= rng.integers(0, 2**64, size=(n, WORDS), dtype=np.uint64)
    return out


def _sources(rng: np.random.Generator, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Random CLKs at fill 7/16, each source after the first holding noisy copies of half of
    the first's records (some nearly equal, some near the threshold), and exact duplicates, so
    that ties and repeated scores occur."""
    first = _words(rng, sizes[0], 2) | _words(rng, sizes[0], 2)
    first[1::50] = first[::50][: len(first[1::50])]  # duplicates: equal scores to break ties
    out = [first]
    for n in sizes[1:]:
        side = _words(rng, n, 2) | _words(rng, n, 2)
        rows = rng.choice(len(first), size=n // 2, replace=False)
        noise = np.where((np.arange(n // 2) % 2)[:, None] == 0, 5, 3)
        side[: n // 2] = first[rows] ^ np.where(
            noise == 5, _words(rng, n // 2, 5), _words(rng, n // 2, 3)
        )
        out.append(side[rng.permutation(n)])
    return out


def _same(x: Candidates, y: Candidates) -> bool:
    return all(
        np.array_equal(p, q)
        for p, q in zip((x.left, x.right, x.score), (y.left, y.right, y.score), strict=True)
    )


def test_all_pairs_row_blocks_give_the_same_candidates_in_the_same_order(
    executor: Executor, rng: np.random.Generator
) -> None:
    a, b = _sources(rng, (1200, 900))
    found = executor.dice(a, b, threshold=0.47)
    assert len(found) > 10_000  # non-trivial: many pairs, ties included
    assert _same(found, dice_candidates(a, b, threshold=0.47))


def test_best_two_scores_over_blocks_of_the_other_side_are_the_same(
    executor: Executor, rng: np.random.Generator
) -> None:
    a, b = _sources(rng, (1000, 900))
    for threshold in (0.47, 0.9):  # many scores per row; most rows with none or one
        got = executor.best_two(a[:400], b, threshold=threshold)
        want = best_two_scores(a[:400], b, threshold=threshold)
        assert np.isnan(want[1]).any() == (threshold == 0.9)
        for x, y in zip(got, want, strict=True):
            assert np.array_equal(x, y, equal_nan=True)


def test_lsh_band_spans_give_the_same_candidates_and_figures(
    executor: Executor, rng: np.random.Generator
) -> None:
    a, b = _sources(rng, (2000, 1600))
    params = LshParams(bands=23, bits_per_band=12, seed=3)  # spans of 4, the last shorter
    here, stats = blocked_candidates(a, b, threshold=0.75, params=params, max_block=12)
    there, spread = blocked_candidates(a, b, threshold=0.75, params=params, max_block=12,
                                       executor=executor)  # fmt: skip
    assert len(here) > 500 and stats.blocks_skipped > 0
    assert _same(there, here)
    assert spread == stats


def test_clk_linkage_with_tokens_and_lsh_links_the_same_entities(
    executor: Executor, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(executor, DaskExecutor):  # resolution per connected component too
        monkeypatch.setattr(executor, "min_unit_edges", 1)
    clks = _sources(rng, (900, 700, 500))
    tokens = [{"nhs": [f"n{k % 97}" if k % 3 else None for k in range(len(c))]} for c in clks]
    for blocking in (Blocking(method="lsh"), Blocking(method="none")):
        settings = LinkSettings(threshold=0.8, blocking=blocking)
        want = link_with_quality(clks, settings=settings, tokens=tokens)
        got = link_with_quality(clks, settings=settings, tokens=tokens, executor=executor)
        assert got.threshold == want.threshold
        assert np.array_equal(got.best_scores, want.best_scores)  # the quality pass
        assert got.blocking == want.blocking and got.conflicts == want.conflicts
        for x, y in zip(got.clustering.labels, want.clustering.labels, strict=True):
            assert np.array_equal(x, y)
    plain = link_clks(clks, threshold=0.8, executor=executor)
    assert plain.labels[0].tolist() == link_clks(clks, threshold=0.8).labels[0].tolist()


def test_field_linkage_gives_the_same_weights_entities_and_estimate(
    executor: Executor, field_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    clks, evidence, settings = field_sources
    if isinstance(executor, DaskExecutor):  # levels, EM's counts and resolution in units too
        monkeypatch.setattr(executor, "min_unit_pairs", 1_000)
        monkeypatch.setattr(executor, "min_unit_edges", 1)
        before = len(executor.units)
    want = link_with_quality(clks, settings=settings, evidence=evidence)
    got = link_with_quality(clks, settings=settings, evidence=evidence, executor=executor)
    assert got.model is not None and want.model is not None
    assert got.model.to_json() == want.model.to_json()  # EM's parameters
    assert (got.model.iterations, got.model.converged, got.model.split) == (
        want.model.iterations, want.model.converged, want.model.split)  # fmt: skip
    if isinstance(executor, DaskExecutor):
        done = {what for what, _ in executor.units[before:]}
        assert {"level counts", "comparison levels", "resolution components"} <= done
    assert got.blocking == want.blocking
    assert np.array_equal(got.best_scores, want.best_scores)
    for x, y in zip(got.clustering.labels, want.clustering.labels, strict=True):
        assert np.array_equal(x, y)


def test_comparison_levels_in_units_of_candidates_are_the_same(
    executor: Executor, field_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each candidate's levels, computed by a worker from both sides' evidence in the shared
    folder, in candidate order; none of it left there afterwards."""
    from oda_fed.encoding.fields import FieldEncoding
    from oda_fed.matching import probabilistic as fs

    _, evidence, settings = field_sources
    comparisons = fs.comparisons_for([FieldEncoding(n, t) for n, t in settings.fields])
    left, right = fs.token_pairs(evidence[0], evidence[1], fs.blocking_rules(comparisons))
    assert len(left) > 1000
    if isinstance(executor, DaskExecutor):
        monkeypatch.setattr(executor, "min_unit_pairs", 100)
        before = len(executor.units)
    got = executor.levels(comparisons, evidence[0], evidence[1], left, right)
    want = fs.comparison_levels(comparisons, evidence[0], evidence[1], left, right)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    if isinstance(executor, DaskExecutor):
        done = [what for what, _ in executor.units[before:]]
        assert done.count("comparison levels") >= 2
        assert not any(executor.shared_dir.iterdir())


def test_level_pattern_counts_are_a_map_reduce_with_the_same_counts(
    executor: Executor, field_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unit counts its candidates' level patterns; the sums are the counts of all rows,
    and u and the household tables from them are those of the rows, bit for bit."""
    from oda_fed.encoding.fields import FieldEncoding
    from oda_fed.matching import probabilistic as fs

    _, evidence, settings = field_sources
    comparisons = fs.comparisons_for([FieldEncoding(n, t) for n, t in settings.fields])
    n_levels = [len(c.labels) for c in comparisons]
    left, right = fs.token_pairs(evidence[0], evidence[1], fs.blocking_rules(comparisons))
    if isinstance(executor, DaskExecutor):
        monkeypatch.setattr(executor, "min_unit_pairs", 100)
        before = len(executor.units)
    patterns, counts = executor.level_counts(comparisons, evidence[0], evidence[1], left, right)
    levels = fs.comparison_levels(comparisons, evidence[0], evidence[1], left, right)
    want = fs.distinct_rows(levels, n_levels)
    assert patterns.dtype == levels.dtype and counts.dtype == np.int64
    assert np.array_equal(patterns, want[0]) and np.array_equal(counts, want[1])
    assert len(patterns) > 10 and counts.sum() == len(levels)
    for x, y in zip(fs.estimate_u(patterns, n_levels, counts=counts), fs.estimate_u(levels, n_levels),
                    strict=True):  # fmt: skip
        assert np.array_equal(x, y)
    assert np.array_equal(fs.presence(patterns, counts), (levels != fs.NULL).mean(axis=0))
    u = fs.estimate_u(levels, n_levels)
    tables = fs.household(comparisons, patterns, u, counts=counts)
    assert tables is not None
    for x, y in zip(tables, fs.household(comparisons, levels, u), strict=True):
        assert np.array_equal(x, y)
    if isinstance(executor, DaskExecutor):
        done = [what for what, _ in executor.units[before:]]
        assert done.count("level counts") >= 2
        assert not any(executor.shared_dir.iterdir())


def test_token_rules_give_the_same_pairs_in_the_same_order(
    executor: Executor, field_sources
) -> None:
    from oda_fed.encoding.fields import FieldEncoding
    from oda_fed.matching import probabilistic as fs

    _, evidence, settings = field_sources
    rules = fs.blocking_rules(fs.comparisons_for([FieldEncoding(n, t) for n, t in settings.fields]))
    assert len(rules) > 2
    got = executor.token_pairs(evidence[0], evidence[1], rules)
    want = fs.token_pairs(evidence[0], evidence[1], rules)
    assert len(want[0]) > 1000
    assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))


def _multiparty(rng: np.random.Generator, sizes: list[int], per_pair: int) -> list[PairCandidates]:
    """Random edges between every pair of sources, both ways round, with few distinct scores
    (ties) and repeated record pairs: many small components and contested edges."""
    pairs = []
    for i, j in itertools.permutations(range(len(sizes)), 2):
        if not sizes[i] or not sizes[j]:
            continue
        found = Candidates(left=rng.integers(0, sizes[i], per_pair),
                           right=rng.integers(0, sizes[j], per_pair),
                           score=rng.choice([0.7, 0.8, 0.9, 1.0], per_pair))  # fmt: skip
        pairs.append(PairCandidates(source_a=i, source_b=j, candidates=found))
    return pairs


@pytest.mark.parametrize("one_per_source", [True, False])
def test_resolution_per_connected_component_gives_the_same_entities(
    executor: Executor, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
    one_per_source: bool,
) -> None:  # fmt: skip
    sizes = [300, 250, 0, 200, 150]
    pairs = _multiparty(rng, sizes, 40)
    if isinstance(executor, DaskExecutor):
        monkeypatch.setattr(executor, "min_unit_edges", 1)
        before = len(executor.units)
    for trusted_from in (None, math.inf, -math.inf):
        want = resolve(sizes, pairs, one_per_source=one_per_source, trusted_from=trusted_from)
        got = executor.resolve(sizes, pairs, one_per_source=one_per_source,
                               trusted_from=trusted_from)  # fmt: skip
        assert got.n_entities == want.n_entities and got.trusted_from == want.trusted_from
        assert 0 < want.n_entities < sum(sizes)
        for x, y in zip(got.labels + got.scores, want.labels + want.scores, strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
    if isinstance(executor, DaskExecutor):
        done = [what for what, _ in executor.units[before:]]
        assert done.count("resolution components") >= 3 * 2  # each call in several units
        assert not any(executor.shared_dir.iterdir())


@pytest.fixture(scope="module")
def field_sources(tmp_path_factory: pytest.TempPathFactory, synth_folder):
    """Three partners' encoded synth records with their field evidence, linked by the
    project's default method (field evidence, EM), all pairs scored in units."""
    from oda_fed.config import load_project
    from oda_fed.embedded import encode_files
    from oda_fed.linkage import settings_for

    folder = synth_folder(tmp_path_factory.mktemp("synth"), population=1500, partners=3,
                          seed=5, errors="medium")  # fmt: skip
    loaded = load_project(folder / "project.toml")
    paths = sorted(p for p in folder.glob("*.csv") if p.stem != "truth")
    extracts = encode_files(paths, project=loaded, secret=b"k" * 32)
    settings = settings_for(loaded.project.linkage)
    assert settings.method == "fields"
    return (
        [e.clks for e in extracts.values()],
        [e.evidence for e in extracts.values()],
        settings,
    )


@contextmanager
def _runs(executor: DaskExecutor, per_worker: int) -> Iterator[None]:
    """Pairs merged in ``per_worker`` runs of left rows for each of 2 workers, however few the
    rows. The count is pinned: a worker of the shared cluster can be missing for a moment under a
    busy suite, and the units' count (not their result) follows the workers the scheduler knows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executor, "min_merge_rows", 1)
        patch.setattr(executor, "workers", lambda: 2)
        patch.setattr(shuffle, "MERGES_PER_WORKER", per_worker)
        yield


def _merges(executor: DaskExecutor, before: int, what: str) -> list[Done]:
    """The merge units run since ``before``; the shared folder is empty again."""
    assert not any(executor.shared_dir.iterdir())
    return [d for w, d in executor.units[before:] if w == what]


def _same_join(x: _Join, y: _Join) -> bool:
    return x.keys.dtype == y.keys.dtype and np.array_equal(x.keys, y.keys) and all(
        getattr(x, f) == getattr(y, f) for f in vars(x) if f != "keys"
    )  # fmt: skip


def _skewed(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Only the last eighth of the left rows have a match: every pair in the last run."""
    a = _sources(rng, (800,))[0]
    b = a[700:] ^ _words(rng, 100, 6)
    return a, np.ascontiguousarray(b)


@pytest.mark.parametrize("case", ["several", "itself", "skewed"])
def test_lsh_pairs_merged_by_runs_of_left_rows_are_the_same_keys_and_figures(
    dask_executor: DaskExecutor, rng: np.random.Generator, case: str
) -> None:
    """Each run merged by a unit of its own, empty runs skipped; the figures (pairs scored,
    blocks skipped, largest block) as in this process."""
    if case == "several":
        a, b = _sources(rng, (900, 700))
    elif case == "skewed":
        a, b = _skewed(rng)
    else:
        a = b = _sources(rng, (900,))[0]
    params, ratio = LshParams(bands=11, bits_per_band=8, seed=3), threshold_ratio(0.75, words=WORDS)
    want = _join(a, b, params=params, max_block=12, ratio=ratio)
    before = len(dask_executor.units)
    with _runs(dask_executor, per_worker=4):  # 8 runs of left rows
        got = dask_executor.join(a, b, params=params, max_block=12, ratio=ratio)
    assert len(want.keys) > 100 and want.blocks_skipped > 0
    assert _same_join(got, want)
    merges = _merges(dask_executor, before, "merge LSH pairs")
    runs = np.unique(np.searchsorted(shuffle.cuts(len(a), 8, 1), want.keys >> want.right_bits,
                                     side="right"))  # the runs holding pairs  # fmt: skip
    assert len(merges) == len(runs) == (1 if case == "skewed" else 8)
    assert all(d.seconds > 0 and d.peak_rss > 0 for d in merges)  # what each cost


@settings(max_examples=15, deadline=None)
@given(data=st.data(), bands=st.integers(2, 9), threshold=st.sampled_from([0.3, 0.5, 0.8, 1.0]))
def test_lsh_pairs_merged_by_runs_are_the_same_on_any_small_input(
    dask_executor: DaskExecutor, clk_pairs, data: st.DataObject, bands: int, threshold: float
) -> None:
    a, b = data.draw(clk_pairs)
    if data.draw(st.booleans()):
        b = a  # a source with itself: one file
    params = LshParams(bands=bands, bits_per_band=3, seed=bands)
    ratio = threshold_ratio(threshold, words=a.shape[1])
    with _runs(dask_executor, per_worker=data.draw(st.integers(1, 3))):
        got = dask_executor.join(a, b, params=params, max_block=20, ratio=ratio)
    assert _same_join(got, _join(a, b, params=params, max_block=20, ratio=ratio))
    assert not any(dask_executor.shared_dir.iterdir())


def test_token_pairs_merged_by_runs_keep_their_order_of_first_appearance(
    dask_executor: DaskExecutor, field_sources
) -> None:
    from oda_fed.encoding.fields import FieldEncoding
    from oda_fed.matching import probabilistic as fs

    _, evidence, settings = field_sources
    rules = fs.blocking_rules(fs.comparisons_for([FieldEncoding(n, t) for n, t in settings.fields]))
    want = fs.token_pairs(evidence[0], evidence[1], rules)
    before = len(dask_executor.units)
    with _runs(dask_executor, per_worker=3):  # 6 runs of left rows, then of places
        got = dask_executor.token_pairs(evidence[0], evidence[1], rules)
    assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))
    assert not np.all(np.diff(want[0]) >= 0)  # not in order of rows: the order is kept
    assert len(_merges(dask_executor, before, "merge token pairs")) == 2 * 6


_TOKENS = ["x", "y", "f:1", "f:2"]
_RULES = [("x",), ("f:*",), ("x", "y"), ("y|f:1",), ("z",), ("y",)]


@st.composite
def _evidence(draw: st.DrawFn) -> Evidence:
    n = draw(st.integers(1, 12))
    values = st.lists(st.integers(0, 3), min_size=n, max_size=n)
    return Evidence(filters={}, tokens={t: np.array(draw(values), np.uint64) for t in _TOKENS})


@settings(max_examples=15, deadline=None)
@given(a=_evidence(), b=_evidence(), rules=st.permutations(_RULES), per_worker=st.integers(1, 3))
def test_token_pairs_merged_by_runs_are_the_same_on_any_small_input(
    dask_executor: DaskExecutor, a: Evidence, b: Evidence, rules: list, per_worker: int
) -> None:
    """Few values, so that most pairs agree on several rules; a rule (z) without its tokens."""
    from oda_fed.matching import probabilistic as fs

    with _runs(dask_executor, per_worker=per_worker):
        got = dask_executor.token_pairs(a, b, rules)
    want = fs.token_pairs(a, b, rules)
    assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(got, want, strict=True))
    assert not any(dask_executor.shared_dir.iterdir())


def test_a_merge_unit_that_fails_is_a_cluster_error(
    dask_executor: DaskExecutor, tmp_path: Path
) -> None:
    """A reduce unit whose run is gone (the shared folder lost under it) stops the round."""
    with pytest.raises(ClusterError, match="merge LSH pairs: FileNotFoundError"):
        shuffle.merged_keys(dask_executor._run, str(tmp_path), [[0, 3]], what="merge LSH pairs")


def test_the_shared_folder_is_private_and_emptied_after_each_pair(
    dask_executor: DaskExecutor, rng: np.random.Generator
) -> None:
    a, b = _sources(rng, (300, 300))
    dask_executor.dice(a, b, threshold=0.7)
    folder = dask_executor.shared_dir
    assert folder.stat().st_mode & 0o077 == 0
    assert list(folder.iterdir()) == []  # the CLKs are gone once their units are done
    assert dask_executor.units and all(d.result is None for _, d in dask_executor.units)


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        open_executor("tcp://127.0.0.1:9", shared_dir=tmp_path, timeout=1)


def test_a_missing_distributed_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ClusterError, match=r"oda-fed\[cluster\]"):
        open_executor("tcp://127.0.0.1:8786", shared_dir=tmp_path)
    assert isinstance(open_executor(None), Executor)  # without a cluster nothing needs it


def test_a_worker_dying_is_a_clear_error(tmp_path: Path) -> None:
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        open_executor("local:1", shared_dir=tmp_path) as executor,
    ):
        assert isinstance(executor, DaskExecutor)
        with pytest.raises(ClusterError, match="a Dask worker died|cluster failed"):
            executor._run("test", [(os._exit, 1)], take=lambda k, r: None)


@pytest.mark.parametrize("address", ["10.0.0.5:8786", "http://x:1", "local:0", "local:x"])
def test_an_address_that_names_no_scheduler_is_a_config_error(address: str) -> None:
    with pytest.raises(ConfigError, match="not a Dask scheduler"):
        check_address(address, what="--dask")


def test_a_tls_scheduler_is_reached_with_the_partnership_s_certificates(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from distributed import LocalCluster, Security

    from oda_fed.pki import init_ca, issue

    init_ca(tmp_path / "ca")
    ca = tmp_path / "ca" / "ca.crt"
    mine = issue(ca_dir=tmp_path / "ca", name="coordinator", role="coordinator",
                 out_dir=tmp_path / "c", hosts=["127.0.0.1"])  # fmt: skip
    cert, key = (str(p) for p in issue(ca_dir=tmp_path / "ca", name="dask", role="coordinator",
                                       out_dir=tmp_path / "d", hosts=["127.0.0.1"]))  # fmt: skip
    security = Security(tls_ca_file=str(ca), tls_scheduler_cert=cert, tls_scheduler_key=key,
                        tls_worker_cert=cert, tls_worker_key=key, tls_client_cert=cert,
                        tls_client_key=key, require_encryption=True)  # fmt: skip
    a, b = _sources(rng, (400, 300))
    with LocalCluster(n_workers=1, threads_per_worker=1, protocol="tls://", security=security,
                      dashboard_address=None) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        with pytest.raises(ClusterError, match="needs a client certificate"):
            open_executor(address, shared_dir=tmp_path / "s")
        with open_executor(address, shared_dir=tmp_path / "s", tls=(ca, *mine)) as executor:
            found = executor.dice(a, b, threshold=0.47)
        assert _same(found, dice_candidates(a, b, threshold=0.47))
