"""The coordinator's state on PostgreSQL: its URL and password, the connection, the lock that keeps
a second coordinator off the same database, and the vacuum that lets deleted CLKs go.

The password is never in ``coordinator.toml``: it comes from ``database_password_file`` or from
libpq's own ways (``PGPASSWORD``, ``~/.pgpass``, a ``PGPASSFILE``), and every message shows the
URL without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from oda_fed.errors import ConfigError, StateError

if TYPE_CHECKING:
    from oda_fed.coordinator.db import Sql

#: The only driver: psycopg 3 (``postgresql://`` means it too).
DRIVER = "postgresql+psycopg"
#: Seconds to wait for the server when the URL does not say (``?connect_timeout=``).
CONNECT_TIMEOUT = 10
#: The advisory lock a serving coordinator holds on its database (two 32-bit keys: "oda-", "fed").
LOCK = (0x6F64612D, 0x666564)


def database_url(text: str, *, password_file: Path | None = None) -> sa.URL:
    """The SQLAlchemy URL of ``[coordinator] database``, with the password from
    ``password_file`` when one is given.

    Raises
    ------
    ConfigError
        The URL does not parse, is not a PostgreSQL URL, names another driver, carries a
        password, or the password file cannot be read or is empty.

    Examples
    --------
    >>> database_url("postgresql://oda_fed@db.example/oda_fed").drivername
    'postgresql+psycopg'
    """
    where = "[coordinator] database"
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise ConfigError(f"{where} '{text}' is not a URL; expected {_FORM}") from None
    if url.drivername not in ("postgresql", DRIVER):
        raise ConfigError(
            f"{where} '{url.render_as_string(hide_password=True)}' is not a PostgreSQL URL with "
            f"the psycopg driver; expected {_FORM}, or leave it unset for SQLite in state_dir"
        )
    if url.password is not None:
        raise ConfigError(
            f"{where} carries a password: take it out of coordinator.toml and put it in "
            "database_password_file (or PGPASSWORD / ~/.pgpass)"
        )
    url = url.set(drivername=DRIVER)
    if password_file is None:
        return url
    try:
        password = Path(password_file).read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"[coordinator] database_password_file {password_file}: cannot read ({exc.strerror})"
        ) from None
    if not password:
        raise ConfigError(f"[coordinator] database_password_file {password_file} is empty")
    return url.set(password=password)


_FORM = "postgresql+psycopg://USER@HOST[:PORT]/DATABASE"


def connect(url: sa.URL) -> tuple[sa.Engine, sa.Connection]:
    """The held connection to the database at ``url``.

    Raises
    ------
    StateError
        The server cannot be reached, refuses the login, or has no such database: the message
        says which and what to check.
    """
    # libpq waits for ever on a server behind a firewall that drops packets, unless told.
    defaults = {"application_name": "oda-fed coordinator", "connect_timeout": CONNECT_TIMEOUT}
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={k: v for k, v in defaults.items() if k not in url.query},
    )
    try:
        return engine, engine.connect()
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise StateError(_why_not(url, str(exc.orig))) from None


def reconnect(engine: sa.Engine, url: sa.URL) -> sa.Connection:
    """A new held connection through ``engine``, after the last one was dropped.

    Raises
    ------
    StateError
        As :func:`connect`: the server is still unreachable, or refuses the login.
    """
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        raise StateError(_why_not(url, str(exc.orig))) from None


def _why_not(url: sa.URL, said: str) -> str:
    """A refused connection as one line: what failed, and what to check."""
    shown = url.render_as_string(hide_password=True)
    at = f"{url.host or 'the local socket'}" + (f":{url.port}" if url.port else "")
    found = re.search(r"FATAL:\s*(.*)", said)
    reason = (found.group(1) if found else said.splitlines()[0]).strip()
    reason = reason.removeprefix("connection failed: ")
    if "does not exist" in reason and reason.startswith("database"):
        return (
            f"the coordinator's PostgreSQL database {shown}: {reason}. Create it (RUNBOOK.md, "
            "PostgreSQL: createdb --owner ROLE DATABASE), or correct [coordinator] database"
        )
    if "authentication failed" in reason or re.match(r"role .* does not exist", reason):
        return (
            f"PostgreSQL at {at} refused the coordinator's login as '{url.username}' ({reason}). "
            "Check the role and its password (database_password_file, or PGPASSWORD / "
            "~/.pgpass) and the server's pg_hba.conf"
        )
    if "Connection refused" in said or "timeout" in said.lower() or "could not" in said:
        return (
            f"cannot reach the coordinator's PostgreSQL database {shown} ({reason}). Check that "
            f"the server runs at {at}, listens there (listen_addresses, port) and that no "
            "firewall is in the way"
        )
    return f"cannot connect to the coordinator's PostgreSQL database {shown}: {reason}"


def lock(db: Sql, *, where: str) -> None:
    """Take the coordinator's advisory lock for this session, or refuse.

    A session lock stays with the connection until it closes (or the coordinator's process
    ends), whatever its transactions do; PostgreSQL frees it when the connection drops.

    Raises
    ------
    StateError
        Another session, another coordinator, holds it.
    """
    if db.execute("SELECT pg_try_advisory_lock(:a, :b)", a=LOCK[0], b=LOCK[1]).scalar_one():
        return
    holder = db.execute(
        "SELECT a.pid, COALESCE(host(a.client_addr), 'local socket'), a.backend_start "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid = :a AND l.objid = :b AND l.granted",
        a=LOCK[0],
        b=LOCK[1],
    ).first()
    who = (
        f" (server process {holder[0]}, from {holder[1]}, connected since "
        f"{holder[2]:%Y-%m-%d %H:%M:%S %Z})"
        if holder
        else ""
    )
    raise StateError(
        f"another coordinator is using the PostgreSQL database {where}{who}. Two coordinators "
        "on one database would overwrite each other's rounds: stop the other one, or give this "
        "one a database of its own"
    )


def vacuum(engine: sa.Engine, *, tables: tuple[str, ...]) -> None:
    """``VACUUM FULL`` ``tables``: rewrite them, so deleted rows leave their pages (VACUUM cannot
    run in a transaction, so on a connection of its own, in autocommit)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            connection.exec_driver_sql(f"VACUUM FULL {table}")
