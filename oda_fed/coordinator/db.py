"""The coordinator's SQLite database: one connection, its schema, and migrations from earlier versions.

Everything a restart must remember lives here. The tables are read and written through
:mod:`oda_fed.coordinator.store` (rounds, deliveries, results) and
:mod:`oda_fed.coordinator.chunks` (uploads).

Nothing here holds names, dates, addresses, record ids or the linkage secret: only CLKs, per-round
refs, entity ids and the attribute values the project explicitly allows, plus, for a project that
sets ``stable_entity_ids``, each record's record key (a keyed pseudonym of its id).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from oda_fed.durable import check_sqlite, private_dir, private_file

#: ``PRAGMA user_version`` of this schema. Version 4 added certificate pins, version 3 the key
#: relay's tables. Version 1
#: named round states and deliveries differently
#: (``waiting_attributes``, ``releasing``; ``attribute:<product>:<name>`` as one string).
SCHEMA_VERSION = 6

SCHEMA = (
    """
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
    updated TEXT NOT NULL,
    -- when the round is cancelled unless released (RFC 3339, UTC)
    deadline TEXT NOT NULL DEFAULT '',
    quality_report TEXT NOT NULL DEFAULT '',
    -- "operator:<name>" or "auto_release", once released
    released_by TEXT NOT NULL DEFAULT '',
    -- why matching cannot be trusted (oda_fed.matching.guard), one reason a line; '' if none
    degenerate TEXT NOT NULL DEFAULT ''
)
""",
    """
CREATE TABLE IF NOT EXISTS uploads (
    round_id TEXT NOT NULL REFERENCES rounds(round_id),
    partner TEXT NOT NULL,
    upload TEXT NOT NULL,
    total_chunks INTEGER NOT NULL,
    total_records INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round_id, partner, upload)
)
""",
    """
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
    -- stable: keyed pseudonyms of record ids, never the ids themselves
    record_keys BLOB,
    evidence BLOB,
    PRIMARY KEY (round_id, partner, upload, chunk_index)
)
""",
    """
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    first_round TEXT NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS members (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    ref INTEGER NOT NULL,
    entity_id TEXT NOT NULL REFERENCES entities(entity_id),
    score REAL,
    PRIMARY KEY (round_id, partner, ref)
)
""",
    """
CREATE TABLE IF NOT EXISTS deliveries (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    -- what is delivered: an instruction body's name (encode_and_upload, share_attribute, ...)
    kind TEXT NOT NULL,
    product_id TEXT NOT NULL DEFAULT '',
    attribute TEXT NOT NULL DEFAULT '',
    -- the id the instruction carries, which the node's result names
    instruction_id TEXT NOT NULL UNIQUE,
    done INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (round_id, partner, kind, product_id, attribute)
)
""",
    """
CREATE TABLE IF NOT EXISTS products (
    round_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (round_id, product_id, name)
)
""",
    """
CREATE TABLE IF NOT EXISTS product_tables (
    round_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    title TEXT NOT NULL,
    cells INTEGER NOT NULL,
    suppressed INTEGER NOT NULL,
    PRIMARY KEY (round_id, product_id)
)
""",
    """
CREATE TABLE IF NOT EXISTS agreement_keys (
    -- each node's X25519 public key, signed with its certificate's key: public material only
    project TEXT NOT NULL,
    partner TEXT NOT NULL,
    public_key BLOB NOT NULL,
    certificate BLOB NOT NULL,
    signature BLOB NOT NULL,
    published TEXT NOT NULL,
    PRIMARY KEY (project, partner)
)
""",
    """
CREATE TABLE IF NOT EXISTS key_versions (
    -- the key-check value every node of a key version must present; version 0 (a secret file)
    -- is pinned from the first node that said hello, agreed versions from the dealer
    project TEXT NOT NULL,
    version INTEGER NOT NULL,
    key_check TEXT NOT NULL,
    pinned_from TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (project, version)
)
""",
    """
CREATE TABLE IF NOT EXISTS wrapped_secrets (
    -- a key version's secret wrapped for one partner: ciphertext the coordinator cannot open,
    -- with the sender's signed agreement key as it was when the secret was wrapped
    project TEXT NOT NULL,
    version INTEGER NOT NULL,
    partner TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_key BLOB NOT NULL,
    recipient_key BLOB NOT NULL,
    salt BLOB NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    sender_certificate BLOB NOT NULL,
    sender_signature BLOB NOT NULL,
    PRIMARY KEY (project, version, partner)
)
""",
    """
CREATE TABLE IF NOT EXISTS certificate_pins (
    -- the one certificate each partner's node may use (its fingerprint and serial: public data)
    partner TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    serial TEXT NOT NULL,
    not_after TEXT NOT NULL,
    pinned TEXT NOT NULL,
    -- the last other certificate refused for this partner, and when ("serial at time"): a
    -- round made since then is not released without an operator
    conflict TEXT NOT NULL DEFAULT ''
)
""",
)


def now() -> str:
    """The current UTC time as stored: RFC 3339 to the second."""
    return stamp(datetime.now(UTC))


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


#: What to do about a damaged database, in the refusal that names it.
RESTORE = (
    "Stop the coordinator, move the file aside (with its -wal and -shm files; keep them for "
    "investigation) and restore state_dir from your latest backup, then start again. Without a "
    "backup, start with `oda-fed coordinator serve --accept-empty-state`: every earlier round's "
    "state is then lost (this is written to the audit log)"
)


class Database:
    """One SQLite connection shared by the store's tables; every write runs in a transaction.

    The file and its folder are the owner's only (they hold CLKs). A damaged file is refused
    when it is opened, before anything reads or writes it.

    Raises
    ------
    StateError
        The file is not a SQLite database, or ``PRAGMA quick_check`` finds damage.
    """

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            check_sqlite(self._db, path=path, what="the coordinator's database", remedy=RESTORE)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            with self.tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                #: True when the file held no schema yet: a new, zero-byte or missing database.
                self.fresh = not db.execute(
                    "SELECT name FROM sqlite_master WHERE name = 'rounds'"
                ).fetchone()
                if self.fresh or version < SCHEMA_VERSION:
                    _migrate(db, fresh=self.fresh)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.close()
            raise
        # The -wal and -shm files take the database's mode when SQLite makes them.
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
            private_file(path.with_name(name))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: applied whole, or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for a few reads that must see one state (no write lock taken)."""
        with self._lock:
            yield self._db

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def vacuum(self) -> None:
        """Rewrite the file, so deleted rows do not linger in free pages."""
        with self._lock:
            self._db.execute("VACUUM")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


#: Version 1 round states that have new names.
_RENAMED_STATES = {"waiting_attributes": "analysing", "releasing": "released"}


def _migrate(db: sqlite3.Connection, *, fresh: bool) -> None:
    """Create the schema, or bring a database written by an earlier version up to it.

    Columns are only added, and old deliveries keep their instruction ids, so a node still
    holding a result for one is understood after the upgrade.
    """
    old_deliveries = not fresh and "what" in _columns(db, "deliveries")
    if old_deliveries:
        db.execute("ALTER TABLE deliveries RENAME TO deliveries_v1")
    for statement in SCHEMA:
        # One at a time: executescript() would commit the migration's transaction half-way.
        db.execute(statement)
    for table, column, decl in [
        ("chunks", "record_keys", "BLOB"),
        ("chunks", "evidence", "BLOB"),
        ("rounds", "linkage", "TEXT NOT NULL DEFAULT ''"),
        ("rounds", "degenerate", "TEXT NOT NULL DEFAULT ''"),
        ("rounds", "deadline", "TEXT NOT NULL DEFAULT ''"),
        ("rounds", "quality_report", "TEXT NOT NULL DEFAULT ''"),
        ("rounds", "released_by", "TEXT NOT NULL DEFAULT ''"),
    ]:
        if column not in _columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    for old, new in _RENAMED_STATES.items():
        db.execute("UPDATE rounds SET state = ? WHERE state = ?", (new, old))
    if old_deliveries:
        rows = db.execute(
            "SELECT round_id, partner, what, done, error FROM deliveries_v1 ORDER BY rowid"
        ).fetchall()
        for round_id, partner, what, done, error in rows:
            kind, product_id, attribute = _v1_delivery(what)
            db.execute(
                "INSERT INTO deliveries (round_id, partner, kind, product_id, attribute, "
                "instruction_id, done, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (round_id, partner, kind, product_id, attribute, f"{round_id}/{what}", done, error),
            )
        db.execute("DROP TABLE deliveries_v1")


def _v1_delivery(what: str) -> tuple[str, str, str]:
    """A version 1 delivery (one string) as (kind, product_id, attribute)."""
    if what.startswith("attribute:"):
        _, product_id, attribute = what.split(":", 2)
        return "share_attribute", product_id, attribute
    if what.startswith("product:"):
        return "product_release", what.split(":", 1)[1], ""
    return {"entities": "entities_ready", "closed": "round_closed"}.get(what, what), "", ""
