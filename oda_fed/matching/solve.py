"""Resolve scored candidate pairs from many datasets into entities.

Records of all datasets get one global node id (dataset offset + row). Every edge (candidate pair)
is oriented from its smaller ``(dataset, row)`` end and taken in one global order: score
descending, then ``source_a``, ``left``, ``source_b``, ``right``. A record pair given more than
once keeps only its best score. Each edge then proposes to merge the entities of its two records.

The merge rule with ``one_per_source`` (the default):

1. Refuse when both entities already hold a record of the same dataset (an entity has at most one
   record per dataset).
2. Accept when the edge is *trusted*: its score is at least ``trusted_from``.
3. Otherwise accept only with complete support: every pair of records across the two entities
   has an edge at least as high in the order. An edge refused for lack of support still counts
   as support later, so the merge happens when the last missing edge arrives.

Rule 3 alone is anonlink's ``greedy_solve`` (complete linkage). Rule 2 alone is greedy union-find
(single linkage). Single linkage lets one weak edge attach a record to an entity whose other
records do not resemble it: near the threshold such edges are often between relatives or
neighbours. Complete linkage refuses them, but it also refuses true matches where one record
was recorded badly, which is common when scores are well clear of the non-matches. So trusted
edges merge on their own, and weaker ones need the whole entity to agree.

``trusted_from`` is learnt from the edges unless given. An edge is *contested* when one of its
records already has a higher edge into the other record's dataset. One record per dataset means
at most one of those edges can be right, so contested edges are mostly non-matches, and their
share at a score tracks the non-match rate there. ``trusted_from`` is the score level ``c`` that
maximises ``(uncontested - contested)`` over the edges scoring at least ``c``: the lowest level
down to which contested edges stay the minority (the isotonic estimate of the contested share
there is below one half). When no level has an uncontested majority it is ``inf``, and only
complete support merges.

For two datasets every merge joins two single records, which the one edge between them fully
supports, so all three rules reduce to greedy 1-to-1 matching by score.

Without ``one_per_source`` every edge merges: entities are the connected components.

The result depends only on the set of edges and their scores, not on their input order, on how
they are split between :class:`PairCandidates`, or on which way round a pair of datasets is given.

An edge merges, or supports a merge of, entities of its own connected component only, and
``trusted_from`` is settled before any merge. So once the edges are deduplicated, ordered and
the level learnt (:func:`ordered_edges`, over all of them), each component can merge apart, its
edges in the global order (:func:`merge_components`: a cluster's units, whole components each),
and :func:`assemble` numbers the entities by their smallest record, which is the global merge's
numbering by first appearance: the same clustering, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from oda_fed.matching.candidates import Candidates, MatchingInputError


@dataclass(frozen=True)
class PairCandidates:
    """Candidate pairs between dataset ``source_a`` (``left`` rows) and ``source_b`` (``right``)."""

    source_a: int
    source_b: int
    candidates: Candidates


@dataclass(frozen=True)
class Clustering:
    """Entities found by :func:`resolve`.

    Attributes
    ----------
    labels : list of numpy.ndarray
        Per dataset, the ``int64`` entity index of every record, in ``0..n_entities - 1``. Entities
        are numbered by first appearance, scanning datasets in order and rows in order; a record
        that matched nothing is its own entity.
    scores : list of numpy.ndarray
        Per dataset, ``float64``: the score of the first accepted edge that touched the record,
        i.e. the edge that joined it to its entity; ``NaN`` for singletons.
    n_entities : int
        Number of entities, singletons included.
    trusted_from : float
        The score from which one edge could merge two entities on its own (see the module
        docstring); ``inf`` when only complete support merged, ``-inf`` without
        ``one_per_source``.
    """

    labels: list[np.ndarray]
    scores: list[np.ndarray]
    n_entities: int
    trusted_from: float = -math.inf


@njit(cache=True)
def _find(parent, x):
    # Path halving: each visited node skips to its grandparent, keeping trees shallow.
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _contested(node_a, node_b, dataset_of, n_datasets):
    """Per edge (in order): does one of its records already have an edge into the other's dataset."""
    n_words = (n_datasets + 63) // 64
    # Per record, a bitset of the datasets it already has an edge into.
    touched = np.zeros((dataset_of.shape[0], n_words), dtype=np.uint64)
    contested = np.zeros(node_a.shape[0], dtype=np.bool_)
    for e in range(node_a.shape[0]):
        u = node_a[e]
        v = node_b[e]
        du = dataset_of[u]
        dv = dataset_of[v]
        bit_u = np.uint64(1) << np.uint64(du % 64)
        bit_v = np.uint64(1) << np.uint64(dv % 64)
        if (touched[u, dv // 64] & bit_v) or (touched[v, du // 64] & bit_u):
            contested[e] = True
        touched[u, dv // 64] |= bit_v
        touched[v, du // 64] |= bit_u
    return contested


@njit(cache=True)
def _has_edge(keys, ranks, n_nodes, x, y, e):
    """Whether records ``x`` and ``y`` have an edge at position ``e`` or earlier in the order."""
    if x > y:
        x, y = y, x
    key = x * n_nodes + y
    i = np.searchsorted(keys, key)
    return i < keys.shape[0] and keys[i] == key and ranks[i] <= e


@njit(cache=True)
def _fully_supported(ru, rv, head, nxt, keys, ranks, n_nodes, e):
    """Whether every record of entity ``ru`` has an edge to every record of ``rv`` by ``e``."""
    x = head[ru]
    while x >= 0:
        y = head[rv]
        while y >= 0:
            if not _has_edge(keys, ranks, n_nodes, x, y, e):
                return False
            y = nxt[y]
        x = nxt[x]
    return True


@njit(cache=True)
def _greedy_merge(
    node_a, node_b, score, dataset_of, n_datasets, one_per_source, trusted_from, keys, ranks
):
    """Merge edges in the given order; return (labels, joined score, n_entities) per node."""
    n_nodes = dataset_of.shape[0]
    parent = np.arange(n_nodes)
    size = np.ones(n_nodes, dtype=np.int64)
    # Members of each entity as a linked list (head and tail per root), to check support.
    head = np.arange(n_nodes)
    tail = np.arange(n_nodes)
    nxt = np.full(n_nodes, -1, dtype=np.int64)
    # Per group root, a bitset of the datasets it holds (only needed for one_per_source).
    n_words = (n_datasets + 63) // 64 if one_per_source else 0
    held = np.zeros((n_nodes, n_words), dtype=np.uint64)
    if one_per_source:
        for v in range(n_nodes):
            d = dataset_of[v]
            held[v, d // 64] = np.uint64(1) << np.uint64(d % 64)
    joined = np.full(n_nodes, np.nan)
    for e in range(node_a.shape[0]):
        u = node_a[e]
        v = node_b[e]
        ru = _find(parent, u)
        rv = _find(parent, v)
        if ru == rv:
            continue
        clash = False
        for w in range(n_words):
            if held[ru, w] & held[rv, w]:
                clash = True
                break
        if clash:
            continue
        if (
            one_per_source
            and score[e] < trusted_from
            and not _fully_supported(ru, rv, head, nxt, keys, ranks, n_nodes, e)
        ):
            continue
        if size[ru] < size[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        size[ru] += size[rv]
        nxt[tail[ru]] = head[rv]
        tail[ru] = tail[rv]
        for w in range(n_words):
            held[ru, w] |= held[rv, w]
        if np.isnan(joined[u]):
            joined[u] = score[e]
        if np.isnan(joined[v]):
            joined[v] = score[e]
    # Number entities by first appearance in node order, so labels do not depend on which record
    # union-by-size happened to make the root.
    entity_of_root = np.full(n_nodes, -1, dtype=np.int64)
    labels = np.empty(n_nodes, dtype=np.int64)
    n_entities = 0
    for v in range(n_nodes):
        r = _find(parent, v)
        if entity_of_root[r] < 0:
            entity_of_root[r] = n_entities
            n_entities += 1
        labels[v] = entity_of_root[r]
    return labels, joined, n_entities


def _trusted_level(score: np.ndarray, contested: np.ndarray) -> float:
    """The level ``c`` maximising ``uncontested - contested`` over edges scoring ``>= c``.

    ``score`` is in the global order (descending). A level sits at the end of a run of tied
    scores, so ties are all in or all out; among equal gains the highest level wins.
    """
    if score.shape[0] == 0:
        return math.inf
    gain = np.cumsum(np.where(contested, -1, 1))
    ends = np.flatnonzero(np.append(score[:-1] != score[1:], True))
    best = ends[np.argmax(gain[ends])]
    return float(score[best]) if gain[best] > 0 else math.inf


def _check_pair(pair: PairCandidates, sizes: Sequence[int], *, index: int) -> None:
    n_datasets = len(sizes)
    for side in ("source_a", "source_b"):
        source = getattr(pair, side)
        if isinstance(source, bool) or not isinstance(source, int | np.integer):
            raise MatchingInputError(f"pairs[{index}].{side} must be an int dataset index")
        if not 0 <= source < n_datasets:
            raise MatchingInputError(
                f"pairs[{index}].{side} = {source} is out of range for {n_datasets} datasets"
            )
    found = pair.candidates
    n = found.score.shape[0]
    if found.left.shape != (n,) or found.right.shape != (n,) or found.score.ndim != 1:
        raise MatchingInputError(f"pairs[{index}]: left, right and score must be 1-D of one length")
    if n and np.isnan(found.score).any():
        raise MatchingInputError(f"pairs[{index}]: scores must not be NaN")
    for side, rows, source in (
        ("left", found.left, pair.source_a),
        ("right", found.right, pair.source_b),
    ):
        if n and (rows.min() < 0 or rows.max() >= sizes[source]):
            raise MatchingInputError(
                f"pairs[{index}].{side}: row index out of range for dataset {source} "
                f"of {sizes[source]} records"
            )


def resolve(
    sizes: Sequence[int],
    pairs: Sequence[PairCandidates],
    *,
    one_per_source: bool = True,
    trusted_from: float | None = None,
) -> Clustering:
    """Greedily merge candidate pairs from any number of datasets into entities.

    Edges are taken in one global order (score descending, then ``source_a``, ``left``,
    ``source_b``, ``right``, each edge first oriented from its smaller ``(dataset, row)`` end).
    With ``one_per_source``, an edge merges the entities of its two records unless they would
    then hold two records of one dataset, and, when its score is below ``trusted_from``, only if
    every pair of records across the two entities is an edge already taken (complete support).
    The module docstring gives the rule and its reasons. For two datasets this is greedy 1-to-1
    matching by score. The result depends only on the set of edges, not their input order.

    Parameters
    ----------
    sizes : sequence of int
        Number of records in each dataset.
    pairs : sequence of PairCandidates
        Scored edges; any number per pair of datasets. A record pair given more than once keeps
        its best score.
    one_per_source : bool
        Refuse merges that would put two records of one dataset in one entity. Without it every
        edge merges (connected components) and ``trusted_from`` is not used.
    trusted_from : float or None
        Score from which one edge may merge two entities on its own. ``None`` (default) learns it
        from the share of contested edges; ``math.inf`` gives anonlink's greedy rule (complete
        linkage) and ``-math.inf`` plain greedy union-find (single linkage).

    Returns
    -------
    Clustering

    Raises
    ------
    MatchingInputError
        On a negative size, a dataset index or row index out of range, or a NaN score.

    Examples
    --------
    >>> found = Candidates(
    ...     left=np.array([0, 1]), right=np.array([0, 0]), score=np.array([0.9, 0.95])
    ... )
    >>> result = resolve([2, 1], [PairCandidates(source_a=0, source_b=1, candidates=found)])
    >>> [labels.tolist() for labels in result.labels], result.n_entities
    ([[0, 1], [1]], 2)
    """
    return merge_all(ordered_edges(sizes, pairs, one_per_source=one_per_source,
                                   trusted_from=trusted_from))  # fmt: skip


@dataclass(frozen=True)
class Edges:
    """The candidate graph as :func:`resolve` merges it: each record pair once, at its best
    score, in the global order, with the level from which one edge merges on its own."""

    #: Both ends' node ids (``node_a < node_b``) and the score, in the global order.
    node_a: np.ndarray
    node_b: np.ndarray
    score: np.ndarray
    #: ``node_a * n_nodes + node_b`` ascending, and each key's edge's position in the order.
    keys: np.ndarray
    ranks: np.ndarray
    #: Each dataset's first node id, and one past the last (``len(sizes) + 1`` entries).
    offsets: np.ndarray
    one_per_source: bool
    level: float

    @property
    def n_datasets(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_nodes(self) -> int:
        return int(self.offsets[-1])


def ordered_edges(
    sizes: Sequence[int],
    pairs: Sequence[PairCandidates],
    *,
    one_per_source: bool = True,
    trusted_from: float | None = None,
) -> Edges:
    """What every merge of :func:`resolve` shares: the checked edges, deduplicated, in the
    global order, and the trusted level learnt from all of them."""
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise MatchingInputError("dataset sizes must be non-negative")
    if trusted_from is not None and math.isnan(trusted_from):
        raise MatchingInputError("trusted_from must be a number or None, not NaN")
    for index, pair in enumerate(pairs):
        _check_pair(pair, sizes, index=index)

    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    n_nodes = int(offsets[-1])
    dataset_of = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)

    def column(values: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(values).astype(dtype, copy=False) if values else np.empty(0, dtype)

    src_a = column([np.full(len(p.candidates), p.source_a) for p in pairs], np.int64)
    src_b = column([np.full(len(p.candidates), p.source_b) for p in pairs], np.int64)
    left = column([p.candidates.left for p in pairs], np.int64)
    right = column([p.candidates.right for p in pairs], np.int64)
    score = column([p.candidates.score for p in pairs], np.float64)
    if one_per_source:
        # An edge within one dataset can never merge; leaving it out keeps it from counting as
        # a contested edge.
        across = src_a != src_b
        src_a, src_b, left, right, score = (x[across] for x in (src_a, src_b, left, right, score))

    # Orient every edge from its smaller (dataset, row) end: node ids follow (dataset, row), so
    # then node_a <= node_b and one key, node_a * n_nodes + node_b, names the record pair.
    swap = (src_a > src_b) | ((src_a == src_b) & (left > right))
    node_a = offsets[np.where(swap, src_b, src_a)] + np.where(swap, right, left)
    node_b = offsets[np.where(swap, src_a, src_b)] + np.where(swap, left, right)
    pair_key = node_a * max(n_nodes, 1) + node_b
    # A pair given twice keeps its best score. Sorted by key, the kept pairs are also the lookup
    # table of the support check.
    by_key = np.argsort(pair_key, kind="stable")
    pair_key = pair_key[by_key]
    starts = np.ones(len(pair_key), dtype=bool)
    starts[1:] = pair_key[1:] != pair_key[:-1]
    first = np.flatnonzero(starts)
    keys = pair_key[first]
    best = np.maximum.reduceat(score[by_key], first) if len(first) else score
    # The global order: score descending, then (dataset, row) of each end, i.e. the key (keys are
    # unique and ascending, so a stable sort by score alone breaks ties by key).
    order = np.argsort(-best, kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))  # position of each key's edge in the order
    node_a, node_b = np.divmod(keys[order], max(n_nodes, 1))
    score = best[order]

    if not one_per_source:
        level = -math.inf
    elif trusted_from is None:
        level = _trusted_level(score, _contested(node_a, node_b, dataset_of, len(sizes)))
    else:
        level = float(trusted_from)

    return Edges(node_a, node_b, score, keys, ranks, offsets, one_per_source, level)


def merge_all(edges: Edges) -> Clustering:
    """The greedy merge of all ``edges`` at once, in this process (:func:`resolve`)."""
    dataset_of = np.repeat(np.arange(edges.n_datasets, dtype=np.int64), np.diff(edges.offsets))
    labels, joined, n_entities = _greedy_merge(
        edges.node_a, edges.node_b, edges.score, dataset_of, edges.n_datasets,
        edges.one_per_source, edges.level, edges.keys, edges.ranks,
    )  # fmt: skip
    return _clustering(edges, labels, joined, int(n_entities))


def _clustering(edges: Edges, labels: np.ndarray, joined: np.ndarray, n: int) -> Clustering:
    bounds = list(zip(edges.offsets[:-1], edges.offsets[1:], strict=True))
    return Clustering(
        labels=[labels[lo:hi] for lo, hi in bounds],
        scores=[joined[lo:hi] for lo, hi in bounds],
        n_entities=n,
        trusted_from=edges.level,
    )


# --- per connected component ---------------------------------------------------------------------
# An edge only ever merges, or supports a merge of, entities of its own connected component, and
# the trusted level is fixed before any merge: so each component merges alone, its edges in the
# global order, to the same entities and joined scores as the global merge.


@njit(cache=True)
def _components(node_a, node_b, n_nodes):
    """Each node's connected component, named by its smallest node."""
    parent = np.arange(n_nodes)
    for e in range(node_a.shape[0]):
        ru = _find(parent, node_a[e])
        rv = _find(parent, node_b[e])
        if ru < rv:
            parent[rv] = ru
        elif rv < ru:
            parent[ru] = rv
    for v in range(n_nodes):
        parent[v] = _find(parent, v)
    return parent


def component_units(edges: Edges, units: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Whole components in about ``units`` groups of about equal edges: the edges' positions
    grouped so (each group in the global order), and each group's span of them."""
    n = len(edges.score)
    component = _components(edges.node_a, edges.node_b, max(edges.n_nodes, 1))[edges.node_a]
    _, of_edge, counts = np.unique(component, return_inverse=True, return_counts=True)
    # Components in a row, cut where the edges before them pass a multiple of n / units.
    before = np.cumsum(counts) - counts
    unit = (before * units // max(n, 1))[of_edge.reshape(-1)]
    order = np.argsort(unit, kind="stable")
    bounds = np.searchsorted(unit[order], np.arange(units + 1))
    spans = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    return order, spans


def merge_components(
    node_a: np.ndarray,
    node_b: np.ndarray,
    score: np.ndarray,
    *,
    offsets: Sequence[int],
    one_per_source: bool,
    level: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy merge of whole components' edges, given in the global order: their nodes
    (ascending), each one's entity named by its smallest node, and its joined score."""
    nodes, local = np.unique(np.concatenate([node_a, node_b]), return_inverse=True)
    local = local.reshape(-1).astype(np.int64)
    la, lb = local[: len(node_a)], local[len(node_a) :]
    # Local ids keep the nodes' order, so keys and ranks order as the global ones do.
    key = la * max(len(nodes), 1) + lb
    by_key = np.argsort(key, kind="stable")
    dataset_of = np.searchsorted(np.asarray(offsets), nodes, side="right").astype(np.int64) - 1
    labels, joined, _ = _greedy_merge(
        la, lb, np.ascontiguousarray(score, dtype=np.float64), dataset_of, len(offsets) - 1,
        one_per_source, level, key[by_key], by_key.astype(np.int64),
    )  # fmt: skip
    # Entities are numbered by first appearance, i.e. by their smallest node.
    _, first = np.unique(labels, return_index=True)
    return nodes, nodes[first[labels]], joined


def assemble(
    edges: Edges, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> Clustering:
    """The clustering from every component's :func:`merge_components`: entities numbered by
    their smallest node, as the global merge numbers them by first appearance."""
    smallest = np.arange(edges.n_nodes)
    joined = np.full(edges.n_nodes, np.nan)
    for nodes, entity, score in parts:
        smallest[nodes] = entity
        joined[nodes] = score
    is_first = smallest == np.arange(edges.n_nodes)
    number = np.cumsum(is_first) - 1
    return _clustering(edges, number[smallest].astype(np.int64), joined, int(is_first.sum()))


def resolve_by_component(
    sizes: Sequence[int],
    pairs: Sequence[PairCandidates],
    *,
    units: int,
    one_per_source: bool = True,
    trusted_from: float | None = None,
) -> Clustering:
    """:func:`resolve`, its greedy merge run in about ``units`` groups of whole components in
    turn: the same clustering, as a cluster's executor makes it from units on its workers."""
    edges = ordered_edges(sizes, pairs, one_per_source=one_per_source, trusted_from=trusted_from)
    order, spans = component_units(edges, units)
    return assemble(edges, [
        merge_components(edges.node_a[order[lo:hi]], edges.node_b[order[lo:hi]],
                         edges.score[order[lo:hi]], offsets=edges.offsets.tolist(),
                         one_per_source=edges.one_per_source, level=edges.level)
        for lo, hi in spans
    ])  # fmt: skip
