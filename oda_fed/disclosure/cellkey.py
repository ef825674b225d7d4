"""Cell-key random rounding (the ABS cell key method): record keys, cell keys, keyed rounding.

Deterministic rounding is an oracle: a partner that adds one dummy record a round sees exactly when
the rounded value steps, and so learns the true count. Random rounding with fresh noise each time
fails the other way: averaging many releases of the same table recovers the true count. The cell
key method sits between the two. Every entity gets a secret, uniform *record key*; a cell's key is
the fractional part of the sum of its entities' record keys; the cell's rounding direction is a
function of its count and its key only. So the same set of entities always gets the same answer
(asking again or averaging learns nothing), while adding or removing a single entity draws an
unrelated key (watching steps learns little). The expected published value is the true count.

Keys are fixed-point fractions: a record key ``k`` (``uint64``) stands for ``k / 2**64`` in
[0, 1). Summing them modulo ``2**64`` is exactly "the fractional part of the sum", in any order,
so a cell's key does not depend on how its entities were listed (a float sum would).

The secret is the coordinator's own, kept on its disk and never given to a partner: whoever holds
it can tell from a published value which way each cell was rounded. It must stay the same across
rounds, or the same entities would get a different answer next time and averaging would work again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oda_fed.disclosure.rules import DisclosureError

__all__ = ["CellCounts", "cellkey_round", "count_cells", "record_keys"]

#: Shortest secret accepted, in bytes: HMAC-SHA256 keys shorter than this are guessable.
MIN_SECRET_BYTES = 16

_SHA256_BLOCK = 64
# 2**-53: the top 53 bits of a 64-bit fraction are exactly representable as a float64 in [0, 1).
_FLOAT_SCALE = float(2.0**-53)


def record_keys(entity_ids: Iterable[object], *, secret: bytes) -> np.ndarray:
    """Each entity's record key: HMAC-SHA256 of its id under ``secret``, as a 64-bit fraction.

    Parameters
    ----------
    entity_ids
        Entity ids from the linked index (strings; other values are keyed by their ``str``).
    secret
        The coordinator's cell-key secret, at least 16 bytes (32 random bytes recommended). It
        must differ from every other key and stay the same from round to round.

    Returns
    -------
    numpy.ndarray
        ``uint64`` array, one key per id in order: the first 8 bytes of the HMAC, big-endian.
        Key ``k`` stands for the fraction ``k / 2**64``, uniform in [0, 1).

    Raises
    ------
    DisclosureError
        When ``secret`` is not bytes or is shorter than 16 bytes.

    Examples
    --------
    >>> keys = record_keys(["e0001", "e0002"], secret=b"0123456789abcdef")
    >>> keys.dtype, len(keys), bool(keys[0] != keys[1])
    (dtype('uint64'), 2, True)
    >>> bool(record_keys(["e0001"], secret=b"0123456789abcdef")[0] == keys[0])
    True
    """
    inner, outer = _hmac_pads(secret)
    inner_copy, outer_copy = inner.copy, outer.copy

    # HMAC from its two precomputed pad states: copying a hash state is about three times faster
    # per id than hmac.digest, which sets the key up again on every call.
    def mac(entity_id: object) -> bytes:
        text = entity_id if isinstance(entity_id, str) else str(entity_id)
        h = inner_copy()
        h.update(text.encode("utf-8"))
        o = outer_copy()
        o.update(h.digest())
        return o.digest()

    digests = b"".join(map(mac, _as_list(entity_ids)))
    # Each digest is four big-endian 64-bit words; the first is the key.
    return np.frombuffer(digests, dtype=">u8")[::4].astype(np.uint64)


def definition_keys(
    definitions: Sequence[str], counts: Sequence[int] | np.ndarray, *, secret: bytes
) -> np.ndarray:
    """Cell keys from what each cell counts and how many: for rounds without stable entities.

    Record keys need an entity id that is the same from round to round. A federation that links
    afresh each round has none (its entity ids are new every round), so keys summed from them
    would be drawn afresh each round, and averaging the releases of an unchanged cell would give
    its count back. Keyed on the cell's definition and its true count instead, the same question
    with the same answer is always rounded the same way, and a different count draws an unrelated
    key (the release ledger holds a cell whose count moved by less than ``min_cell``).

    Parameters
    ----------
    definitions
        Each cell's canonical definition (:attr:`~oda_fed.disclosure.CellDefinition.key`).
    counts
        Their true counts, in the same order.
    secret
        The coordinator's cell-key secret.

    Returns
    -------
    numpy.ndarray
        ``float64`` key in [0, 1) per cell.

    Examples
    --------
    >>> a = definition_keys(["w1", "w1", "w2"], [477, 478, 477], secret=b"0123456789abcdef")
    >>> bool(a[0] != a[1] and a[0] != a[2])
    True
    >>> bool(definition_keys(["w1"], [477], secret=b"0123456789abcdef")[0] == a[0])
    True
    """
    values = np.asarray(counts, dtype=np.int64)
    if len(values) != len(definitions):
        raise DisclosureError("definition_keys needs one count per definition")
    names = [f"{d}\x00{int(c)}" for d, c in zip(definitions, values.tolist(), strict=True)]
    keys = record_keys(names, secret=secret)
    return (keys >> np.uint64(11)).astype(np.float64) * _FLOAT_SCALE


def cellkey_round(
    counts: np.ndarray, *, cell_keys: np.ndarray, base: int, lowest: int = 1
) -> np.ndarray:
    """Round counts to a multiple of ``base``, up or down as each cell's key says.

    With ``r = count mod base``, a count rounds up when ``cell_key < r / base`` and down
    otherwise, so over uniform keys its expected value is the count itself. A multiple of
    ``base`` is unchanged. A non-zero count whose rounding down would give less than ``lowest``
    rounds up instead: a zero, or a value under the suppression threshold, would claim fewer
    people than there are. Only those counts lose unbiasedness (they are biased upwards).

    Parameters
    ----------
    counts
        Non-negative integer counts.
    cell_keys
        One key per count, floats in [0, 1) (from :func:`count_cells`).
    base
        The rounding base, 1 or more.
    lowest
        Smallest value a rounded non-zero count may take; ``max(min_cell, 1)`` under
        :func:`~oda_fed.disclosure.control_counts`.

    Returns
    -------
    numpy.ndarray
        ``int64`` multiples of ``base``.

    Examples
    --------
    >>> counts = np.array([12, 12, 15, 3])
    >>> cellkey_round(counts, cell_keys=np.array([0.3, 0.5, 0.9, 0.9]), base=5).tolist()
    [15, 10, 15, 5]
    """
    values = np.asarray(counts, dtype=np.int64)
    keys = _checked_keys(cell_keys, len(values))
    if isinstance(base, bool) or not isinstance(base, int) or base < 1:
        raise DisclosureError("base must be an integer of 1 or more")
    remainder = values % base
    down = values - remainder
    up = (keys < remainder / base) | ((down < lowest) & (values > 0))
    return np.where((remainder > 0) & up, down + base, down)


@dataclass(frozen=True, eq=False)
class CellCounts:
    """A count table with its cell keys kept apart, so the keys cannot be written out with it.

    Parameters
    ----------
    table
        One row per cell of the full grid: the dimension columns, then ``count`` (``int64``).
    cell_keys
        ``float64`` key in [0, 1) per row of ``table``, or None when no record keys were given.
        A cell key must never leave the coordinator: with it, a published value tells which
        way the cell was rounded.
    """

    table: pd.DataFrame
    cell_keys: np.ndarray | None


def count_cells(
    entities: pd.DataFrame,
    *,
    dimensions: Sequence[str],
    record_keys: np.ndarray | None = None,
    levels: Mapping[str, Sequence[object]] | None = None,
) -> CellCounts:
    """Count entities into every cell of a grid, and key each cell from its entities.

    Parameters
    ----------
    entities
        One row per entity with a column per dimension; no missing values (label unknowns
        first, as products do with "area not known").
    dimensions
        The dimension columns, in the order the grid's rows are sorted by.
    record_keys
        One record key per row of ``entities`` (:func:`record_keys`), or None for no cell keys.
    levels
        Per dimension, every value the grid must have, in order. Cells no entity falls in
        are kept with count 0: a missing row would itself say "nobody here". A dimension not
        given here takes its observed values, sorted.

    Returns
    -------
    CellCounts
        The grid as a table (the dimension columns and ``count``) and its cell keys.

    Raises
    ------
    DisclosureError
        On a missing dimension column, a missing value, a value not in its levels, or record
        keys that are not one ``uint64`` per entity.

    Examples
    --------
    >>> people = pd.DataFrame({"area": ["W1", "W1", "W2"], "partners": [1, 2, 1]})
    >>> cells = count_cells(people, dimensions=["area", "partners"],
    ...                     record_keys=record_keys(["a", "b", "c"], secret=b"k" * 32))
    >>> cells.table.values.tolist()
    [['W1', 1, 1], ['W1', 2, 1], ['W2', 1, 1], ['W2', 2, 0]]
    >>> cells.cell_keys.shape, float(cells.cell_keys[3])
    ((4,), 0.0)
    """
    dims = list(dimensions)
    if not dims:
        raise DisclosureError("count_cells needs at least one dimension")
    absent = [d for d in dims if d not in entities.columns]
    if absent:
        raise DisclosureError(f"entities lack dimension column(s) {absent}")
    given = dict(levels or {})
    axes: list[list[object]] = []
    codes: list[np.ndarray] = []
    for dim in dims:
        column = entities[dim]
        missing = int(column.isna().sum())
        if missing:
            raise DisclosureError(f"dimension {dim!r} has {missing} missing value(s)")
        axis = list(given[dim]) if dim in given else sorted(pd.unique(column))
        if len(set(axis)) != len(axis):
            raise DisclosureError(f"levels of {dim!r} repeat a value")
        code = pd.Index(axis).get_indexer(column)
        unlisted = int(np.count_nonzero(code < 0))
        if unlisted:
            raise DisclosureError(f"dimension {dim!r} has {unlisted} value(s) not in its levels")
        axes.append(axis)
        codes.append(code)
    shape = tuple(len(a) for a in axes)
    n_cells = int(np.prod(shape, dtype=np.int64))
    cell = np.ravel_multi_index(codes, shape) if len(entities) else np.zeros(0, dtype=np.intp)
    table = pd.MultiIndex.from_product(axes, names=dims).to_frame(index=False)
    table["count"] = np.bincount(cell, minlength=n_cells).astype(np.int64)
    keys = None
    if record_keys is not None:
        keys = _sum_keys(_checked_record_keys(record_keys, len(entities)), cell, n_cells)
    return CellCounts(table=table, cell_keys=keys)


def _sum_keys(keys: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """Each cell's key: its record keys summed modulo 2**64, as a float in [0, 1)."""
    sums = np.zeros(n_cells, dtype=np.uint64)
    # uint64 addition wraps modulo 2**64, which is the fractional part of the fixed-point sum.
    np.add.at(sums, cell, keys)
    return (sums >> np.uint64(11)).astype(np.float64) * _FLOAT_SCALE


def _hmac_pads(secret: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after HMAC's inner and outer key pads (RFC 2104)."""
    if not isinstance(secret, bytes | bytearray):
        raise DisclosureError("the cell-key secret must be bytes")
    if len(secret) < MIN_SECRET_BYTES:
        raise DisclosureError(f"the cell-key secret must be at least {MIN_SECRET_BYTES} bytes")
    key = bytes(secret)
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def _as_list(entity_ids: Iterable[object]) -> list[object]:
    if isinstance(entity_ids, str | bytes):
        raise DisclosureError("entity_ids must be a sequence of ids, not one string")
    if isinstance(entity_ids, pd.Index | pd.Series | np.ndarray):
        return entity_ids.tolist()
    return list(entity_ids)


def _checked_record_keys(keys: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(keys)
    if values.dtype != np.uint64 or values.shape != (n,):
        raise DisclosureError("record_keys must be one uint64 key per entity, from record_keys()")
    return values


def _checked_keys(cell_keys: np.ndarray, n: int) -> np.ndarray:
    """Cell keys as float64, one per cell, each in [0, 1); messages never quote a key."""
    keys = np.asarray(cell_keys, dtype=np.float64)
    if keys.shape != (n,):
        raise DisclosureError("cell_keys must hold one key per cell")
    bad = int(np.count_nonzero(~((keys >= 0.0) & (keys < 1.0))))
    if bad:
        raise DisclosureError(f"cell_keys has {bad} value(s) outside [0, 1)")
    return keys
