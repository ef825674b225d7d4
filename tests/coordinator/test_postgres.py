"""The coordinator's state on PostgreSQL: a whole federated round on it gives the SQLite round's
results; mistakes in reaching it are refused at start-up in one clear line; a second coordinator
on the same database is refused; a lost database is refused as a lost SQLite file is; deleted
CLKs leave the tables. Every test runs against a real PostgreSQL server (``postgres_url``)."""

from __future__ import annotations

import logging
import shutil
import socket
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w

from oda_fed.coordinator.chunks import Chunk
from oda_fed.coordinator.postgres import database_url
from oda_fed.coordinator.schema import SCHEMA_VERSION
from oda_fed.coordinator.store import Store
from oda_fed.errors import ConfigError, StateError
from oda_fed.transport.messages import Upload

LATER = datetime.now(UTC) + timedelta(days=1)


def _edit(config: Path, **keys: object) -> None:
    doc = tomllib.loads(config.read_text())
    config.write_text(tomli_w.dumps({**doc, **keys}))


def _partition(federation) -> set[frozenset[tuple[str, str]]]:
    """The round's entities as sets of (partner, record id): what linkage decided, whatever
    the entity ids are called."""
    entities: dict[str, set[tuple[str, str]]] = {}
    for partner in federation.partners:
        for record, entity in federation.entity_ids(partner).items():
            entities.setdefault(entity, set()).add((partner, record))
    return {frozenset(members) for members in entities.values()}


def _released(federation, round_id: str) -> dict[str, bytes]:
    """Every product file each node received for the round, by path under its releases."""
    out = {}
    for partner in federation.partners:
        folder = federation.workdir / "nodes" / partner / "state" / "releases" / round_id
        for path in sorted(folder.rglob("*.csv")):
            out[f"{partner}/{path.relative_to(folder)}"] = path.read_bytes()
    return out


@pytest.mark.grpc
@pytest.mark.slow
def test_postgresql_backs_a_whole_round_with_the_sqlite_rounds_results(
    federation,
    another_federation,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
    serve_refused,
) -> None:
    """The same partners, data, secret and keys, once with SQLite and once with PostgreSQL: the
    same entities and byte-identical released products, over mutual TLS. The password comes from
    a file and is in no log, audit entry or state file; a second coordinator on the database is
    refused while the first serves."""
    on_sqlite = federation.run_round()
    assert on_sqlite.state == "closed", on_sqlite.message
    federation.stop_coordinator()
    password = "pw-" + uuid.uuid4().hex  # the test server trusts loopback, so any password

    def like_sqlite(pg) -> None:
        # The SQLite federation's secret and coordinator keys, so the products can be equal.
        for partner in pg.partners:
            secret = Path("nodes") / partner / "linkage.secret"
            shutil.copyfile(federation.workdir / secret, pg.workdir / secret)
        state = pg.workdir / "coordinator" / "state"
        state.mkdir(parents=True, exist_ok=True)
        for name in ("disclosure.key", "pseudonyms.key"):
            shutil.copyfile(federation.workdir / "coordinator" / "state" / name, state / name)
        (pg.workdir / "coordinator" / "db.password").write_text(password + "\n")
        _edit(pg.coordinator_config, database_password_file="db.password")

    caplog.set_level(logging.INFO)
    pg = another_federation("pg", database=postgres_url, prepare=like_sqlite)
    state = pg.workdir / "coordinator" / "state"
    try:
        on_postgres = pg.run_round()
        assert on_postgres.state == "closed", on_postgres.message

        # A second coordinator on the same database, as a copied config would start one.
        second = pg.workdir / "coordinator" / "second.toml"
        second.write_text(pg.coordinator_config.read_text())
        _edit(
            second,
            state_dir="state2",
            audit_dir="audit2",
            output_dir="products2",
            listen="127.0.0.1:0",
        )
        refused = serve_refused(second)
        output = " ".join(refused.output.split())
        assert refused.exit_code == 8, output
        assert "another coordinator is using the PostgreSQL database" in output
        assert "Traceback" not in output and password not in output
    finally:
        pg.stop_coordinator()
    assert pg.errors == []

    assert (on_postgres.entities, on_postgres.linked_entities) == (
        on_sqlite.entities,
        on_sqlite.linked_entities,
    )
    assert _partition(pg) == _partition(federation)
    assert _released(pg, on_postgres.round_id) == _released(federation, on_sqlite.round_id) != {}
    # The state is in PostgreSQL, not in a SQLite file beside it.
    assert not (state / "coordinator.sqlite").exists()
    store = pg.store()
    members = store.results.members(round_id=on_postgres.round_id)
    store.close()
    assert len(members) == sum(len(frame) for frame in pg.synthetic.partners.values())
    # The password is nowhere but its file.
    assert "coordinator state on PostgreSQL" in caplog.text and "***" not in postgres_url
    assert password not in caplog.text
    for path in pg.workdir.rglob("*"):
        if path.is_file() and path.name != "db.password":
            assert password.encode() not in path.read_bytes(), path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.grpc
def test_mistakes_in_reaching_postgresql_are_refused_in_one_line(
    federation, postgres_url: str, serve_refused
) -> None:
    """Each start-up mistake is one clear line with its exit code, no traceback, and no
    password: nothing is served and nothing is written to the database."""
    federation.stop_coordinator()
    server = sa.make_url(postgres_url)
    config = federation.coordinator_config
    password_file = federation.workdir / "coordinator" / "db.password"
    password_file.write_text("hunter2-" + uuid.uuid4().hex)
    port = _free_port()
    cases = [
        (f"postgresql+psycopg://oda_fed@127.0.0.1:{port}/oda_fed", 8,
         ["cannot reach the coordinator's PostgreSQL database", f"127.0.0.1:{port}",
          "listen_addresses"]),
        (server.set(database="no_such_db").render_as_string(), 8,
         ['database "no_such_db" does not exist', "createdb"]),
        (server.set(username="no_such_role").render_as_string(), 8,
         ["refused the coordinator's login as 'no_such_role'", "pg_hba.conf"]),
        ("mysql://oda_fed@127.0.0.1/oda_fed", 2,
         ["key 'database'", "postgresql+psycopg://USER@HOST[:PORT]/DATABASE"]),
        ("postgresql+psycopg://oda_fed:hunter2@127.0.0.1/oda_fed", 2,
         ["key 'database'", "carries a password", "database_password_file"]),
    ]  # fmt: skip
    for url, code, said in cases:
        _edit(config, database=url, database_password_file=str(password_file))
        result = serve_refused(config)
        output = " ".join(result.output.split())
        assert result.exit_code == code, output
        assert "Traceback" not in output and "hunter2" not in output, output
        for words in said:
            assert words in output, output
    _edit(config, database=postgres_url, database_password_file="gone.password")
    result = serve_refused(config)
    assert result.exit_code == 2 and "cannot read" in result.output, result.output
    # The database the coordinator would have used holds nothing: every refusal came first.
    engine = sa.create_engine(postgres_url)
    with engine.connect() as db:
        assert sa.inspect(db).get_table_names() == []
    engine.dispose()


def test_a_url_is_checked_before_it_is_used() -> None:
    assert database_url("postgresql://u@h/d").render_as_string() == "postgresql+psycopg://u@h/d"
    with pytest.raises(ConfigError, match="psycopg driver"):
        database_url("postgresql+asyncpg://u@h/d")
    with pytest.raises(ConfigError, match="not a URL"):
        database_url("not a url")
    with pytest.raises(ConfigError, match="carries a password"):
        database_url("postgresql://u:secret@h/d")


def test_a_second_coordinator_on_one_database_is_refused(postgres_url: str) -> None:
    """The mistake (a copied config) or attack (a second coordinator taking rounds over): the
    first holds the database's lock while open; a reader that takes no lock still reads."""
    url = database_url(postgres_url)
    first = Store(url, exclusive=True)
    try:
        with pytest.raises(StateError, match="another coordinator is using") as refused:
            Store(url, exclusive=True)
        assert "stop the other one, or give this one a database of its own" in str(refused.value)
        reader = Store(url)
        assert reader.rounds.get() is None
        reader.close()
    finally:
        first.close()
    Store(url, exclusive=True).close()  # the lock went with the first coordinator


def test_a_dropped_connection_fails_one_call_and_the_next_connects_again(
    postgres_url: str,
) -> None:
    """PostgreSQL restarting (here: the coordinator's server process terminated) fails the call
    in flight with one line, writes nothing half, and the next call reconnects and takes the
    coordinator's lock again, so a second coordinator is still refused."""
    url = database_url(postgres_url)
    store = Store(url, exclusive=True)
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        store.rounds.create(round_id="r1", project="p", partners=["a"], deadline=LATER)
        with admin.connect() as db:
            ended = (
                db.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'oda-fed coordinator' AND datname = current_database()"
                )
                .scalars()
                .all()
            )
        assert ended == [True]
        with pytest.raises(StateError, match="lost its connection to the PostgreSQL database"):
            store.rounds.create(round_id="r2", project="p", partners=["a"], deadline=LATER)
        assert store.rounds.get("r1") is not None  # connected again
        assert store.rounds.get("r2") is None  # the failed call left nothing
        with pytest.raises(StateError, match="another coordinator is using"):
            Store(url, exclusive=True)
    finally:
        store.close()
        admin.dispose()


def test_a_schema_from_a_newer_oda_fed_is_refused(backend: str | None, tmp_path: Path) -> None:
    where = database_url(backend) if backend else tmp_path / "coordinator.sqlite"
    Store(where).close()
    engine = sa.create_engine(backend or f"sqlite:///{where}")
    with engine.begin() as db:
        if backend:
            db.exec_driver_sql(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
        else:
            db.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    engine.dispose()
    with pytest.raises(StateError, match="written by a newer oda-fed") as refused:
        Store(where)
    assert f"schema version {SCHEMA_VERSION + 1}; this one knows up to {SCHEMA_VERSION}" in str(
        refused.value
    )


def test_deleted_clks_leave_the_postgresql_tables(postgres_url: str) -> None:
    """VACUUM FULL after CLKs are deleted: their rows do not linger as dead tuples."""
    store = Store(database_url(postgres_url))
    store.rounds.create(round_id="r1", project="p", partners=["a"], deadline=LATER)
    blob = b"\x5a" * 60_000
    chunk = Chunk(chunk_index=0, total_chunks=1, first_ref=0, records=1, total_records=1, data=blob)
    store.uploads.store(round_id="r1", partner="a", upload=Upload(), chunk=chunk)
    engine = sa.create_engine(postgres_url)

    def size() -> int:
        with engine.connect() as db:
            return db.exec_driver_sql("SELECT pg_total_relation_size('chunks')").scalar_one()

    held = size()
    store.uploads.delete_clks("r1")
    store.close()
    assert size() < held - 8192  # the CLK's pages (in its TOAST table) are gone, not just dead
    engine.dispose()


def _role_with_password(postgres_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A new login role whose password (kept in an owner-only file) the test server checks."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    admin.dispose()
    secret = tmp_path / "db-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return role, secret


def _drop_role(postgres_url: str, role: str) -> None:
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.exec_driver_sql(f"DROP OWNED BY {role}")
        db.exec_driver_sql(f"DROP ROLE {role}")
    admin.dispose()


def test_a_role_that_may_not_create_the_tables_is_refused_in_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    role, secret = _role_with_password(postgres_url, tmp_path)
    try:
        as_role = sa.make_url(postgres_url).set(username=role).render_as_string()
        url = database_url(as_role, password_file=secret)
        with pytest.raises(StateError, match="could not be opened: permission denied"):
            Store(url)
    finally:
        _drop_role(postgres_url, role)


def test_a_wrong_password_is_refused_without_showing_it(postgres_url: str, tmp_path: Path) -> None:
    """The server checks the password from database_password_file; a wrong one is a refused
    login, and neither password appears in the message."""
    role, secret = _role_with_password(postgres_url, tmp_path)
    right = secret.read_text().strip()
    secret.write_text("not-the-password-4711\n")
    try:
        as_role = sa.make_url(postgres_url).set(username=role).render_as_string()
        with pytest.raises(StateError, match="refused the coordinator's login") as refused:
            Store(database_url(as_role, password_file=secret))
        assert "not-the-password-4711" not in str(refused.value)
        assert right not in str(refused.value)
    finally:
        _drop_role(postgres_url, role)


def test_text_is_ordered_byte_by_byte_as_in_sqlite(postgres_url: str) -> None:
    """Whatever the database's locale: partner ids, product names and stamps sort as SQLite
    sorts them, so both give rows in one order."""
    Store(database_url(postgres_url)).close()
    engine = sa.create_engine(postgres_url)
    with engine.connect() as db:
        collations = db.exec_driver_sql(
            "SELECT DISTINCT collation_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'text'"
        ).scalars()
        assert list(collations) == ["C"]
    engine.dispose()
