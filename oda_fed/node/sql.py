"""Read a partner's extract with a SQL query, through SQLAlchemy, as text columns like a CSV's.

The node never writes to a partner's system: on PostgreSQL the query runs in a READ ONLY
transaction under a statement timeout, and only a query that starts as a SELECT is sent. The
password comes from an owner-only ``password_file`` (or libpq's PGPASSWORD or ~/.pgpass); it is
kept out of every message, since messages reach logs and the node's operators.
"""

from __future__ import annotations

import datetime as dt
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from oda_fed.errors import InputDataError

if TYPE_CHECKING:
    import sqlalchemy as sa

#: Longest a statement (opening the cursor, or one fetch of a chunk) may run on PostgreSQL.
STATEMENT_TIMEOUT_S = 3600
#: Longest the node waits for the database server to answer a connection.
CONNECT_TIMEOUT_S = 15

#: The package to install for a SQLAlchemy driver module that is missing.
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pyodbc": "pyodbc (and Microsoft's ODBC Driver for SQL Server)",
    "pymssql": "pymssql",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "oracledb": "oracledb",
    "cx_Oracle": "cx_Oracle",
}

# What a query may start with, after comments: the node only reads.
_READING = re.compile(r"(select|with|values|table)\b|\(", re.IGNORECASE)
_COMMENTS = re.compile(r"\s+|--[^\n]*(\n|$)|/\*.*?\*/", re.DOTALL)


@dataclass(frozen=True)
class SqlQuery:
    """node.toml ``[source]`` of ``format = "sql"``: where the database is, and what to read."""

    url: str
    query: str | None = None
    query_file: Path | None = None
    password_file: Path | None = None
    encoding: str = "utf-8"  # what a SQL_ASCII database's bytes are (PostgreSQL only)

    def shown(self) -> str:
        """The URL as messages show it: never with a password."""
        url = _parsed(self.url)
        return url.render_as_string(hide_password=True) if url is not None else "url"

    def label(self) -> Path:
        """What messages about the extract's columns and rows call it: user@host/database."""
        url = _parsed(self.url)
        if url is None or url.database is None:
            return Path("sql query")
        at = f"{url.username}@" if url.username else ""
        port = f":{url.port}" if url.port else ""
        return Path(f"{at}{url.host or 'localhost'}{port}/{url.database}")


def _parsed(url: str) -> sa.URL | None:
    import sqlalchemy as sa

    try:
        return sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None


def read_sql(sql: SqlQuery, *, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Run the query and give its rows as frames of ``str`` columns, ``chunk_rows`` at a time
    (all at once when None), through a server-side cursor.

    NULL is ``""``, a whole number has no ``.0``, a date is ``YYYY-MM-DD``, a timestamp is its
    date at midnight else ``YYYY-MM-DDTHH:MM:SS``, and a decimal is its text: the same text the
    table written as CSV gives. A query with no rows still gives one (empty) frame with its
    columns, so they get checked.

    Raises
    ------
    InputDataError
        The driver is missing, the server cannot be reached, the login or the database is
        wrong, or the database refuses the query; the message says what to do, and never holds
        the password.
    """
    query = _query(sql)
    with _reading(sql) as (conn, password):
        size = chunk_rows or 10_000
        options = {"stream_results": True, "max_row_buffer": size, "no_parameters": True}
        try:
            result = conn.exec_driver_sql(query, execution_options=options)
            columns = list(result.keys())
            held: list = []  # rows for the one frame when chunk_rows is None
            empty = True
            while rows := result.fetchmany(size):
                empty = False
                if chunk_rows is None:
                    held.extend(rows)
                else:
                    yield _frame(rows, columns)
            if empty or chunk_rows is None:
                yield _frame(held, columns)
        except _db_errors() as exc:
            raise _refused(sql, exc, password) from None


def count_sql(sql: SqlQuery) -> int:
    """The rows the query gives, counted by the database (for progress and ``node check``)."""
    query = _query(sql).rstrip().rstrip(";")
    # On its own line, so that a comment closing the query cannot swallow the parenthesis.
    counting = f"SELECT count(*) FROM (\n{query}\n) AS oda_fed_extract"
    with _reading(sql) as (conn, password):
        try:
            return int(
                conn.exec_driver_sql(counting, execution_options={"no_parameters": True}).scalar()
            )
        except _db_errors() as exc:
            raise _refused(sql, exc, password) from None


def _query(sql: SqlQuery) -> str:
    """The query's text, refused unless it reads."""
    where = "query in node.toml [source]"
    text = sql.query
    if sql.query_file is not None:
        where = f"query_file {sql.query_file}"
        try:
            text = Path(sql.query_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputDataError(
                f"query_file {sql.query_file}: file not found; check query_file in node.toml "
                "[source]"
            ) from None
        except (OSError, UnicodeError) as exc:
            raise InputDataError(
                f"query_file {sql.query_file}: cannot be read as UTF-8 text ({exc}); save it "
                "again as UTF-8"
            ) from None
    body = _COMMENTS.sub(" ", text or "").strip()
    if not body:
        raise InputDataError(f"{where}: the query is empty; give the SELECT that reads the extract")
    if not _READING.match(body):
        word = body.split()[0].upper()
        raise InputDataError(
            f"{where}: the query starts with {word}, not SELECT: a node only reads its "
            "partner's data. Give a SELECT over the extract's view or table"
        )
    return text


@contextmanager
def _reading(sql: SqlQuery) -> Iterator[tuple[sa.Connection, str | None]]:
    """A connection whose transaction only reads (on PostgreSQL), and the password it used."""
    import sqlalchemy as sa

    url = _parsed(sql.url)
    if url is None:
        raise InputDataError(
            "url in node.toml [source] is not a database URL; write it as "
            "dialect+driver://user@host:port/database, such as "
            "postgresql+psycopg://reader@db.council.local/social_care"
        )
    if url.password is not None:
        raise InputDataError(
            f"{sql.shown()}: the url holds a password; take it out of node.toml and put it in "
            "password_file (readable by the node's user only), or in PGPASSWORD or ~/.pgpass"
        )
    password = _password(sql.password_file)
    if password is not None:
        url = url.set(password=password)
    postgres = url.get_backend_name() == "postgresql"
    connect_args = {}
    if postgres:
        # The server converts to this encoding; from a SQL_ASCII database it sends bytes as
        # they are, to be decoded as node.toml's encoding says.
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "client_encoding": _pg_encoding(sql)}
    try:
        engine = sa.create_engine(url, poolclass=sa.NullPool, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        package = DRIVER_PACKAGES.get(exc.name or "", exc.name)
        raise InputDataError(
            f"{sql.shown()}: the database driver for '{url.drivername}' is not installed (no "
            f"module '{exc.name}'); install {package} into the node's Python environment, or "
            "use a driver that is installed (postgresql+psycopg is)"
        ) from None
    except sa.exc.NoSuchModuleError:
        raise InputDataError(
            f"{sql.shown()}: SQLAlchemy knows no database '{url.drivername}'; check the url "
            "in node.toml [source], such as postgresql+psycopg://reader@host/database"
        ) from None
    except sa.exc.ArgumentError as exc:
        raise InputDataError(_scrub(f"{sql.shown()}: {exc}", password)) from None
    try:
        try:
            conn = engine.connect()
        except _db_errors() as exc:
            raise _unreachable(sql, url, exc, password) from None
        with conn:
            if postgres:
                # Every statement after this runs in BEGIN READ ONLY: the server refuses writes.
                conn = conn.execution_options(postgresql_readonly=True)
                try:
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
                except _db_errors() as exc:
                    raise _refused(sql, exc, password) from None
            yield conn, password
            conn.rollback()  # nothing to keep: the transaction only read
    finally:
        engine.dispose()


#: Python codec -> PostgreSQL client encoding, for the encodings exports commonly come in.
PG_ENCODINGS = {
    "utf-8": "UTF8",
    "cp1252": "WIN1252",
    "cp1250": "WIN1250",
    "iso8859-1": "LATIN1",
    "iso8859-15": "LATIN9",
}


def _pg_encoding(sql: SqlQuery) -> str:
    import codecs

    try:
        name = codecs.lookup(sql.encoding).name
    except LookupError:
        name = sql.encoding
    if name not in PG_ENCODINGS:
        raise InputDataError(
            f"{sql.shown()}: encoding '{sql.encoding}' cannot be asked of PostgreSQL; set "
            f"encoding in node.toml [source] to one of {', '.join(PG_ENCODINGS)}"
        )
    return PG_ENCODINGS[name]


def _undecodable(sql: SqlQuery, password: str | None, said: str) -> InputDataError:
    return InputDataError(
        _scrub(
            f"{sql.shown()}: the database holds text that is not {sql.encoding} ({said}; a "
            "SQL_ASCII database keeps bytes in whatever encoding they were written in). Set "
            'encoding in node.toml [source] to the one its text is in, such as encoding = "cp1252"',
            password,
        )
    )


def _password(path: Path | None) -> str | None:
    """The password in ``path``, an owner-only file; None without one (libpq finds its own)."""
    if path is None:
        return None
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise InputDataError(
            f"password_file {path}: file not found; check password_file in node.toml [source]"
        ) from None
    if mode & 0o077:
        raise InputDataError(
            f"password_file {path} can be read by other users (mode {mode:04o}); make it the "
            f"node user's only: chmod 600 {path}"
        )
    try:
        password = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError):
        raise InputDataError(
            f"password_file {path}: cannot be read; it must be readable by the node's user, as "
            "UTF-8 text"
        ) from None
    if not password:
        raise InputDataError(f"password_file {path} is empty; write the role's password in it")
    return password


def _db_errors() -> tuple[type[Exception], ...]:
    import sqlalchemy as sa

    return (sa.exc.DBAPIError,)


def _message(exc: Exception) -> str:
    """The database's own message, without SQLAlchemy's wrapping and links."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return primary or " ".join(str(orig).split())


def _scrub(text: str, password: str | None) -> str:
    """``text`` with the password, should a driver ever echo it, replaced."""
    return text.replace(password, "***") if password else text


def _unreachable(
    sql: SqlQuery, url: sa.URL, exc: Exception, password: str | None
) -> InputDataError:
    """A connection that failed, by why: the server, the login or the database."""
    said = _message(exc)
    lower = said.lower()
    host, port = url.host or "localhost", url.port or _default_port(url)
    if (
        "authentication failed" in lower
        or "no password supplied" in lower
        or ("role" in lower and "does not exist" in lower)
    ):
        how = (
            f"password_file {sql.password_file}"
            if sql.password_file
            else "no password_file given, so libpq's PGPASSWORD or ~/.pgpass"
        )
        text = (
            f"{sql.shown()}: the database refused the login of user '{url.username}' "
            f"(authentication failed). The password came from {how}: check it holds the role's "
            "password, and that the role may log in from this host (pg_hba.conf)"
        )
    elif "database" in lower and "does not exist" in lower:
        text = (
            f"{sql.shown()}: the server at {host}:{port} has no database '{url.database}'; "
            "check the database name at the end of url in node.toml [source]"
        )
    elif any(
        s in lower
        for s in (
            "refused",
            "could not translate",
            "resolve host",
            "timeout expired",
            "no route",
            "unreachable",
        )
    ):
        said = said.split(" Is the server running")[0]  # libpq's hint: ours follows
        text = (
            f"{sql.shown()}: cannot connect to {host} port {port} ({said}). Is the database "
            "server running there, and does the firewall allow the node to reach it? Check "
            "url in node.toml [source]"
        )
    else:
        text = f"{sql.shown()}: cannot connect to the database: {said}"
    return InputDataError(_scrub(text, password))


def _default_port(url: sa.URL) -> int | str:
    ports = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}
    return ports.get(url.get_backend_name(), "default")


def _refused(sql: SqlQuery, exc: Exception, password: str | None) -> InputDataError:
    """A query the database refused, with its message and what to do."""
    said = _message(exc)
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    where = "query_file" if sql.query_file is not None else "query in node.toml [source]"
    if code in ("22021", "22P05"):  # bytes not in the encoding asked for, or not convertible
        return _undecodable(sql, password, said)
    if code == "25006" or "data-modifying" in said:  # read_only_sql_transaction
        text = (
            f"{sql.shown()}: the query tries to write ({said}); the node runs it in a read-only "
            f"transaction and only reads. Give a SELECT in {where}"
        )
    elif "multiple commands" in said:  # psycopg sends one statement: a second is not run
        text = (
            f"{sql.shown()}: the query holds more than one statement ({said}); give one SELECT "
            f"in {where}"
        )
    elif code == "57014":  # query_canceled: the statement timeout
        text = (
            f"{sql.shown()}: the query ran past the {STATEMENT_TIMEOUT_S} s statement timeout "
            f"and was cancelled; make it cheaper (a view with an index, fewer columns) in {where}"
        )
    elif code == "42501":  # insufficient_privilege
        text = (
            f"{sql.shown()}: permission denied ({said}); grant the node's role SELECT on the "
            f"extract's view, or fix {where}"
        )
    else:
        text = (
            f"{sql.shown()}: the database refused the query: {said}. Fix {where} (run it in "
            "the database's own client, as the node's role, to see)"
        )
    return InputDataError(_scrub(text, password))


def _frame(rows: list, columns: list[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: [] for c in columns}, dtype=object)
    return pd.DataFrame(
        [[_value_text(v) for v in row] for row in rows], columns=columns, dtype=object
    )


def _value_text(value: object) -> str:
    """A database value as text, as the table's CSV export writes it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        if value.time() == dt.time() and value.tzinfo is None:
            return value.date().isoformat()
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
