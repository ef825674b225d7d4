"""The coordinator's database: SQLite in state_dir by default, or PostgreSQL; one held connection,
its schema (:mod:`oda_fed.coordinator.schema`), and migrations from earlier versions.

Everything a restart must remember lives here. The tables are read and written through
:mod:`oda_fed.coordinator.store` (rounds, deliveries, results) and
:mod:`oda_fed.coordinator.chunks` (uploads), as SQL text with named binds that both databases
run alike.

Nothing here holds names, dates, addresses, record ids or the linkage secret: only CLKs, per-round
refs, entity ids and the attribute values the project explicitly allows, plus, for a project that
sets ``stable_entity_ids``, each record's record key (a keyed pseudonym of its id).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from oda_fed.coordinator import postgres
from oda_fed.coordinator.schema import SCHEMA_VERSION, migrate, schema_version
from oda_fed.durable import check_sqlite, private_dir, private_file
from oda_fed.errors import StateError

__all__ = ["RESTORE", "Database", "Sql", "now", "parse_stamp", "stamp"]


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


class Sql:
    """The held connection as the table classes use it: SQL text with named binds (``:name``).

    A list or tuple bound to a name is expanded, so ``state IN :states`` takes a list.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, /, **params: object) -> sa.CursorResult:
        return self._connection.execute(_text(sql, params), params)

    def executemany(self, sql: str, rows: Sequence[Mapping[str, object]]) -> None:
        if rows:  # an empty list would run the statement once, without its binds
            self._connection.execute(sa.text(sql), list(rows))


def _text(sql: str, params: Mapping[str, object]) -> sa.TextClause:
    clause = sa.text(sql)
    lists = [name for name, value in params.items() if isinstance(value, list | tuple)]
    return clause.bindparams(*(sa.bindparam(n, expanding=True) for n in lists)) if lists else clause


class Database:
    """One connection shared by the store's tables; every write runs in a transaction.

    ``where`` is the SQLite file (the default, in state_dir), or a PostgreSQL URL
    (:func:`~oda_fed.coordinator.postgres.database_url`). A SQLite file and its folder are the
    owner's only (they hold CLKs), and a damaged file is refused when it is opened, before
    anything reads or writes it. On PostgreSQL an ``exclusive`` opening (a serving coordinator's)
    takes the database's advisory lock for as long as it is open, so a second coordinator on the
    same database is refused.

    Raises
    ------
    StateError
        The file is not a SQLite database, or ``PRAGMA quick_check`` finds damage; the
        PostgreSQL server cannot be reached, refuses the login or has no such database; another
        coordinator holds the database; or a newer oda-fed wrote its schema.
    """

    def __init__(self, where: Path | sa.URL, *, exclusive: bool = False) -> None:
        self._lock = threading.RLock()
        self.path = None if isinstance(where, sa.URL) else Path(where)
        self._exclusive = exclusive
        self._closed = False
        self._lost = False  # PostgreSQL dropped the held connection: connect again first
        if self.path is None:
            assert isinstance(where, sa.URL)
            self._url = where
            #: Where the state is, for messages: the file, or the URL without its password.
            self.where = where.render_as_string(hide_password=True)
            self._engine, self._connection = postgres.connect(where)
        else:
            self.where = str(self.path)
            self._engine, self._connection = _connect_sqlite(self.path)
        self._sql = Sql(self._connection)
        try:
            if self.path is None and exclusive:
                with self.tx() as db:
                    postgres.lock(db, where=self.where)
            with self.tx() as db:
                version, self.fresh = self._version()
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"the coordinator's database {self.where} was written by a newer oda-fed "
                        f"(schema version {version}; this one knows up to {SCHEMA_VERSION}). "
                        "Run the oda-fed version that wrote it, or restore a backup made before "
                        "the upgrade"
                    )
                if self.fresh or version < SCHEMA_VERSION:
                    migrate(self._connection, fresh=self.fresh)
                    self._set_version(db)
        except sa.exc.DBAPIError as exc:
            # A role that may not create tables, a read-only file: the database's own words.
            self.close()
            said = str(exc.orig).strip().splitlines()[0]
            raise StateError(
                f"the coordinator's database {self.where} could not be opened: {said}"
            ) from None
        except BaseException:
            self.close()
            raise
        if self.path is not None:
            # The -wal and -shm files take the database's mode when SQLite makes them.
            for name in (self.path.name, f"{self.path.name}-wal", f"{self.path.name}-shm"):
                private_file(self.path.with_name(name))

    def _version(self) -> tuple[int, bool]:
        """The schema version stored, and whether the database held no schema yet (a new,
        zero-byte or missing file, or an empty PostgreSQL database)."""
        tables = set(sa.inspect(self._connection).get_table_names())
        if self.path is not None:
            version = self._connection.exec_driver_sql("PRAGMA user_version").scalar_one()
        elif schema_version.name in tables:
            version = self._connection.execute(sa.select(schema_version.c.version)).scalar()
        else:
            version = 0
        return int(version or 0), "rounds" not in tables

    def _set_version(self, db: Sql) -> None:
        if self.path is not None:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        schema_version.create(self._connection, checkfirst=True)
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (:v)", v=SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._connection.close()
            self._engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Sql]:
        """A write transaction: applied whole, or not at all."""
        with self._transaction(write=True) as db:
            yield db

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        """The connection for a few reads that must see one state (no write lock taken)."""
        with self._transaction(write=False) as db:
            yield db

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Sql]:
        with self._lock:
            self._reconnect()
            self._connection.info["write"] = write
            try:
                with self._connection.begin():
                    yield self._sql
            except sa.exc.DBAPIError as exc:
                if self.path is None and exc.connection_invalidated:
                    self._lost = True
                    # The transaction was never committed: the server rolled it back.
                    raise StateError(
                        f"the coordinator lost its connection to the PostgreSQL database "
                        f"{self.where} ({str(exc.orig).strip().splitlines()[0]}); nothing of "
                        "this call was written, and the next call connects again"
                    ) from None
                raise
            finally:
                self._connection.info["write"] = False

    def _reconnect(self) -> None:
        """After PostgreSQL dropped the held connection (a server restart, a failover), a new
        one, holding the coordinator's lock again if this opening held it."""
        if not self._lost or self._closed:
            return
        self._connection.close()
        self._connection = postgres.reconnect(self._engine, self._url)
        self._sql = Sql(self._connection)
        self._lost = False
        if self._exclusive:
            try:
                with self._connection.begin():
                    postgres.lock(self._sql, where=self.where)
            except StateError:
                # Another coordinator took the database while this one was cut off: every call
                # is refused so, until the other one stops.
                self._connection.close()
                self._lost = True
                raise

    def query(self, sql: str, /, **params: object) -> list[tuple]:
        with self.reading() as db:
            return [tuple(row) for row in db.execute(sql, **params)]

    def vacuum(self) -> None:
        """Rewrite the stored CLKs, so deleted rows do not linger in free pages (SQLite) or dead
        tuples (PostgreSQL)."""
        with self._lock:
            if self.path is None:
                postgres.vacuum(self._engine, tables=("chunks", "uploads"))
            else:
                # VACUUM cannot run in a transaction: on the driver's connection, which is in
                # autocommit between transactions (see _connect_sqlite).
                self._connection.connection.driver_connection.execute("VACUUM")


def _connect_sqlite(path: Path) -> tuple[sa.Engine, sa.Connection]:
    """The held connection to the SQLite file at ``path``, checked before SQLAlchemy reads it.

    pysqlite's own transaction handling begins late and never for DDL, so it is switched off and
    each transaction begins explicitly: ``BEGIN IMMEDIATE`` for writes (the write lock up front,
    so two writers never deadlock), ``BEGIN`` for reads.
    """
    private_dir(path.parent)
    raw = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        check_sqlite(raw, path=path, what="the coordinator's database", remedy=RESTORE)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = FULL")
    except BaseException:
        raw.close()
        raise
    engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=sa.pool.StaticPool)

    @sa.event.listens_for(engine, "begin")
    def begin(connection: sa.Connection) -> None:
        write = connection.info.get("write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine, engine.connect()
