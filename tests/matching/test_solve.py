"""resolve: greedy 1-to-1 for two datasets, one record per dataset, the merge rule against a
plain-Python statement of it, determinism, scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.matching import (
    Candidates,
    Clustering,
    MatchingInputError,
    PairCandidates,
    resolve,
)
from oda_fed.matching.solve import component_units, ordered_edges, resolve_by_component


def _pair(source_a: int, source_b: int, edges: list[tuple[int, int, float]]) -> PairCandidates:
    left, right, score = zip(*edges, strict=True) if edges else ((), (), ())
    return PairCandidates(
        source_a=source_a,
        source_b=source_b,
        candidates=Candidates(
            left=np.array(left, dtype=np.int64),
            right=np.array(right, dtype=np.int64),
            score=np.array(score, dtype=np.float64),
        ),
    )


def _random_pair(
    rng: np.random.Generator, *, source_a: int, source_b: int, sizes: list[int], n_edges: int
) -> PairCandidates:
    # Scores from a small set, so ties are frequent and the tie-break order matters.
    return PairCandidates(
        source_a=source_a,
        source_b=source_b,
        candidates=Candidates(
            left=rng.integers(0, sizes[source_a], n_edges),
            right=rng.integers(0, sizes[source_b], n_edges),
            score=rng.choice([0.8, 0.85, 0.9, 0.95, 1.0], n_edges),
        ),
    )


def _greedy_one_to_one(pair: PairCandidates) -> dict[int, tuple[int, float]]:
    """Textbook greedy matching: best score first, ties by (left, right); both ends unused."""
    found = pair.candidates
    edges = sorted(
        zip(found.score.tolist(), found.left.tolist(), found.right.tolist(), strict=True),
        key=lambda e: (-e[0], e[1], e[2]),
    )
    used_left: set[int] = set()
    used_right: set[int] = set()
    matched = {}
    for score, left, right in edges:
        if left not in used_left and right not in used_right:
            used_left.add(left)
            used_right.add(right)
            matched[left] = (right, score)
    return matched


def _assert_same(x: Clustering, y: Clustering) -> None:
    assert x.n_entities == y.n_entities
    assert x.trusted_from == y.trusted_from
    for lx, ly in zip(x.labels, y.labels, strict=True):
        np.testing.assert_array_equal(lx, ly)
    for sx, sy in zip(x.scores, y.scores, strict=True):
        np.testing.assert_array_equal(sx, sy)  # NaN == NaN here


def _assert_numbered_by_first_appearance(result: Clustering) -> None:
    labels = np.concatenate(result.labels)
    _, first = np.unique(labels, return_index=True)
    np.testing.assert_array_equal(labels[np.sort(first)], np.arange(result.n_entities))


@pytest.mark.parametrize("trusted_from", [None, math.inf, -math.inf, 0.9])
@pytest.mark.parametrize("seed", range(5))
def test_two_datasets_is_greedy_one_to_one(seed: int, trusted_from: float | None) -> None:
    # Every merge joins two single records, fully supported by the one edge between them, so
    # the trusted level never matters for two datasets.
    rng = np.random.default_rng(seed)
    sizes = [30, 25]
    pair = _random_pair(rng, source_a=0, source_b=1, sizes=sizes, n_edges=120)
    result = resolve(sizes, [pair], trusted_from=trusted_from)
    matched = _greedy_one_to_one(pair)

    labels_a, labels_b = result.labels
    for left in range(sizes[0]):
        together = np.flatnonzero(labels_b == labels_a[left]).tolist()
        if left in matched:
            right, score = matched[left]
            assert together == [right]
            assert result.scores[0][left] == score
            assert result.scores[1][right] == score
        else:
            assert together == []
            assert math.isnan(result.scores[0][left])
    assert result.n_entities == sum(sizes) - len(matched)
    _assert_numbered_by_first_appearance(result)


def test_three_datasets_never_put_two_records_of_one_dataset_together(
    rng: np.random.Generator,
) -> None:
    sizes = [40, 35, 30]
    pairs = [
        _random_pair(rng, source_a=a, source_b=b, sizes=sizes, n_edges=150)
        for a, b in ((0, 1), (0, 2), (1, 2))
    ]
    result = resolve(sizes, pairs)
    for labels in result.labels:
        assert len(np.unique(labels)) == len(labels)
    # With this many edges the constraint must actually have refused merges: some entity spans
    # all three datasets, and without the constraint there are fewer, larger entities.
    shared = set(result.labels[0]) & set(result.labels[1]) & set(result.labels[2])
    assert shared
    assert resolve(sizes, pairs, one_per_source=False).n_entities < result.n_entities
    _assert_numbered_by_first_appearance(result)


def test_without_one_per_source_entities_are_connected_components(
    rng: np.random.Generator,
) -> None:
    sizes = [20, 20, 20]
    pairs = [
        _random_pair(rng, source_a=a, source_b=b, sizes=sizes, n_edges=12)
        for a, b in ((0, 1), (1, 2), (2, 0), (1, 1))
    ]
    result = resolve(sizes, pairs, one_per_source=False)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    component = list(range(sum(sizes)))

    def root(x: int) -> int:
        while component[x] != x:
            x = component[x]
        return x

    for pair in pairs:
        for left, right in zip(pair.candidates.left, pair.candidates.right, strict=True):
            ra = root(int(offsets[pair.source_a] + left))
            rb = root(int(offsets[pair.source_b] + right))
            component[max(ra, rb)] = min(ra, rb)
    labels = np.concatenate(result.labels)
    roots = [root(x) for x in range(sum(sizes))]
    for x in range(sum(sizes)):
        for y in range(sum(sizes)):
            assert (labels[x] == labels[y]) == (roots[x] == roots[y])


def test_no_pairs_gives_singletons() -> None:
    result = resolve([3, 0, 2], [])
    assert result.n_entities == 5
    assert [labels.tolist() for labels in result.labels] == [[0, 1, 2], [], [3, 4]]
    assert all(labels.dtype == np.int64 for labels in result.labels)
    assert all(np.isnan(scores).all() and scores.dtype == np.float64 for scores in result.scores)


def test_scores_are_those_of_the_joining_edge() -> None:
    # a0-b0 (0.9) forms an entity; b0-c0 (0.8) adds c0; a1-b1 (0.7) forms a second entity;
    # a0-c1 (0.95) first joins a0 and c1; a1-b0 (0.85) is refused (b0 already has an a).
    pairs = [
        _pair(0, 1, [(0, 0, 0.9), (1, 1, 0.7), (1, 0, 0.85)]),
        _pair(1, 2, [(0, 0, 0.8)]),
        _pair(0, 2, [(0, 1, 0.95)]),
    ]
    result = resolve([2, 2, 3], pairs)
    assert [labels.tolist() for labels in result.labels] == [[0, 1], [0, 1], [2, 0, 3]]
    assert result.n_entities == 4
    assert result.scores[0].tolist() == [0.95, 0.7]
    assert result.scores[1].tolist() == [0.9, 0.7]
    np.testing.assert_array_equal(result.scores[2], [np.nan, 0.95, np.nan])


def test_same_dataset_edges_only_merge_without_one_per_source() -> None:
    pairs = [_pair(0, 0, [(0, 1, 0.9)])]
    assert resolve([2], pairs).n_entities == 2
    assert resolve([2], pairs, one_per_source=False).labels[0].tolist() == [0, 0]


def test_more_than_64_datasets() -> None:
    # A chain 0-1-...-69 through record 0 of each dataset; dataset 69 (past the first 64-bit word
    # of the per-entity dataset bitset) also has record 1, linked first to record 0 of dataset 68.
    sizes = [1] * 69 + [2]
    pairs = [_pair(d, d + 1, [(0, 0, 0.9)]) for d in range(69)]
    pairs.append(_pair(68, 69, [(0, 1, 0.95)]))
    result = resolve(sizes, pairs)
    # The chain's last link would put records 0 and 1 of dataset 69 together, so it is refused.
    assert result.labels[69].tolist() == [1, 0]
    assert all(labels.tolist() == [0] for labels in result.labels[:69])
    assert result.n_entities == 2
    assert resolve(sizes, pairs, one_per_source=False).n_entities == 1


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([_pair(0, 2, [(0, 0, 0.9)])], "out of range for 2 datasets"),
        ([_pair(0, 1, [(3, 0, 0.9)])], "left: row index out of range"),
        ([_pair(0, 1, [(0, -1, 0.9)])], "right: row index out of range"),
        ([_pair(0, 1, [(0, 0, math.nan)])], "NaN"),
    ],
)
def test_rejects_bad_pairs(pairs: list[PairCandidates], message: str) -> None:
    with pytest.raises(MatchingInputError, match=message):
        resolve([2, 2], pairs)


def test_rejects_nan_trusted_from() -> None:
    with pytest.raises(MatchingInputError, match="trusted_from"):
        resolve([1, 1], [_pair(0, 1, [(0, 0, 0.9)])], trusted_from=math.nan)


# --- The merge rule, stated plainly -------------------------------------------------------------

Record = tuple[int, int]  # (dataset, row)


def _reference_resolve(
    sizes: Sequence[int], pairs: Sequence[PairCandidates], *, trusted_from: float | None = None
) -> Clustering:
    """resolve's rule with one_per_source, in plain Python: sets, dicts and loops."""
    best: dict[tuple[Record, Record], float] = {}
    for pair in pairs:
        if pair.source_a == pair.source_b:
            continue  # never merges with one record per dataset
        found = pair.candidates
        for left, right, score in zip(
            found.left.tolist(), found.right.tolist(), found.score.tolist(), strict=True
        ):
            x, y = sorted([(pair.source_a, left), (pair.source_b, right)])
            best[x, y] = max(best.get((x, y), -math.inf), score)
    edges = sorted(best.items(), key=lambda item: (-item[1], item[0]))

    if trusted_from is None:
        # Contested: a record already has a higher edge into the other record's dataset.
        touched: set[tuple[Record, int]] = set()
        gain, best_gain, level = 0, 0, math.inf
        for i, ((x, y), score) in enumerate(edges):
            gain += -1 if (x, y[0]) in touched or (y, x[0]) in touched else 1
            touched |= {(x, y[0]), (y, x[0])}
            run_ends = i + 1 == len(edges) or edges[i + 1][1] != score
            if run_ends and gain > best_gain:
                best_gain, level = gain, score
    else:
        level = trusted_from

    entity: dict[Record, frozenset[Record]] = {
        (d, r): frozenset([(d, r)]) for d, n in enumerate(sizes) for r in range(n)
    }
    joined: dict[Record, float] = {}
    taken: set[tuple[Record, Record]] = set()
    for (x, y), score in edges:
        taken.add((x, y))
        ex, ey = entity[x], entity[y]
        if ex == ey or {d for d, _ in ex} & {d for d, _ in ey}:
            continue
        supported = all((min(u, v), max(u, v)) in taken for u in ex for v in ey)
        if score < level and not supported:
            continue
        for record in ex | ey:
            entity[record] = ex | ey
        joined.setdefault(x, score)
        joined.setdefault(y, score)

    number: dict[frozenset[Record], int] = {}
    labels = [
        np.array([number.setdefault(entity[d, r], len(number)) for r in range(n)], dtype=np.int64)
        for d, n in enumerate(sizes)
    ]
    scores = [
        np.array([joined.get((d, r), math.nan) for r in range(n)], dtype=np.float64)
        for d, n in enumerate(sizes)
    ]
    return Clustering(labels=labels, scores=scores, n_entities=len(number), trusted_from=level)


def _hand_built() -> tuple[list[int], list[PairCandidates]]:
    """Three datasets A, B, C where single linkage, complete linkage and the default all differ.

    Edges by score, with c for contested (a record already has a higher edge into that dataset):
    a0-b0 .95, a1-b1 .92, a1-c1 .91, a2-b2 .90 | a0-b3 .80 c, a1-b4 .795 c, a2-b3 .79 c,
    a2-c2 .78, b0-c0 .77, a3-b0 .765 c, b2-c2 .76, a4-b0 .65 c. Uncontested minus contested, from
    the top, peaks at 4 after .90, so trusted_from is 0.90.
    """
    sizes = [5, 5, 3]
    pairs = [
        _pair(
            0,
            1,
            [
                (0, 0, 0.95),
                (1, 1, 0.92),
                (2, 2, 0.90),
                (0, 3, 0.80),
                (1, 4, 0.795),
                (2, 3, 0.79),
                (3, 0, 0.765),
                (4, 0, 0.65),
            ],
        ),  # fmt: skip
        _pair(0, 2, [(1, 1, 0.91), (2, 2, 0.78)]),
        _pair(2, 1, [(0, 0, 0.77), (2, 2, 0.76)]),  # given as (C, B): orientation must not matter
    ]
    return sizes, pairs


def test_hand_built_three_party_case() -> None:
    sizes, pairs = _hand_built()
    result = resolve(sizes, pairs)
    assert result.trusted_from == 0.90
    # a1-c1 (.91) is trusted: c1 joins {a1, b1} although b1-c1 is no edge. a2-c2 (.78) is not,
    # and b2-c2 is not taken yet, so it waits; b2-c2 (.76) completes the support and c2 joins
    # with that score. b0-c0 (.77) is not trusted and a0-c0 is no edge: c0 stays alone.
    assert [labels.tolist() for labels in result.labels] == [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 5, 6],
        [7, 1, 2],
    ]
    np.testing.assert_array_equal(result.scores[2], [math.nan, 0.91, 0.76])

    # Single linkage (oda-fed's earlier rule) takes every edge that does not clash.
    single = resolve(sizes, pairs, trusted_from=-math.inf)
    assert [labels.tolist() for labels in single.labels] == [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 5, 6],
        [0, 1, 2],
    ]
    np.testing.assert_array_equal(single.scores[2], [0.77, 0.91, 0.78])
    # Complete linkage (anonlink's greedy_solve) refuses c1 as well.
    complete = resolve(sizes, pairs, trusted_from=math.inf)
    assert [labels.tolist() for labels in complete.labels] == [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 5, 6],
        [7, 8, 2],
    ]

    for trusted_from in (None, -math.inf, math.inf):
        _assert_same(
            resolve(sizes, pairs, trusted_from=trusted_from),
            _reference_resolve(sizes, pairs, trusted_from=trusted_from),
        )


def test_duplicate_pairs_keep_their_best_score() -> None:
    def chain(score_bc: float) -> list[PairCandidates]:
        return [
            _pair(0, 1, [(0, 0, 0.9)]),
            _pair(0, 2, [(0, 0, 0.8)]),
            _pair(1, 2, [(0, 0, score_bc)]),
        ]

    lower = [_pair(1, 0, [(0, 0, 0.6)]), _pair(2, 1, [(0, 0, 0.65)])]
    _assert_same(resolve([1, 1, 1], chain(0.7)), resolve([1, 1, 1], chain(0.7) + lower))
    higher = [_pair(2, 1, [(0, 0, 0.95)])]
    _assert_same(resolve([1, 1, 1], chain(0.95)), resolve([1, 1, 1], chain(0.7) + higher))


def test_without_one_per_source_trusted_from_is_minus_infinity() -> None:
    sizes, pairs = _hand_built()
    assert resolve(sizes, pairs, one_per_source=False).trusted_from == -math.inf


# --- Random multi-party inputs: plain reference, determinism, order and orientation -------------

# Few distinct scores, so ties are frequent and the tie-break order matters.
_SCORES = st.sampled_from([0.7, 0.75, 0.8, 0.85, 0.9, 1.0])


@st.composite
def _edge_sets(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int, int, int, float]]]:
    """Dataset sizes and edges ``(dataset_a, row_a, dataset_b, row_b, score)``; some edges join
    two records of one dataset and some pairs repeat."""
    sizes = draw(st.lists(st.integers(0, 6), min_size=2, max_size=5))
    filled = [d for d, n in enumerate(sizes) if n]
    if not filled:
        return sizes, []
    record = st.sampled_from(filled).flatmap(
        lambda d: st.tuples(st.just(d), st.integers(0, sizes[d] - 1))
    )
    edges = draw(
        st.lists(st.tuples(record, record, _SCORES), max_size=40).map(
            lambda xs: [(a[0], a[1], b[0], b[1], s) for a, b, s in xs]
        )
    )
    return sizes, edges


def _as_pairs(edges: Sequence[tuple[int, int, int, int, float]]) -> list[PairCandidates]:
    """One PairCandidates per ordered pair of datasets, in first-seen order."""
    grouped: dict[tuple[int, int], list[tuple[int, int, float]]] = {}
    for da, ra, db, rb, score in edges:
        grouped.setdefault((da, db), []).append((ra, rb, score))
    return [_pair(da, db, found) for (da, db), found in grouped.items()]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_edge_sets(), st.sampled_from([None, math.inf, -math.inf, 0.8]))
def test_matches_the_plain_reference(
    edge_set: tuple[list[int], list[tuple[int, int, int, int, float]]],
    trusted_from: float | None,
) -> None:
    sizes, edges = edge_set
    pairs = _as_pairs(edges)
    result = resolve(sizes, pairs, trusted_from=trusted_from)
    _assert_same(result, _reference_resolve(sizes, pairs, trusted_from=trusted_from))
    for labels in result.labels:
        assert len(np.unique(labels)) == len(labels)
    _assert_numbered_by_first_appearance(result)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_edge_sets(), st.data())
def test_deterministic_and_independent_of_edge_order_split_and_orientation(
    edge_set: tuple[list[int], list[tuple[int, int, int, int, float]]], data: st.DataObject
) -> None:
    sizes, edges = edge_set
    first = resolve(sizes, _as_pairs(edges))
    _assert_same(first, resolve(sizes, _as_pairs(edges)))

    # The same edges, shuffled, each perhaps given the other way round, spread over several
    # PairCandidates per pair of datasets, given in any order, some repeated at a lower score.
    shuffled = data.draw(st.permutations(edges))
    flips = data.draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))
    buckets = data.draw(st.lists(st.integers(0, 2), min_size=len(edges), max_size=len(edges)))
    grouped: dict[tuple[int, int, int], list[tuple[int, int, float]]] = {}
    for (da, ra, db, rb, score), flip, bucket in zip(shuffled, flips, buckets, strict=True):
        if flip:
            da, ra, db, rb = db, rb, da, ra
        grouped.setdefault((da, db, bucket), []).append((ra, rb, score))
    pairs = [_pair(da, db, found) for (da, db, _), found in grouped.items()]
    pairs = data.draw(st.permutations(pairs))
    repeats = data.draw(st.lists(st.sampled_from(edges), max_size=5)) if edges else []
    pairs += [_pair(db, da, [(rb, ra, score - 0.5)]) for da, ra, db, rb, score in repeats]
    for one_per_source in (True, False):
        _assert_same(
            resolve(sizes, _as_pairs(edges), one_per_source=one_per_source),
            resolve(sizes, pairs, one_per_source=one_per_source),
        )


# --- Per connected component: the same entities as the global merge ------------------------------


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    _edge_sets(),
    st.sampled_from([None, math.inf, -math.inf, 0.8]),
    st.booleans(),
    st.integers(1, 6),
)
def test_merging_connected_components_apart_gives_the_global_entities(
    edge_set: tuple[list[int], list[tuple[int, int, int, int, float]]],
    trusted_from: float | None,
    one_per_source: bool,
    units: int,
) -> None:
    sizes, edges = edge_set
    pairs = _as_pairs(edges)
    kwargs = {"one_per_source": one_per_source, "trusted_from": trusted_from}
    _assert_same(resolve_by_component(sizes, pairs, units=units, **kwargs),
                 resolve(sizes, pairs, **kwargs))  # fmt: skip


@settings(max_examples=100, deadline=None, derandomize=True)
@given(_edge_sets(), st.integers(1, 6))
def test_component_units_keep_components_whole_and_the_order(
    edge_set: tuple[list[int], list[tuple[int, int, int, int, float]]], units: int
) -> None:
    sizes, edges = edge_set
    graph = ordered_edges(sizes, _as_pairs(edges))
    order, spans = component_units(graph, units)
    assert sorted(order.tolist()) == list(range(len(graph.score)))
    assert [lo for lo, _ in spans[1:]] == [hi for _, hi in spans[:-1]] and len(spans) <= units
    unit_of: dict[int, int] = {}
    for k, (lo, hi) in enumerate(spans):
        positions = order[lo:hi]
        assert np.all(np.diff(positions) > 0)  # each unit in the global order
        for node in np.concatenate([graph.node_a[positions], graph.node_b[positions]]).tolist():
            assert unit_of.setdefault(node, k) == k  # a record's edges all in one unit


def test_component_units_are_balanced_by_edges() -> None:
    # 40 components of 3 edges each (a chain of 4 records across 4 datasets).
    chains = [(d, k, d + 1, k, 0.9) for k in range(40) for d in range(3)]
    graph = ordered_edges([40] * 4, _as_pairs(chains))
    _, spans = component_units(graph, 4)
    assert [hi - lo for lo, hi in spans] == [30, 30, 30, 30]
