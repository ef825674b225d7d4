"""The release ledger: every released cell, so a new release cannot be differenced against an old one.

Two releases of the same cell whose true counts differ by a small non-zero amount give that small
group away: "one more person in W1 known to three services since last month". The coordinator
keeps this ledger, one SQLite file of its own. :meth:`ReleaseLedger.check` finds the cells of a
new release that differ from an earlier release of the same cell by fewer than ``min_cell``
(those are held, that is suppressed, and protected by secondary suppression like any other);
:meth:`ReleaseLedger.record` stores a release once it is approved.

What it holds: per released cell, its :class:`CellDefinition` (the product's kind, the cohort's
filters, the cell's coordinates), the round, the true count, the published value and whether the
cell was held. Never entity ids, record ids or names: nothing below the cell. The true counts make
the file as sensitive as the coordinator's other stores; it never leaves the coordinator.

Which earlier releases count
----------------------------
Every earlier release of the cell in which it was not held, not only the most recent: with
477 released, then 487, then 476, the third differs from the second by 11 but from the first by 1.
Suppressed releases count too: a cell suppressed at 9 and published at 10 next time is the
suppression threshold used as an oracle (an attacker adding dummy records one at a time learns the
exact count the moment the cell appears). Held releases do not count: nothing of them was seen, and
counting them would hold a slowly growing cell for ever. "Held" means every cell :meth:`check`
returned, including those also below ``min_cell``: then whether a cell is held depends only on how
its count moved between rounds, which an attacker adding dummy records knows already, and never on
the count itself. (Were a small held cell kept as a baseline, the round in which the cell stopped
being small would decide the next holds, and give the count away.)

Overlap
-------
:attr:`Overlap.EXACT` compares a cell with releases of the same definition only.
:attr:`Overlap.NESTED` also compares it with cells of the same product kind and coordinates whose
cohort is nested in its own or contains it (the same cell for all adults and for adults known to
social care), in earlier releases and within the release being checked; the narrower of a nested
pair within one release is the one held. Not covered: nested coordinates (a ward inside a district,
an age band inside a wider one), cohorts that overlap without nesting, sums of several cells
differenced against other sums, and differences between products the ledger was not told about.

What a hold still shows
-----------------------
A held cell is published as suppressed, like a small one, so its count is not shown; but that it
turned suppressed is. An attacker who knows that exactly one person changed since the last release
learns that the person is in one of the cells that turned suppressed (the held cell and its
complements). To hide even that, hold the whole product while any of its cells is held
(``ControlledTable.held.any()``): the round waits for its approver, as the design's
``awaiting_release`` allows.
"""

from __future__ import annotations

import enum
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.disclosure.rules import DisclosureError

__all__ = ["CellDefinition", "LedgerHold", "Overlap", "ReleaseLedger"]

#: Written into every ledger; a ledger with another format is refused rather than misread.
FORMAT = "oda-fed release ledger 1"

# No ';' inside comments: the statements are run one by one, split on it, inside one transaction.
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- one row per approved release (a round may be released a product at a time)
CREATE TABLE releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    round_id TEXT NOT NULL,
    recorded TEXT NOT NULL
);
CREATE TABLE cells (
    release INTEGER NOT NULL REFERENCES releases(seq),
    round_id TEXT NOT NULL,
    -- CellDefinition.key: canonical JSON of product, cohort and coordinates
    definition TEXT NOT NULL,
    -- CellDefinition.frame: the same without the cohort, for nested-cohort matching
    frame TEXT NOT NULL,
    true_count INTEGER NOT NULL CHECK (true_count >= 0),
    -- what was published, NULL where the cell was suppressed or held
    published INTEGER,
    held INTEGER NOT NULL CHECK (held IN (0, 1)),
    PRIMARY KEY (round_id, definition)
);
CREATE INDEX cells_definition ON cells (definition, release);
CREATE INDEX cells_frame ON cells (frame, release);
"""

# SQLite's default limit on bound parameters is 999 in older builds; stay under it.
_CHUNK = 500


class Overlap(enum.Enum):
    """Which earlier cells :meth:`ReleaseLedger.check` compares a new cell with."""

    #: The same definition only.
    EXACT = "exact"
    #: The same definition, and the same product kind and coordinates with a nested cohort.
    NESTED = "nested"


@dataclass(frozen=True)
class CellDefinition:
    """What a cell counts, in a canonical form that is stable across rounds and versions.

    Build it with :meth:`of`. Two cells with equal definitions count the same thing; their
    true counts can be differenced.

    Parameters
    ----------
    product
        The product's kind and anything else fixing what it counts, such as where its
        dimensions come from (``"partners_by_area/council.ward"``). Not the product's id: two
        products counting the same thing are the same cells whatever they are called. (A
        ledger belongs to one project, so the project need not be part of it.)
    coordinates
        ``(dimension, value)`` pairs, sorted by dimension; values as text.
    cohort
        ``(attribute, allowed values)`` filters, all of which an entity meets to be counted,
        sorted; values as sorted text. Empty: every linked entity.

    Examples
    --------
    >>> a = CellDefinition.of("partners_by_area", coordinates={"partners": 2, "area": "W1"})
    >>> b = CellDefinition.of("partners_by_area", coordinates={"area": "W1", "partners": "2"})
    >>> a == b, a.key
    (True, '{"cohort":[],"coordinates":[["area","W1"],["partners","2"]],"product":"partners_by_area"}')
    """

    product: str
    coordinates: tuple[tuple[str, str], ...]
    cohort: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.product, str) or not self.product:
            raise DisclosureError("a cell definition needs a product kind")
        # Values as text, pairs sorted: the same cell has one definition however it was built.
        coordinates = tuple(sorted((str(d), str(v)) for d, v in self.coordinates))
        cohort = tuple(
            sorted((str(a), tuple(sorted({str(v) for v in vs}))) for a, vs in self.cohort)
        )
        if len({d for d, _ in coordinates}) != len(coordinates):
            raise DisclosureError("a cell definition repeats a dimension")
        if len({a for a, _ in cohort}) != len(cohort):
            raise DisclosureError("a cell definition repeats a cohort attribute")
        object.__setattr__(self, "coordinates", coordinates)
        object.__setattr__(self, "cohort", cohort)

    @classmethod
    def of(
        cls,
        product: str,
        *,
        coordinates: Mapping[str, object],
        cohort: Mapping[str, Iterable[object]] | None = None,
    ) -> CellDefinition:
        """A definition from mappings: ``coordinates`` dimension to value, ``cohort`` attribute
        to its allowed values.

        Examples
        --------
        >>> CellDefinition.of("p", coordinates={"area": "W1"}, cohort={"age": ["65+", "18-64"]}).cohort
        (('age', ('18-64', '65+')),)
        """
        return cls(
            product=product,
            coordinates=tuple(coordinates.items()),
            cohort=tuple((a, tuple(vs)) for a, vs in (cohort or {}).items()),
        )

    @property
    def key(self) -> str:
        """The canonical text the ledger stores and matches on."""
        return _canonical(self.product, self.coordinates, self.cohort)

    @property
    def frame(self) -> str:
        """The key without the cohort: cells that count the same thing over possibly other people."""
        return _canonical(self.product, self.coordinates, ())

    def narrower_than(self, other: CellDefinition) -> bool:
        """Whether this cell counts a strict subset of the entities ``other`` counts, by cohort.

        Examples
        --------
        >>> wide = CellDefinition.of("p", coordinates={"area": "W1"})
        >>> narrow = CellDefinition.of("p", coordinates={"area": "W1"}, cohort={"age": ["65+"]})
        >>> narrow.narrower_than(wide), wide.narrower_than(narrow)
        (True, False)
        """
        if self.frame != other.frame or self.cohort == other.cohort:
            return False
        mine = dict(self.cohort)
        # Every filter of the wider cohort must also bind here, at least as tightly.
        return all(a in mine and set(mine[a]) <= set(vs) for a, vs in other.cohort)


@dataclass(frozen=True)
class LedgerHold:
    """A cell of a new release held because an earlier release is too close to it.

    Parameters
    ----------
    position
        The cell's position in the definitions given to :meth:`ReleaseLedger.check`.
    definition
        The held cell.
    earlier_round
        The round of the most recent release it conflicts with, or None when the conflict is
        with another cell of the release being checked (nested cohorts).
    nested
        Whether the conflict is with a nested cohort rather than the same definition.
    min_cell
        The threshold the difference fell below.
    """

    position: int
    definition: CellDefinition
    earlier_round: str | None
    nested: bool
    min_cell: int

    @property
    def reason(self) -> str:
        """One line for the disclosure report; it quotes no count."""
        what = "a nested cohort's cell" if self.nested else "its release"
        when = f"{self.earlier_round}" if self.earlier_round else "in this release"
        return f"held: differs from {what} {when} by fewer than {self.min_cell}"


class ReleaseLedger:
    """The coordinator's ledger of released cells, in one SQLite file.

    Open it with a path (the file is created on first use, owner-only) and close it, or use it
    as a context manager. Every :meth:`record` is one transaction: a release is stored whole or
    not at all.

    Parameters
    ----------
    path
        The ledger file.

    Raises
    ------
    DisclosureError
        When the file is not a release ledger of this format.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> where = pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite"
    >>> cell = [CellDefinition.of("p", coordinates={"area": "W1"})]
    >>> with ReleaseLedger(where) as ledger:
    ...     ledger.record("r1", definitions=cell, counts=[477], published=[475])
    ...     [h.earlier_round for h in ledger.check(cell, [478], min_cell=10)]
    ['r1']
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise DisclosureError(f"cannot open the release ledger {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode = DELETE")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            with self._transaction():
                tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
                if not tables:
                    # executescript would commit the open transaction; run each statement in it.
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            self._db.close()
            raise DisclosureError(f"{self.path} is not an oda-fed release ledger") from None
        if meta.get("format") != FORMAT:
            self._db.close()
            raise DisclosureError(f"{self.path} is not a release ledger of format {FORMAT!r}")
        # True counts: the owner's only, whatever the umask (SQLite gives its journal the same
        # mode).
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> ReleaseLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(
        self,
        definitions: Sequence[CellDefinition],
        counts: Sequence[int] | np.ndarray,
        *,
        min_cell: int,
        overlap: Overlap = Overlap.EXACT,
    ) -> list[LedgerHold]:
        """The cells of a new release to hold: those within ``min_cell`` of an earlier release.

        A cell is held when its true count differs from the true count of an earlier release
        of the same cell (suppressed or published, not held) by a non-zero amount below
        ``min_cell``. The module docstring says which earlier releases count, and what
        ``overlap`` adds. Nothing is written.

        Parameters
        ----------
        definitions
            The new release's cells.
        counts
            Their true counts, in the same order.
        min_cell
            The release's threshold (the strictest of the partners involved).
        overlap
            Which earlier cells to compare with.

        Returns
        -------
        list of LedgerHold
            One per held cell, by position; each names the most recent conflicting round.

        Examples
        --------
        See :class:`ReleaseLedger`.
        """
        keys = [d.key for d in definitions]
        values = _checked_counts(counts, len(keys))
        if isinstance(min_cell, bool) or not isinstance(min_cell, int) or min_cell < 0:
            raise DisclosureError("min_cell must be an integer of 0 or more")
        holds: dict[int, LedgerHold] = {}
        # Rows come most recent first, so the first conflict found per cell is the one reported.
        earlier: dict[str, list[tuple[str, int]]] = {}
        for key, _, round_id, true_count in self._earlier("definition", keys):
            earlier.setdefault(key, []).append((round_id, true_count))
        for i, key in enumerate(keys):
            for round_id, count in earlier.get(key, []):
                if _close(int(values[i]), count, min_cell):
                    holds[i] = LedgerHold(i, definitions[i], round_id, False, min_cell)
                    break
        if overlap is Overlap.NESTED:
            self._check_nested(definitions, values, min_cell=min_cell, holds=holds)
        return [holds[i] for i in sorted(holds)]

    def record(
        self,
        round_id: str,
        *,
        definitions: Sequence[CellDefinition],
        counts: Sequence[int] | np.ndarray,
        published: Sequence[int | None] | pd.Series | np.ndarray,
        held: Sequence[bool] | np.ndarray | None = None,
    ) -> None:
        """Store an approved release: every cell with its true count and what was published.

        Parameters
        ----------
        round_id
            The round the release belongs to.
        definitions
            The released cells.
        counts
            Their true counts.
        published
            What was published per cell; None (or ``<NA>``) where suppressed or held.
        held
            Which cells :meth:`check` returned, whether or not they were also suppressed for
            being small (:attr:`ControlledTable.held`); None for none. Held cells are stored
            but never compared with later releases.

        Raises
        ------
        DisclosureError
            On lengths that differ, counts that are not non-negative integers, or a cell this
            round has already recorded; nothing is stored then.
        """
        keys = [d.key for d in definitions]
        frames = [d.frame for d in definitions]
        values = _checked_counts(counts, len(keys))
        shown = pd.array(published, dtype="Int64") if len(keys) else pd.array([], dtype="Int64")
        if len(shown) != len(keys):
            raise DisclosureError("published must hold one value per cell")
        flags = np.zeros(len(keys), dtype=bool) if held is None else np.asarray(held, dtype=bool)
        if flags.shape != (len(keys),):
            raise DisclosureError("held must hold one flag per cell")
        if len(set(keys)) != len(keys):
            raise DisclosureError("a release lists the same cell twice")
        rows = [
            (round_id, k, f, int(c), None if pd.isna(p) else int(p), int(h))
            for k, f, c, p, h in zip(keys, frames, values, shown, flags, strict=True)
        ]
        try:
            with self._transaction():
                seq = self._db.execute(
                    "INSERT INTO releases (round_id, recorded) VALUES (?, ?)",
                    (round_id, _now()),
                ).lastrowid
                self._db.executemany(
                    "INSERT INTO cells (release, round_id, definition, frame, true_count, "
                    "published, held) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(seq, *row) for row in rows],
                )
        except sqlite3.IntegrityError:
            raise DisclosureError(
                f"round {round_id!r} has already recorded one of these cells; nothing was stored"
            ) from None

    def rounds(self) -> list[str]:
        """The rounds recorded, oldest first (a round released in parts is listed once).

        Examples
        --------
        See :class:`ReleaseLedger`.
        """
        rows = self._db.execute(
            "SELECT round_id, MIN(seq) FROM releases GROUP BY round_id ORDER BY 2"
        )
        return [r[0] for r in rows]

    def _check_nested(
        self,
        definitions: Sequence[CellDefinition],
        values: np.ndarray,
        *,
        min_cell: int,
        holds: dict[int, LedgerHold],
    ) -> None:
        """Add to ``holds`` the cells close to a nested cohort's cell, earlier or in this release."""
        frames = [d.frame for d in definitions]
        earlier: dict[str, list[tuple[CellDefinition, str, int]]] = {}
        for key, frame, round_id, true_count in self._earlier("frame", frames):
            earlier.setdefault(frame, []).append((_from_key(key), round_id, true_count))
        for i, cell in enumerate(definitions):
            if i in holds:
                continue
            for other, round_id, count in earlier.get(frames[i], []):
                nested = cell.narrower_than(other) or other.narrower_than(cell)
                if nested and _close(int(values[i]), count, min_cell):
                    holds[i] = LedgerHold(i, cell, round_id, True, min_cell)
                    break
        # Within the release, hold the narrower cell of each close nested pair: hiding one of the
        # two is enough, and the narrower is the one the difference is about.
        same_frame: dict[str, list[int]] = {}
        for i, frame in enumerate(frames):
            same_frame.setdefault(frame, []).append(i)
        for group in same_frame.values():
            for i in group:
                if i in holds:
                    continue
                for j in group:
                    narrower = definitions[i].narrower_than(definitions[j])
                    if narrower and _close(int(values[i]), int(values[j]), min_cell):
                        holds[i] = LedgerHold(i, definitions[i], None, True, min_cell)
                        break

    def _earlier(self, column: str, wanted: Sequence[str]) -> list[tuple[str, str, str, int]]:
        """``(definition, frame, round, true count)`` of the cells not held whose ``column``
        (definition or frame) is in ``wanted``, most recent release first."""
        out: list[tuple[str, str, str, int]] = []
        distinct = sorted(set(wanted))
        # All rows of one value fall in one chunk, so each value's rows stay in release order.
        for start in range(0, len(distinct), _CHUNK):
            chunk = distinct[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            out += self._db.execute(
                "SELECT definition, frame, round_id, true_count FROM cells "
                f"WHERE held = 0 AND {column} IN ({marks}) ORDER BY release DESC",
                chunk,
            ).fetchall()
        return out

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _close(count: int, earlier: int, min_cell: int) -> bool:
    """Whether two true counts differ by a small group: more than nobody, fewer than min_cell."""
    return 0 < abs(count - earlier) < min_cell


def _canonical(
    product: str,
    coordinates: tuple[tuple[str, str], ...],
    cohort: tuple[tuple[str, tuple[str, ...]], ...],
) -> str:
    # Sorted keys, no spaces, lists for tuples: the same definition is the same text everywhere.
    doc = {
        "product": product,
        "coordinates": [list(c) for c in coordinates],
        "cohort": [[a, list(vs)] for a, vs in cohort],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _from_key(key: str) -> CellDefinition:
    doc = json.loads(key)
    return CellDefinition(
        product=doc["product"],
        coordinates=tuple((d, v) for d, v in doc["coordinates"]),
        cohort=tuple((a, tuple(vs)) for a, vs in doc["cohort"]),
    )


def _checked_counts(counts: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(counts)
    if values.shape != (n,):
        raise DisclosureError("counts must hold one true count per cell")
    if n and (not np.issubdtype(values.dtype, np.integer) or int(values.min()) < 0):
        raise DisclosureError("counts must be non-negative integers")
    return values.astype(np.int64)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
