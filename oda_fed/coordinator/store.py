"""The coordinator's durable state in SQLite: rounds, uploads, the linked index, deliveries.

Everything a restart must remember lives here, so a coordinator that stops mid-round picks the round up
where it was. Each upload chunk is written in one transaction together with its bookkeeping, so a
truncated or refused upload leaves nothing half-stored.

Nothing here holds names, dates, addresses, record ids or the linkage secret: only CLKs, per-round refs,
entity ids and the attribute values the project explicitly allows, plus, for a project that sets
``stable_entity_ids``, each record's record key (a keyed pseudonym of its id).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from oda_fed.errors import ProtocolError

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS rounds (
    round_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    project TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    entities INTEGER NOT NULL DEFAULT 0,
    linked_entities INTEGER NOT NULL DEFAULT 0,
    report TEXT NOT NULL DEFAULT '',
    -- how matching made this round's entities (kept when later states replace the message)
    linkage TEXT NOT NULL DEFAULT '',
    clks_deleted TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    round_id TEXT NOT NULL REFERENCES rounds(round_id),
    partner TEXT NOT NULL,
    upload TEXT NOT NULL,
    total_chunks INTEGER NOT NULL,
    total_records INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round_id, partner, upload)
);
CREATE TABLE IF NOT EXISTS chunks (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    upload TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    first_ref INTEGER NOT NULL,
    records INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    -- keyed tokens of exact identifiers that came with a CLK chunk (JSON: field -> hex or null)
    tokens BLOB,
    -- record keys (32 bytes per record, ref order, concatenated) when the project keeps entity ids
    -- stable; keyed pseudonyms of record ids, never the ids themselves
    record_keys BLOB,
    PRIMARY KEY (round_id, partner, upload, chunk_index)
);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    first_round TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    ref INTEGER NOT NULL,
    entity_id TEXT NOT NULL REFERENCES entities(entity_id),
    score REAL,
    PRIMARY KEY (round_id, partner, ref)
);
CREATE TABLE IF NOT EXISTS deliveries (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    what TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (round_id, partner, what)
);
CREATE TABLE IF NOT EXISTS products (
    round_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (round_id, product_id, name)
);
"""

CLKS = "clks"
#: Length of one record key (an HMAC-SHA256 digest).
RECORD_KEY_BYTES = 32


def attribute_upload(product_id: str, attribute: str) -> str:
    return f"attribute:{product_id}:{attribute}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Round:
    round_id: str
    seq: int
    project: str
    state: str
    message: str
    entities: int
    linked_entities: int
    report: str
    linkage: str = ""


@dataclass(frozen=True)
class UploadState:
    total_chunks: int
    total_records: int
    complete: bool
    stored_chunks: tuple[int, ...]
    records_stored: int


@dataclass(frozen=True)
class Chunk:
    chunk_index: int
    total_chunks: int
    first_ref: int
    records: int
    total_records: int
    data: bytes
    tokens: bytes | None = None
    # 32 bytes per record, concatenated, for projects with stable entity ids
    record_keys: bytes | None = None

    def digest(self) -> str:
        """SHA-256 of what the chunk carries, to tell a re-sent chunk from a contradicting one."""
        h = hashlib.sha256(self.data + (self.tokens or b""))
        if self.record_keys is not None:
            # Only chunks with record keys hash them, so digests of older chunks are unchanged.
            h.update(b"\x00record_keys\x00" + self.record_keys)
        return h.hexdigest()


class Store:
    """Thread-safe access to the coordinator's SQLite database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(SCHEMA)
        self._db.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def _migrate(self) -> None:
        """Bring a database written by an earlier version up to this schema (columns only added)."""
        for table, column, decl in [
            ("chunks", "record_keys", "BLOB"),
            ("rounds", "linkage", "TEXT NOT NULL DEFAULT ''"),
        ]:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- rounds ---------------------------------------------------------------------------------

    def create_round(self, *, round_id: str, project: str, partners: list[str]) -> Round:
        with self._tx() as db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM rounds").fetchone()
            now = _now()
            db.execute(
                "INSERT INTO rounds (round_id, seq, project, state, created, updated) "
                "VALUES (?, ?, ?, 'open', ?, ?)",
                (round_id, seq, project, now, now),
            )
            for partner in partners:
                db.execute(
                    "INSERT INTO deliveries (round_id, partner, what) VALUES (?, ?, ?)",
                    (round_id, partner, "encode_and_upload"),
                )
        return self.round(round_id)

    def round(self, round_id: str | None = None) -> Round | None:
        cols = "round_id, seq, project, state, message, entities, linked_entities, report, linkage"
        if round_id:
            rows = self._query(f"SELECT {cols} FROM rounds WHERE round_id = ?", (round_id,))
        else:
            rows = self._query(f"SELECT {cols} FROM rounds ORDER BY seq DESC LIMIT 1")
        return Round(*rows[0]) if rows else None

    def active_rounds(self) -> list[Round]:
        cols = "round_id, seq, project, state, message, entities, linked_entities, report, linkage"
        rows = self._query(
            f"SELECT {cols} FROM rounds WHERE state NOT IN ('closed', 'failed') ORDER BY seq"
        )
        return [Round(*r) for r in rows]

    def set_state(
        self, round_id: str, state: str, *, message: str | None = None, **counts: object
    ) -> None:
        sets = ["state = ?", "updated = ?"]
        args: list[object] = [state, _now()]
        if message is not None:
            sets.append("message = ?")
            args.append(message)
        for key in ("entities", "linked_entities", "report", "linkage"):
            if key in counts:
                sets.append(f"{key} = ?")
                args.append(counts[key])
        with self._tx() as db:
            db.execute(f"UPDATE rounds SET {', '.join(sets)} WHERE round_id = ?", (*args, round_id))

    def expired_clks(self, *, older_than: datetime) -> list[tuple[str, int]]:
        """Finished rounds whose CLKs are past retention: (round_id, number of CLKs held)."""
        cutoff = older_than.isoformat(timespec="seconds").replace("+00:00", "Z")
        return self._query(
            "SELECT r.round_id, COALESCE(SUM(c.records), 0) FROM rounds r LEFT JOIN chunks c "
            "ON c.round_id = r.round_id AND c.upload = ? WHERE r.state IN ('closed', 'failed') "
            "AND r.clks_deleted IS NULL AND r.updated <= ? GROUP BY r.round_id ORDER BY r.seq",
            (CLKS, cutoff),
        )

    def delete_clks(self, round_id: str) -> None:
        """Delete a round's CLKs for good (the linked index and products stay)."""
        with self._tx() as db:
            db.execute("DELETE FROM chunks WHERE round_id = ? AND upload = ?", (round_id, CLKS))
            db.execute("UPDATE rounds SET clks_deleted = ? WHERE round_id = ?", (_now(), round_id))
        with self._lock:
            self._db.execute("VACUUM")  # so deleted CLKs do not linger in free pages

    # --- uploads --------------------------------------------------------------------------------

    def store_chunk(self, *, round_id: str, partner: str, upload: str, chunk: Chunk) -> UploadState:
        """Store one chunk idempotently; return where the upload stands.

        A chunk seen before with the same content is accepted and not stored twice. A chunk that
        contradicts what was stored (other content, other totals) is refused and nothing changes.
        """
        digest = chunk.digest()
        with self._tx() as db:
            row = db.execute(
                "SELECT total_chunks, total_records, complete FROM uploads "
                "WHERE round_id = ? AND partner = ? AND upload = ?",
                (round_id, partner, upload),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO uploads (round_id, partner, upload, total_chunks, total_records) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (round_id, partner, upload, chunk.total_chunks, chunk.total_records),
                )
            elif (row[0], row[1]) != (chunk.total_chunks, chunk.total_records):
                raise ProtocolError(
                    f"chunk {chunk.chunk_index} says the upload has {chunk.total_chunks} chunks and "
                    f"{chunk.total_records} records, but it was started with {row[0]} and {row[1]}"
                )
            old = db.execute(
                "SELECT sha256 FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? "
                "AND chunk_index = ?",
                (round_id, partner, upload, chunk.chunk_index),
            ).fetchone()
            if old is not None and old[0] != digest:
                raise ProtocolError(
                    f"chunk {chunk.chunk_index} was already received with different content; "
                    "a round's data cannot change once sent"
                )
            if old is None:
                db.execute(
                    "INSERT INTO chunks (round_id, partner, upload, chunk_index, first_ref, records, "
                    "sha256, data, tokens, record_keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        round_id,
                        partner,
                        upload,
                        chunk.chunk_index,
                        chunk.first_ref,
                        chunk.records,
                        digest,
                        chunk.data,
                        chunk.tokens,
                        chunk.record_keys,
                    ),
                )
            state = self._upload_state(db, round_id, partner, upload)
            if state is not None and not state.complete and self._all_there(state):
                self._check_contiguous(db, round_id, partner, upload, state.total_records)
                self._check_record_keys_unique(db, round_id, partner, upload)
                db.execute(
                    "UPDATE uploads SET complete = 1 WHERE round_id = ? AND partner = ? AND upload = ?",
                    (round_id, partner, upload),
                )
                state = self._upload_state(db, round_id, partner, upload)
        assert state is not None
        return state

    @staticmethod
    def _all_there(state: UploadState) -> bool:
        return (
            len(state.stored_chunks) == state.total_chunks
            and state.records_stored == state.total_records
        )

    @staticmethod
    def _check_contiguous(
        db: sqlite3.Connection, round_id: str, partner: str, upload: str, total: int
    ) -> None:
        expected = 0
        for first_ref, records in db.execute(
            "SELECT first_ref, records FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? "
            "ORDER BY first_ref",
            (round_id, partner, upload),
        ):
            if first_ref != expected:
                raise ProtocolError(
                    f"chunks do not cover refs contiguously (gap or overlap at ref {expected})"
                )
            expected += records
        if expected != total:
            raise ProtocolError(f"chunks cover {expected} refs, but the upload declared {total}")

    @staticmethod
    def _check_record_keys_unique(
        db: sqlite3.Connection, round_id: str, partner: str, upload: str
    ) -> None:
        # A repeated record key would make two records one in the linked index; refuse the
        # upload now, while the node can still be told, rather than fail the round later.
        seen: set[bytes] = set()
        expected = 0
        for (blob,) in db.execute(
            "SELECT record_keys FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? "
            "AND record_keys IS NOT NULL",
            (round_id, partner, upload),
        ):
            for at in range(0, len(blob), RECORD_KEY_BYTES):
                seen.add(blob[at : at + RECORD_KEY_BYTES])
                expected += 1
        if len(seen) != expected:
            raise ProtocolError(
                f"the upload repeats {expected - len(seen)} record key(s); each record id must "
                "be unique within a partner's data"
            )

    @staticmethod
    def _upload_state(
        db: sqlite3.Connection, round_id: str, partner: str, upload: str
    ) -> UploadState | None:
        row = db.execute(
            "SELECT total_chunks, total_records, complete FROM uploads "
            "WHERE round_id = ? AND partner = ? AND upload = ?",
            (round_id, partner, upload),
        ).fetchone()
        if row is None:
            return None
        stored = db.execute(
            "SELECT chunk_index, records FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? "
            "ORDER BY chunk_index",
            (round_id, partner, upload),
        ).fetchall()
        return UploadState(
            total_chunks=row[0],
            total_records=row[1],
            complete=bool(row[2]),
            stored_chunks=tuple(i for i, _ in stored),
            records_stored=sum(n for _, n in stored),
        )

    def upload_state(self, *, round_id: str, partner: str, upload: str) -> UploadState | None:
        with self._lock:
            return self._upload_state(self._db, round_id, partner, upload)

    def upload_complete(self, *, round_id: str, partner: str, upload: str) -> bool:
        state = self.upload_state(round_id=round_id, partner=partner, upload=upload)
        return bool(state and state.complete)

    def chunk_data(self, *, round_id: str, partner: str, upload: str) -> list[bytes]:
        """The stored chunks of a complete upload, in ref order."""
        rows = self._query(
            "SELECT data FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? ORDER BY first_ref",
            (round_id, partner, upload),
        )
        return [r[0] for r in rows]

    def load_tokens(self, *, round_id: str, partner: str, field: str) -> list[str | None]:
        """A complete CLK upload's keyed tokens for ``field`` (hex, None where missing), ref order."""
        out: list[str | None] = []
        for (blob,) in self._query(
            "SELECT tokens FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? "
            "ORDER BY first_ref",
            (round_id, partner, CLKS),
        ):
            out.extend(json.loads(blob)[field] if blob else [])
        return out

    def load_record_keys(self, *, round_id: str, partner: str) -> list[str]:
        """A complete CLK upload's record keys (hex), in ref order; empty when none were sent."""
        out: list[str] = []
        for (blob,) in self._query(
            "SELECT record_keys FROM chunks WHERE round_id = ? AND partner = ? AND upload = ? "
            "ORDER BY first_ref",
            (round_id, partner, CLKS),
        ):
            if blob:
                out.extend(
                    blob[at : at + RECORD_KEY_BYTES].hex()
                    for at in range(0, len(blob), RECORD_KEY_BYTES)
                )
        return out

    def load_clks(self, *, round_id: str, partner: str, words: int) -> np.ndarray:
        blobs = self.chunk_data(round_id=round_id, partner=partner, upload=CLKS)
        if not blobs:
            return np.zeros((0, words), dtype=np.uint64)
        raw = b"".join(blobs)
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(-1, words)

    # --- linked index ---------------------------------------------------------------------------

    def store_members(
        self,
        *,
        round_id: str,
        rows: list[tuple[str, int, str, float | None]],
        new_entities: list[str],
    ) -> None:
        """Record (partner, ref, entity_id, score) for a round and register new entity ids."""
        with self._tx() as db:
            db.execute("DELETE FROM members WHERE round_id = ?", (round_id,))
            db.executemany(
                "INSERT OR IGNORE INTO entities (entity_id, first_round) VALUES (?, ?)",
                [(e, round_id) for e in new_entities],
            )
            db.executemany(
                "INSERT INTO members (round_id, partner, ref, entity_id, score) VALUES (?, ?, ?, ?, ?)",
                [(round_id, p, r, e, s) for p, r, e, s in rows],
            )

    def entity_ids(self, *, round_id: str, partner: str) -> list[tuple[int, str]]:
        return self._query(
            "SELECT ref, entity_id FROM members WHERE round_id = ? AND partner = ? ORDER BY ref",
            (round_id, partner),
        )

    def members(self, *, round_id: str) -> list[tuple[str, int, str, float | None]]:
        return self._query(
            "SELECT partner, ref, entity_id, score FROM members WHERE round_id = ? ORDER BY partner, ref",
            (round_id,),
        )

    # --- deliveries -----------------------------------------------------------------------------

    def add_deliveries(self, *, round_id: str, items: list[tuple[str, str]]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (round_id, partner, what) VALUES (?, ?, ?)",
                [(round_id, p, w) for p, w in items],
            )

    def pending_deliveries(self, *, partner: str) -> list[tuple[str, str]]:
        """(round_id, what) not yet acknowledged by ``partner``, oldest round first."""
        return self._query(
            "SELECT d.round_id, d.what FROM deliveries d JOIN rounds r USING (round_id) "
            "WHERE d.partner = ? AND d.done = 0 AND r.state NOT IN ('failed') ORDER BY r.seq, d.rowid",
            (partner,),
        )

    def mark_delivered(self, *, round_id: str, partner: str, what: str, error: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET done = ?, error = ? WHERE round_id = ? AND partner = ? AND what = ?",
                (0 if error else 1, error, round_id, partner, what),
            )

    def deliveries(self, *, round_id: str) -> list[tuple[str, str, bool, str]]:
        return [
            (p, w, bool(d), e)
            for p, w, d, e in self._query(
                "SELECT partner, what, done, error FROM deliveries WHERE round_id = ? ORDER BY rowid",
                (round_id,),
            )
        ]

    # --- products -------------------------------------------------------------------------------

    def add_product_file(
        self, *, round_id: str, product_id: str, name: str, media_type: str, path: Path
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO products (round_id, product_id, name, media_type, path) "
                "VALUES (?, ?, ?, ?, ?)",
                (round_id, product_id, name, media_type, str(path)),
            )

    def product_files(
        self, *, round_id: str, product_id: str | None = None
    ) -> list[tuple[str, str, str, str]]:
        sql = "SELECT product_id, name, media_type, path FROM products WHERE round_id = ?"
        args: tuple = (round_id,)
        if product_id is not None:
            sql += " AND product_id = ?"
            args += (product_id,)
        return self._query(sql + " ORDER BY product_id, name", args)
