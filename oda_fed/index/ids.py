"""Entity ids: opaque, random, never reused, and carried over a full relink by largest overlap."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence

import numpy as np

#: Random bits per entity id. Ids say nothing about the records, their order or their count.
ID_BYTES = 8


def fresh_ids(count: int, *, issued: set[str]) -> list[str]:
    """``count`` new entity ids, none of them in ``issued``; ``issued`` gains them.

    ``issued`` must hold every id the index ever issued, retired ones included, so that an id is
    never given to a second entity.

    Examples
    --------
    >>> issued = set()
    >>> ids = fresh_ids(3, issued=issued)
    >>> len(set(ids)), ids[0].startswith("e"), len(ids[0]), issued == set(ids)
    (3, True, 17, True)
    """
    out: list[str] = []
    while len(out) < count:
        candidate = "e" + secrets.token_hex(ID_BYTES)
        if candidate not in issued:  # a collision in 64 bits is unlikely, but then draw again
            issued.add(candidate)
            out.append(candidate)
    return out


def carry_over(old: Sequence[str | None], labels: np.ndarray) -> dict[int, str]:
    """Give new clusters the old entity ids they overlap most, each old id to at most one cluster.

    Parameters
    ----------
    old
        Per record, the entity id it had before the relink, or None for a record new to the index.
    labels
        Per record (same order), its cluster after the relink.

    Returns
    -------
    dict of int to str
        Cluster label to the old entity id it keeps. Pairs are taken greedily by overlap (records in
        common), largest first, ties by cluster label and then old id, so the result does not
        depend on dictionary order. A cluster not in the result takes a fresh id.

    Examples
    --------
    >>> carry_over(["a", "a", "b", None], np.array([0, 0, 0, 1]))
    {0: 'a'}
    >>> carry_over(["a", "a", "b"], np.array([0, 1, 1]))
    {0: 'a', 1: 'b'}
    """
    overlap = Counter(
        (int(label), entity)
        for entity, label in zip(old, labels, strict=True)
        if entity is not None
    )
    chosen: dict[int, str] = {}
    used: set[str] = set()
    for (label, entity), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0])):
        if label in chosen or entity in used:
            continue
        chosen[label] = entity
        used.add(entity)
    return chosen
