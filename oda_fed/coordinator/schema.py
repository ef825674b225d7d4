"""The coordinator's tables, defined once for SQLite and PostgreSQL, and migrations from earlier
schema versions.

Each type is one both databases store alike: ``LargeBinary`` is a BLOB in SQLite and ``bytea``
in PostgreSQL (bytes come back as bytes from both), flags are INTEGER 0/1, and stamps are RFC 3339
text. Column defaults are the database's (``server_default``), because the table classes write
SQL text, not ORM objects.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: The schema's version: ``PRAGMA user_version`` in SQLite, the one row of ``schema_version`` in
#: PostgreSQL. Version 7 gave deliveries their own order (``seq``; SQLite's rowid before),
#: version 4 added certificate pins, version 3 the key relay's tables. Version 1 named round
#: states and deliveries differently (``waiting_attributes``, ``releasing``;
#: ``attribute:<product>:<name>`` as one string).
SCHEMA_VERSION = 7

metadata = sa.MetaData()
_EMPTY = sa.text("''")
_ZERO = sa.text("0")


#: Text compared and ordered byte by byte on both, as SQLite does: a PostgreSQL database made with
#: a locale's collation would otherwise order partner ids and stamps by that locale's rules.
TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def _text(name: str, *args: object, **kwargs: object) -> sa.Column:
    return sa.Column(name, TEXT, *args, nullable=False, **kwargs)


def _int(name: str, **kwargs: object) -> sa.Column:
    return sa.Column(name, sa.Integer, nullable=False, **kwargs)


def _blob(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.LargeBinary, nullable=nullable)


rounds = sa.Table(
    "rounds",
    metadata,
    _text("round_id", primary_key=True),
    _int("seq", unique=True),
    _text("project"),
    _text("state"),
    _text("message", server_default=_EMPTY),
    _int("entities", server_default=_ZERO),
    _int("linked_entities", server_default=_ZERO),
    _text("report", server_default=_EMPTY),
    # how matching made this round's entities (kept when later states replace the message)
    _text("linkage", server_default=_EMPTY),
    sa.Column("clks_deleted", TEXT),
    _text("created"),
    _text("updated"),
    # when the round is cancelled unless released (RFC 3339, UTC)
    _text("deadline", server_default=_EMPTY),
    _text("quality_report", server_default=_EMPTY),
    # "operator:<name>" or "auto_release", once released
    _text("released_by", server_default=_EMPTY),
    # why matching cannot be trusted (oda_fed.matching.guard), one reason a line; '' if none
    _text("degenerate", server_default=_EMPTY),
)

uploads = sa.Table(
    "uploads",
    metadata,
    _text("round_id", sa.ForeignKey("rounds.round_id"), primary_key=True),
    _text("partner", primary_key=True),
    _text("upload", primary_key=True),
    _int("total_chunks"),
    _int("total_records"),
    _int("complete", server_default=_ZERO),
)

chunks = sa.Table(
    "chunks",
    metadata,
    _text("round_id", primary_key=True),
    _text("partner", primary_key=True),
    _text("upload", primary_key=True),
    _int("chunk_index", primary_key=True, autoincrement=False),
    _int("first_ref"),
    _int("records"),
    _text("sha256"),
    _blob("data"),
    # keyed tokens of exact identifiers that came with a CLK chunk (JSON: field -> hex or null)
    _blob("tokens", nullable=True),
    # record keys (32 bytes per record, ref order, concatenated) when the project keeps entity ids
    # stable: keyed pseudonyms of record ids, never the ids themselves
    _blob("record_keys", nullable=True),
    _blob("evidence", nullable=True),
)

entities = sa.Table(
    "entities",
    metadata,
    _text("entity_id", primary_key=True),
    _text("first_round"),
)

members = sa.Table(
    "members",
    metadata,
    _text("round_id", primary_key=True),
    _text("partner", primary_key=True),
    _int("ref", primary_key=True, autoincrement=False),
    _text("entity_id", sa.ForeignKey("entities.entity_id")),
    # double precision in PostgreSQL (its REAL is 4 bytes; SQLite's is 8)
    sa.Column("score", sa.Double),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    _text("round_id", primary_key=True),
    _text("partner", primary_key=True),
    # what is delivered: an instruction body's name (encode_and_upload, share_attribute, ...)
    _text("kind", primary_key=True),
    _text("product_id", primary_key=True, server_default=_EMPTY),
    _text("attribute", primary_key=True, server_default=_EMPTY),
    # the id the instruction carries, which the node's result names
    _text("instruction_id", unique=True),
    _int("done", server_default=_ZERO),
    _text("error", server_default=_EMPTY),
    # the order deliveries were owed in (a node hears them in it)
    _int("seq", server_default=_ZERO),
)

products = sa.Table(
    "products",
    metadata,
    _text("round_id", primary_key=True),
    _text("product_id", primary_key=True),
    _text("name", primary_key=True),
    _text("media_type"),
    _text("path"),
)

product_tables = sa.Table(
    "product_tables",
    metadata,
    _text("round_id", primary_key=True),
    _text("product_id", primary_key=True),
    _text("title"),
    _int("cells"),
    _int("suppressed"),
)

# each node's X25519 public key, signed with its certificate's key: public material only
agreement_keys = sa.Table(
    "agreement_keys",
    metadata,
    _text("project", primary_key=True),
    _text("partner", primary_key=True),
    _blob("public_key"),
    _blob("certificate"),
    _blob("signature"),
    _text("published"),
)

# the key-check value every node of a key version must present; version 0 (a secret file) is
# pinned from the first node that said hello, agreed versions from the dealer
key_versions = sa.Table(
    "key_versions",
    metadata,
    _text("project", primary_key=True),
    _int("version", primary_key=True, autoincrement=False),
    _text("key_check"),
    _text("pinned_from"),
    _text("created"),
)

# a key version's secret wrapped for one partner: ciphertext the coordinator cannot open, with
# the sender's signed agreement key as it was when the secret was wrapped
wrapped_secrets = sa.Table(
    "wrapped_secrets",
    metadata,
    _text("project", primary_key=True),
    _int("version", primary_key=True, autoincrement=False),
    _text("partner", primary_key=True),
    _text("sender"),
    *(_blob(name) for name in ("sender_key", "recipient_key", "salt", "nonce", "ciphertext")),
    _blob("sender_certificate"),
    _blob("sender_signature"),
)

# the one certificate each partner's node may use (its fingerprint and serial: public data)
certificate_pins = sa.Table(
    "certificate_pins",
    metadata,
    _text("partner", primary_key=True),
    _text("fingerprint"),
    _text("serial"),
    _text("not_after"),
    _text("pinned"),
    # the last other certificate refused for this partner, and when ("serial at time"): a round
    # made since then is not released without an operator
    _text("conflict", server_default=_EMPTY),
)

#: PostgreSQL's record of the schema version (SQLite keeps it in ``PRAGMA user_version``).
schema_version = sa.Table("schema_version", sa.MetaData(), _int("version"))

#: Columns added since the tables were first made: an older database gets them on opening.
ADDED_COLUMNS = (
    chunks.c.record_keys,
    chunks.c.evidence,
    rounds.c.linkage,
    rounds.c.degenerate,
    rounds.c.deadline,
    rounds.c.quality_report,
    rounds.c.released_by,
    deliveries.c.seq,
)

#: Version 1 round states that have new names.
_RENAMED_STATES = {"waiting_attributes": "analysing", "releasing": "released"}


def migrate(db: sa.Connection, *, fresh: bool) -> None:
    """Create the schema, or bring a database written by an earlier version up to it (in the
    caller's transaction).

    Columns are only added, and old deliveries keep their instruction ids, so a node still
    holding a result for one is understood after the upgrade.
    """
    old_deliveries = not fresh and "what" in _columns(db, "deliveries")
    if old_deliveries:
        db.exec_driver_sql("ALTER TABLE deliveries RENAME TO deliveries_v1")
    metadata.create_all(db)
    for column in ADDED_COLUMNS:
        if column.name not in _columns(db, column.table.name):
            ddl = sa.schema.CreateColumn(column).compile(dialect=db.dialect)
            db.exec_driver_sql(f"ALTER TABLE {column.table.name} ADD COLUMN {ddl}")
    if not fresh and db.dialect.name == "sqlite":
        # Deliveries were heard in the order SQLite stored them, before they had an order.
        db.exec_driver_sql("UPDATE deliveries SET seq = rowid WHERE seq = 0")
    for old, new in _RENAMED_STATES.items():
        db.execute(
            sa.text("UPDATE rounds SET state = :new WHERE state = :old"), {"new": new, "old": old}
        )
    if old_deliveries:
        _migrate_v1_deliveries(db)


def _columns(db: sa.Connection, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(db).get_columns(table)}


def _migrate_v1_deliveries(db: sa.Connection) -> None:
    # Only SQLite has version 1 databases (PostgreSQL came with version 7): rowid is the order.
    rows = db.exec_driver_sql(
        "SELECT round_id, partner, what, done, error FROM deliveries_v1 ORDER BY rowid"
    ).all()
    for seq, (round_id, partner, what, done, error) in enumerate(rows, start=1):
        kind, product_id, attribute = _v1_delivery(what)
        db.execute(
            sa.text(
                "INSERT INTO deliveries (round_id, partner, kind, product_id, attribute, "
                "instruction_id, done, error, seq) VALUES (:round_id, :partner, :kind, "
                ":product_id, :attribute, :instruction_id, :done, :error, :seq)"
            ),
            {"round_id": round_id, "partner": partner, "kind": kind, "product_id": product_id,
             "attribute": attribute, "instruction_id": f"{round_id}/{what}", "done": done,
             "error": error, "seq": seq},
        )  # fmt: skip
    db.exec_driver_sql("DROP TABLE deliveries_v1")


def _v1_delivery(what: str) -> tuple[str, str, str]:
    """A version 1 delivery (one string) as (kind, product_id, attribute)."""
    if what.startswith("attribute:"):
        _, product_id, attribute = what.split(":", 2)
        return "share_attribute", product_id, attribute
    if what.startswith("product:"):
        return "product_release", what.split(":", 1)[1], ""
    return {"entities": "entities_ready", "closed": "round_closed"}.get(what, what), "", ""
