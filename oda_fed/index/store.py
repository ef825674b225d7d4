"""The linked index on disk: one SQLite file, changed only in whole transactions.

The file holds, per (source, record_id): its entity id, its CLK, a digest of the CLK and keyed
tokens, the keyed tokens themselves, its field evidence (with ``method = "fields"``) and the score
that put it in its entity. It also holds every entity id ever issued (retired ones included, so
none is issued twice), the project fingerprint and CLK width it was built under, the match weights
of the last full link (with ``method = "fields"``), and a history of updates.

It holds no names, dates, addresses or the linkage secret. It does hold record ids, so it belongs
with whoever runs the linkage, like ``links.csv``.

Opening checks the file (``PRAGMA quick_check``) and refuses a damaged one.

Durability: rollback journal (``journal_mode = DELETE``) and ``synchronous = FULL``, so a commit is
on disk when it returns and a crash mid-update leaves the file as it was before the update; at rest
the index is this one file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from oda_fed.durable import check_sqlite
from oda_fed.encoding.evidence import Evidence, Layout
from oda_fed.errors import InputDataError, ProjectMismatchError

#: Written into every index; an index with another format is refused rather than misread.
FORMAT = "oda-fed linked index 1"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- sources in the order they were first added, which is the order of every full link
CREATE TABLE sources (source TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE);
-- every entity id ever issued: retired ones stay, so that no id is ever issued twice
CREATE TABLE entities (entity_id TEXT PRIMARY KEY, created TEXT NOT NULL, retired TEXT);
CREATE TABLE records (
    source TEXT NOT NULL REFERENCES sources(source),
    record_id TEXT NOT NULL,
    entity_id TEXT NOT NULL REFERENCES entities(entity_id),
    -- Dice score of the match that put the record in its entity (NULL while it is alone)
    score REAL,
    -- SHA-256 of the CLK and keyed tokens: a record whose digest differs has changed
    digest TEXT NOT NULL,
    clk BLOB NOT NULL,
    -- keyed tokens as JSON {field: hex or null}, or NULL when the project has none
    tokens TEXT,
    -- field evidence, its columns one after the other (oda_fed.encoding.evidence.Evidence.rows),
    -- or NULL when the index links on CLKs alone
    evidence BLOB,
    PRIMARY KEY (source, record_id)
);
CREATE INDEX records_entity ON records (entity_id);
CREATE TABLE history (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def now() -> str:
    """UTC time in seconds, as the index writes it."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredSource:
    """One source's records as the index holds them, in insertion order.

    Attributes
    ----------
    source : str
    record_ids, entity_ids : list of str
    scores : numpy.ndarray
        ``float64``; NaN where the record is alone in its entity.
    digests : list of str
    clks : numpy.ndarray
        ``uint64`` ``(n, words)``, C-contiguous.
    tokens : dict of str to list
        Field to hex token (or None) per record; empty when the source has no keyed tokens.
    evidence : Evidence or None
        Field evidence, when it was asked for (``layout``) and every record has it.
    """

    source: str
    record_ids: list[str]
    entity_ids: list[str]
    scores: np.ndarray
    digests: list[str]
    clks: np.ndarray
    tokens: dict[str, list[str | None]]
    evidence: Evidence | None = None

    def __len__(self) -> int:
        return len(self.record_ids)


@dataclass(frozen=True)
class RecordRow:
    """One record to write: where it belongs and what identifies its content."""

    source: str
    record_id: str
    entity_id: str
    score: float | None
    digest: str
    clk: bytes
    tokens: str | None
    evidence: bytes | None = None


def tokens_json(tokens: dict[str, list[str | None]], row: int) -> str | None:
    """The JSON the index stores for one record's keyed tokens (None when there are none)."""
    if not tokens:
        return None
    return json.dumps({field: values[row] for field, values in sorted(tokens.items())})


class IndexStore:
    """Reads and writes of one index file; every change happens inside :meth:`transaction`.

    Open it with :meth:`open`, which checks the file is an index of this project before anything
    is written.
    """

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db

    # --- opening ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, fingerprint: str, words: int, create: bool) -> IndexStore:
        """Open (or with ``create`` make) the index at ``path`` for this project and CLK width.

        Raises
        ------
        ProjectMismatchError
            The index was built under another project fingerprint or CLK width; the file is
            left untouched.
        InputDataError
            The file is missing (without ``create``), is not an index, or has another format.
        """
        path = Path(path)
        if not path.exists() and not create:
            raise InputDataError(
                f"no linked index at {path}; give a new path to build one, or check the path"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        db = _connect(path)
        store = cls(path, db)
        try:
            meta = store._meta_or_none()
            if meta is None:
                store._initialise(fingerprint=fingerprint, words=words)
            else:
                _check_meta(meta, path=path, fingerprint=fingerprint, words=words)
                store._add_evidence_column()
        except BaseException:
            db.close()
            raise
        return store

    @classmethod
    def open_read_only(cls, path: Path) -> IndexStore:
        """Open an existing index without checking its project (for ``oda-fed index show``)."""
        path = Path(path)
        if not path.is_file():
            raise InputDataError(f"no linked index at {path}")
        db = _connect(path, read_only=True)
        store = cls(path, db)
        try:
            meta = store._meta_or_none()
            if meta is None:
                raise InputDataError(f"{path} is not an oda-fed linked index (it is empty)")
            if meta.get("format") != FORMAT:
                raise InputDataError(_format_message(path, meta))
        except BaseException:
            db.close()
            raise
        return store

    def close(self) -> None:
        self._db.close()

    def _meta_or_none(self) -> dict[str, str] | None:
        try:
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError:
            raise _not_sqlite(self.path) from None
        if not tables:
            return None
        if "meta" not in tables:
            raise InputDataError(
                f"{self.path} is a SQLite file but not an oda-fed linked index; check the path"
            )
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _initialise(self, *, fingerprint: str, words: int) -> None:
        with self.transaction() as db:
            # One statement at a time: executescript() would commit the transaction first.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            stamp = now()
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", FORMAT),
                    ("fingerprint", fingerprint),
                    ("words", str(words)),
                    ("created", stamp),
                    ("updated", stamp),
                ],
            )

    def _add_evidence_column(self) -> None:
        """Indexes made before field evidence was kept lack its column; it is added empty (their
        records link on CLKs until a rebuild gives them evidence)."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(records)")}
        if "evidence" not in columns:
            with self.transaction() as db:
                db.execute("ALTER TABLE records ADD COLUMN evidence BLOB")

    # --- transactions -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together, or none do (an exception rolls every one back)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise InputDataError(
                f"linked index {self.path} is busy ({exc}); wait for the other update to finish"
            ) from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- reading ----------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    @property
    def words(self) -> int:
        return int(self.meta()["words"])

    def sources(self) -> list[str]:
        """Every source the index holds records of (or once held), in the order first added."""
        return [r[0] for r in self._db.execute("SELECT source FROM sources ORDER BY seq")]

    def n_records(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def load_source(self, source: str, *, layout: Layout = ()) -> StoredSource:
        """One source's records; with ``layout``, their field evidence too (None when any record
        was stored without it)."""
        rows = self._db.execute(
            "SELECT record_id, entity_id, score, digest, clk, tokens, evidence FROM records "
            "WHERE source = ? ORDER BY rowid",
            (source,),
        ).fetchall()
        words = self.words
        clks = np.frombuffer(b"".join(r[4] for r in rows), dtype="<u8").astype(np.uint64)
        fields: dict[str, list[str | None]] = {}
        for i, r in enumerate(rows):
            if r[5] is None:
                continue
            for field, token in json.loads(r[5]).items():
                fields.setdefault(field, [None] * len(rows))[i] = token
        return StoredSource(
            source=source,
            record_ids=[r[0] for r in rows],
            entity_ids=[r[1] for r in rows],
            scores=np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
            digests=[r[3] for r in rows],
            clks=np.ascontiguousarray(clks.reshape(len(rows), words)),
            tokens=fields,
            evidence=(
                Evidence.from_rows(layout, [r[6] for r in rows])
                if layout and all(r[6] is not None for r in rows)
                else None
            ),
        )

    def members(self) -> list[tuple[str, str, str, float | None]]:
        """``(entity_id, source, record_id, score)`` for every record, by entity id."""
        return self._db.execute(
            "SELECT entity_id, source, record_id, score FROM records "
            "ORDER BY entity_id, source, record_id"
        ).fetchall()

    def issued_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT entity_id FROM entities")}

    def entity_sizes(self, entity_ids: Iterable[str]) -> dict[str, int]:
        """Records now in each of ``entity_ids`` (0 for an emptied one)."""
        out = {}
        for entity in set(entity_ids):
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM records WHERE entity_id = ?", (entity,)
            ).fetchone()
            out[entity] = int(count)
        return out

    def counts(self) -> tuple[dict[str, tuple[int, int]], int, int, int]:
        """Per source (records, records in linked entities); entities in use; linked entities
        (records of two or more sources); entity ids retired. Counted by SQLite, not in Python."""
        linked = (
            "SELECT entity_id FROM records GROUP BY entity_id HAVING COUNT(DISTINCT source) >= 2"
        )
        per_source = {
            source: (int(n), int(n_linked))
            for source, n, n_linked in self._db.execute(
                f"SELECT source, COUNT(*), SUM(entity_id IN ({linked})) FROM records GROUP BY source"
            )
        }
        (entities,) = self._db.execute("SELECT COUNT(DISTINCT entity_id) FROM records").fetchone()
        (n_linked,) = self._db.execute(f"SELECT COUNT(*) FROM ({linked})").fetchone()
        (retired,) = self._db.execute(
            "SELECT COUNT(*) FROM entities WHERE retired IS NOT NULL"
        ).fetchone()
        return per_source, int(entities), int(n_linked), int(retired)

    def active_ids(self) -> set[str]:
        """Entity ids that hold at least one record."""
        return {r[0] for r in self._db.execute("SELECT DISTINCT entity_id FROM records")}

    def history(self, *, last: int = 5) -> list[tuple[str, str, str]]:
        rows = self._db.execute(
            "SELECT at, action, detail FROM history ORDER BY seq DESC LIMIT ?", (last,)
        ).fetchall()
        return [tuple(r) for r in reversed(rows)]

    # --- writing (call inside transaction()) ------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def add_source(self, source: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO sources (source, seq) "
            "SELECT ?, COALESCE(MAX(seq), 0) + 1 FROM sources",
            (source,),
        )

    def issue(self, entity_ids: Iterable[str]) -> None:
        stamp = now()
        self._db.executemany(
            "INSERT INTO entities (entity_id, created) VALUES (?, ?)",
            [(e, stamp) for e in entity_ids],
        )

    def retire(self, entity_ids: Iterable[str]) -> None:
        stamp = now()
        self._db.executemany(
            "UPDATE entities SET retired = ? WHERE entity_id = ? AND retired IS NULL",
            [(stamp, e) for e in entity_ids],
        )

    def delete_records(self, source: str, record_ids: Iterable[str]) -> None:
        self._db.executemany(
            "DELETE FROM records WHERE source = ? AND record_id = ?",
            [(source, r) for r in record_ids],
        )

    def delete_all_records(self) -> None:
        self._db.execute("DELETE FROM records")

    def insert_records(self, rows: Iterable[RecordRow]) -> None:
        self._db.executemany(
            "INSERT INTO records (source, record_id, entity_id, score, digest, clk, tokens, "
            "evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (r.source, r.record_id, r.entity_id, r.score, r.digest, r.clk, r.tokens, r.evidence)
                for r in rows
            ),  # fmt: skip
        )

    def set_scores(self, scores: Iterable[tuple[str, str, float | None]]) -> None:
        """Set ``(source, record_id, score)``."""
        self._db.executemany(
            "UPDATE records SET score = ? WHERE source = ? AND record_id = ?",
            [(score, source, record) for source, record, score in scores],
        )

    def clear_lone_scores(self, entity_ids: Iterable[str]) -> None:
        """A record left alone in its entity is linked by nothing: its score becomes NULL."""
        self._db.executemany(
            "UPDATE records SET score = NULL WHERE entity_id = ?1 "
            "AND (SELECT COUNT(*) FROM records WHERE entity_id = ?1) = 1",
            [(e,) for e in set(entity_ids)],
        )

    def log(self, action: str, detail: dict[str, object]) -> None:
        stamp = now()
        self._db.execute(
            "INSERT INTO history (at, action, detail) VALUES (?, ?, ?)",
            (stamp, action, json.dumps(detail, sort_keys=True)),
        )
        self.set_meta("updated", stamp)


#: The first bytes of every SQLite file.
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as fh:
            if fh.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise _not_sqlite(path)
    if read_only:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    else:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE … COMMIT), never implied.
        db = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        if not read_only:
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError:
        db.close()
        raise _not_sqlite(path) from None
    try:
        check_sqlite(
            db,
            path=path,
            what="linked index",
            remedy="Restore it from your latest backup, or build a new index with a new --index "
            "path (entity ids then start afresh)",
        )
    except BaseException:
        db.close()
        raise
    return db


def _not_sqlite(path: Path) -> InputDataError:
    return InputDataError(
        f"{path} is not an oda-fed linked index (not a SQLite file); check the path"
    )


def _format_message(path: Path, meta: dict[str, str]) -> str:
    return (
        f"{path} is a linked index of format '{meta.get('format', '?')}'; this oda-fed reads "
        f"'{FORMAT}'. Use the oda-fed version that wrote it, or build a new index"
    )


def _check_meta(meta: dict[str, str], *, path: Path, fingerprint: str, words: int) -> None:
    if meta.get("format") != FORMAT:
        raise InputDataError(_format_message(path, meta))
    if meta.get("fingerprint") != fingerprint:
        raise ProjectMismatchError(
            f"linked index {path} was built under project fingerprint {meta.get('fingerprint')}, "
            f"not {fingerprint}; use the index built for this project, or give a new --index "
            "path to build one"
        )
    if meta.get("words") != str(words):
        raise ProjectMismatchError(
            f"linked index {path} holds {int(meta.get('words', 0)) * 64}-bit CLKs, not "
            f"{words * 64}-bit; use the index built with this encoding, or give a new --index path"
        )
