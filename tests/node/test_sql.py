"""A SQL query as a node's extract, against a real PostgreSQL server (never a mock).

A read-only role reads one view, with its password in an owner-only file. Every failure is one
:class:`InputDataError` that says what to do; none holds the password, nor does any log line,
audit entry or file the coordinator receives; and no query can change the partner's data.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from oda_fed.config import NodeSource, Project, load_node_config
from oda_fed.errors import ConfigError, InputDataError
from oda_fed.node import check
from oda_fed.node.sources import EmptyExtractError, iter_prepared, layout_for, read_source

#: Distinctive, so that finding it anywhere means it leaked.
PASSWORD = "Plugh-9f3e-Xyzzy!"

PROJECT = Project.model_validate(
    {
        "name": "sql",
        "title": "SQL",
        "purpose": "test",
        "legal_gateway": "test",
        "partners": [{"id": "council", "name": "Council"}, {"id": "police", "name": "Police"}],
        "linkage": {
            "fields": [
                {"name": "first_name", "type": "name"},
                {"name": "last_name", "type": "name"},
                {"name": "date_of_birth", "type": "date_of_birth"},
            ]
        },
    }
)

PEOPLE = pd.DataFrame(
    {
        "person_ref": ["1", "2", "3"],
        "forename": ["Zoë", "John", "Mary"],
        "surname": ["Jones", "Nicholson", "Smith"],
        "dob": ["1990-01-02", "", "1970-03-09"],
    }
)


@pytest.fixture
def database(postgres_url: str, tmp_path: Path) -> Iterator[dict]:
    """A database with a ``people`` table, a view ``extract_v`` over it, and a login role that
    may SELECT the view only; the ``[source]`` keys with which a node reads the view as it."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as db:
        db.exec_driver_sql(
            "CREATE TABLE people (person_ref integer PRIMARY KEY, forename text, surname text, "
            "dob date)"
        )
        db.exec_driver_sql(
            "INSERT INTO people VALUES (1, 'Zoë', 'Jones', '1990-01-02'), "
            "(2, 'John', 'Nicholson', NULL), (3, 'Mary', 'Smith', '1970-03-09')"
        )
        db.exec_driver_sql("CREATE VIEW extract_v AS SELECT * FROM people")
        db.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        db.exec_driver_sql(f"GRANT SELECT ON extract_v TO {role}")
    password_file = tmp_path / "db.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    url = sa.make_url(postgres_url).set(username=role)
    try:
        yield {
            "format": "sql",
            "url": url.render_as_string(hide_password=False),
            "query": "SELECT * FROM extract_v ORDER BY person_ref",
            "password_file": password_file,
            "record_id": "person_ref",
            "columns": {"first_name": "forename", "last_name": "surname", "date_of_birth": "dob"},
        }
    finally:
        with admin.begin() as db:
            db.exec_driver_sql(f"DROP OWNED BY {role}")
        with sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT").connect() as db:
            db.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def read(source: dict, *, chunk_rows: int | None = None) -> pd.DataFrame:
    layout = layout_for(PROJECT, "council", NodeSource.model_validate(source))
    return pd.concat(
        list(read_source(Path("council"), chunk_rows=chunk_rows, options=layout.read)),
        ignore_index=True,
    )


def failure(source: dict) -> str:
    """The message reading ``source`` fails with; it never holds the password."""
    with pytest.raises(InputDataError) as caught:
        read(source)
    message = str(caught.value)
    assert PASSWORD not in message
    return message


def people_count(postgres_url: str) -> int:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as db:
            return db.exec_driver_sql("SELECT count(*) FROM people").scalar()
    finally:
        engine.dispose()


def test_a_read_only_role_reads_the_view_as_text(database: dict) -> None:
    assert read(database).to_dict("list") == PEOPLE.to_dict("list")
    assert read(database, chunk_rows=1).to_dict("list") == PEOPLE.to_dict("list")


def test_the_query_may_sit_in_a_file_and_the_password_in_pgpassword(
    database: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = tmp_path / "extract.sql"
    query.write_text("-- the council's extract\nSELECT * FROM extract_v ORDER BY person_ref;\n")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    source = {**database, "query": None, "query_file": query, "password_file": None}
    assert read(source).to_dict("list") == PEOPLE.to_dict("list")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on leaving: nothing listens there


def test_a_refused_connection_names_the_host_and_port(database: dict) -> None:
    port = closed_port()
    url = sa.make_url(database["url"]).set(host="127.0.0.1", port=port)
    said = failure({**database, "url": url.render_as_string(hide_password=False)})
    assert f"cannot connect to 127.0.0.1 port {port}" in said
    assert "Is the database server running there, and does the firewall allow the node" in said


def test_a_host_that_does_not_resolve_is_unreachable(database: dict) -> None:
    said = failure({**database, "url": "postgresql+psycopg://reader@no-such-host.invalid/x"})
    assert "cannot connect to no-such-host.invalid port 5432" in said and "firewall" in said


def test_a_wrong_password_is_an_authentication_failure_that_echoes_no_password(
    database: dict, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("Frotz-wrong-Password")
    wrong.chmod(0o600)
    said = failure({**database, "password_file": wrong})
    assert "refused the login of user 'reader_" in said and "authentication failed" in said
    assert f"password_file {wrong}" in said and "Frotz-wrong-Password" not in said


def test_an_unknown_database_says_so(database: dict) -> None:
    url = sa.make_url(database["url"]).set(database="no_such_db")
    said = failure({**database, "url": url.render_as_string(hide_password=False)})
    assert "has no database 'no_such_db'" in said


def test_a_sql_error_gives_the_database_message(database: dict) -> None:
    said = failure({**database, "query": "SELECT nosuch FROM extract_v"})
    assert 'the database refused the query: column "nosuch" does not exist' in said
    said = failure({**database, "query": "SELECT * FROM people"})  # the table, not the view
    assert "permission denied" in said and "grant the node's role SELECT" in said


def test_a_missing_column_is_named_as_for_a_csv(database: dict) -> None:
    source = {**database, "query": "SELECT person_ref, forename, surname FROM extract_v"}
    layout = layout_for(PROJECT, "council", NodeSource.model_validate(source))
    label = layout.read.sql_query().label()
    with pytest.raises(InputDataError) as caught:
        list(iter_prepared(label, project=PROJECT, layout=layout))
    assert str(caught.value).startswith(
        f"{label}: no column 'dob' (mapped from field 'date_of_birth'). Columns found: "
        "person_ref, forename, surname."
    )
    assert str(label).startswith("reader_") and str(label).endswith(
        sa.make_url(database["url"]).database
    )


def test_an_empty_result_is_an_empty_extract_in_node_check(
    database: dict, tmp_path: Path, node_config
) -> None:
    source = {**database, "query": "SELECT * FROM extract_v WHERE false"}
    config, loaded = node_config(tmp_path, PROJECT, partner="council", source=source)
    with pytest.raises(EmptyExtractError, match="has a header but no records"):
        check._extract(config, loaded)
    config, loaded = node_config(tmp_path, PROJECT, partner="council", source=database)
    assert "3 records; every mapped column is there" in check._extract(config, loaded)[1]


def test_a_missing_driver_says_which_package_to_install(database: dict) -> None:
    said = failure({**database, "url": "mssql+pyodbc://reader@db.council.local/social_care"})
    assert "driver for 'mssql+pyodbc' is not installed" in said and "install pyodbc" in said
    said = failure({**database, "url": "mysql+pymysql://reader@db/x"})
    assert "install PyMySQL" in said and "postgresql+psycopg is" in said
    said = failure({**database, "url": "nosuchdb://reader@host/db"})
    assert "SQLAlchemy knows no database 'nosuchdb'" in said


def test_the_password_file_must_exist_and_be_the_node_users_only(
    database: dict, tmp_path: Path
) -> None:
    said = failure({**database, "password_file": tmp_path / "gone"})
    assert "password_file" in said and "file not found" in said
    database["password_file"].chmod(0o644)
    said = failure(database)
    assert "can be read by other users (mode 0644)" in said and "chmod 600" in said


def test_a_password_in_the_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(
        'partner = "council"\nproject = "p.toml"\nproject_fingerprint = "sha256:'
        + "0" * 64
        + '"\nworkdir = "w"\n[coordinator]\naddress = "a:1"\n'
        '[tls]\nca = "ca"\ncert = "c"\nkey = "k"\n[source]\nformat = "sql"\n'
        f'url = "postgresql+psycopg://reader:{PASSWORD}@db/social_care"\nquery = "SELECT 1"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_node_config(toml)
    assert "url holds a password" in str(caught.value) and PASSWORD not in str(caught.value)


NOT_SELECT = "not SELECT: a node only reads"
WRITES = "tries to write"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("DELETE FROM people", NOT_SELECT),
        ("UPDATE people SET surname = 'x'", NOT_SELECT),
        ("INSERT INTO people VALUES (9, 'a', 'b', NULL)", NOT_SELECT),
        ("DROP TABLE people", NOT_SELECT),
        ("  -- looks harmless\n  truncate people", NOT_SELECT),
        ("SELECT * FROM people; DROP TABLE people", "more than one statement"),
        ("WITH gone AS (DELETE FROM people RETURNING *) SELECT * FROM gone", WRITES),
        # A function that writes: only the read-only transaction can stop it.
        ("SELECT wipe()", "cannot execute DELETE in a read-only transaction"),
    ],
)
def test_a_query_that_writes_is_refused_and_the_table_is_intact(
    database: dict, postgres_url: str, query: str, why: str
) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.exec_driver_sql(
            "CREATE FUNCTION wipe() RETURNS integer LANGUAGE sql AS 'DELETE FROM people; SELECT 0'"
        )
    engine.dispose()
    # As the tables' owner, so that no missing grant is what stops the write.
    owner = {**database, "url": postgres_url, "password_file": None, "query": query}
    assert why in failure(owner)
    assert people_count(postgres_url) == 3


def test_the_password_appears_in_no_error_or_log_line(
    database: dict, tmp_path: Path, node_config, caplog: pytest.LogCaptureFixture
) -> None:
    refused = sa.make_url(database["url"]).set(port=closed_port())
    said = []
    with caplog.at_level(logging.DEBUG):
        read(database)
        for bad in (
            {"query": "SELECT nosuch FROM extract_v"},
            {"url": database["url"].replace("reader_", "nobody_")},
            {"url": refused.render_as_string(hide_password=False)},
        ):
            said.append(failure({**database, **bad}))
        config, loaded = node_config(tmp_path, PROJECT, partner="council", source=database)
        said.append(check._extract(config, loaded)[1])
    for text in [*said, caplog.text]:
        assert PASSWORD not in text


@pytest.mark.grpc
def test_a_round_with_a_sql_source_sends_and_logs_no_password(
    federation, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    try:
        federation.extract("council").to_sql("council_extract", engine, index=False)
        with engine.begin() as db:
            db.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
            db.exec_driver_sql(f"GRANT SELECT ON council_extract TO {role}")
    finally:
        engine.dispose()
    url = sa.make_url(postgres_url).set(username=role).render_as_string(hide_password=False)

    def to_sql(source: dict, folder: Path) -> None:
        (folder / "db.password").write_text(PASSWORD)
        (folder / "db.password").chmod(0o600)
        del source["path"]
        source.update(format="sql", url=url, query="SELECT * FROM council_extract",
                      password_file="db.password")  # fmt: skip

    federation.edit_source("council", to_sql)
    with caplog.at_level(logging.DEBUG):
        checked = {c.name: c for c in check.check_node(federation.node_config("council"))}
        federation.run_round()
    for name in ("extract", "database password permissions"):
        assert checked[name].outcome == check.Outcome.OK, checked[name]
    assert all(PASSWORD not in c.detail for c in checked.values())
    assert federation.entity_ids("council")  # the council took part, from its database
    assert PASSWORD not in caplog.text
    leaked = [
        path
        for path in federation.workdir.rglob("*")
        if path.is_file() and path.name != "db.password" and PASSWORD.encode() in path.read_bytes()
    ]
    assert leaked == []  # no audit log, upload, state or product holds it
    with sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT").connect() as db:
        db.exec_driver_sql(f"DROP OWNED BY {role}")
        db.exec_driver_sql(f"DROP ROLE {role}")


@pytest.fixture
def sql_ascii_url(postgres_server: str) -> Iterator[str]:
    """A SQL_ASCII database (it stores bytes unchecked) holding a cp1252 'Zoë', as an old
    system's may."""
    name = f"ascii_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.exec_driver_sql(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' "
            "LC_CTYPE 'C'"
        )
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as raw:  # SQLAlchemy cannot talk SQL_ASCII: psycopg's bytes
        raw.execute(b"CREATE TABLE people (person_ref text, forename text)")
        raw.execute(b"INSERT INTO people VALUES ('1', 'Zo\xeb')")
    try:
        yield url
    finally:
        with admin.connect() as db:
            db.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def test_text_in_another_encoding_says_which_setting_reads_it(sql_ascii_url: str) -> None:
    source = {"format": "sql", "url": sql_ascii_url, "query": "SELECT * FROM people"}
    said = failure(source)
    assert "holds text that is not utf-8" in said and 'encoding = "cp1252"' in said
    assert read({**source, "encoding": "cp1252"})["forename"].tolist() == ["Zoë"]
