"""The coordinator's durable state: rounds, deliveries, uploads and results, in one database.

A coordinator that stops mid-round picks the round up where it was, because everything the
lifecycle needs is here. :class:`Store` opens the database (SQLite or PostgreSQL) and holds one
table class per concept:

- :attr:`Store.rounds` (:class:`RoundTable`): each round's state, message, counts and deadline;
  a state changes only by :meth:`RoundTable.move`, which checks the state it moves from;
- :attr:`Store.deliveries` (:class:`~oda_fed.coordinator.deliveries.DeliveryTable`);
- :attr:`Store.uploads` (:class:`~oda_fed.coordinator.chunks.ChunkStore`);
- :attr:`Store.results` (:class:`Results`): entity ids of each round's refs, product files;
- :attr:`Store.keys` (:class:`~oda_fed.coordinator.keytable.KeyTable`): the key relay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import URL

from oda_fed.coordinator.chunks import ChunkStore
from oda_fed.coordinator.db import Database, now, stamp
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind, DeliveryTable
from oda_fed.coordinator.keytable import KeyTable
from oda_fed.coordinator.pins import Pins
from oda_fed.transport.protocol import RoundState

_ROUND_COLUMNS = (
    "round_id, seq, project, state, message, entities, linked_entities, report, linkage, "
    "deadline, quality_report, released_by, created, degenerate"
)
#: Columns :meth:`RoundTable.move` may set together with the state.
_SETTABLE = frozenset(
    {
        "message",
        "entities",
        "linked_entities",
        "report",
        "linkage",
        "quality_report",
        "released_by",
        "degenerate",
    }
)


@dataclass(frozen=True)
class Round:
    round_id: str
    seq: int
    project: str
    state: RoundState
    message: str
    entities: int
    linked_entities: int
    report: str
    linkage: str
    deadline: str
    quality_report: str
    released_by: str
    created: str
    degenerate: str = ""


def _round(row: tuple) -> Round:
    values = list(row)
    values[3] = RoundState(values[3])
    return Round(*values)


class RoundTable:
    """The ``rounds`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, *, round_id: str, project: str, partners: list[str], deadline: datetime
    ) -> Round:
        """Open a round and owe every partner the instruction to encode and upload."""
        with self._db.tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM rounds").scalar_one()
            at = now()
            db.execute(
                "INSERT INTO rounds (round_id, seq, project, state, created, updated, deadline) "
                "VALUES (:round_id, :seq, :project, :state, :at, :at, :deadline)",
                round_id=round_id,
                seq=seq,
                project=project,
                state=RoundState.OPEN.value,
                at=at,
                deadline=stamp(deadline),
            )
        DeliveryTable(self._db).add(
            [Delivery(round_id, p, DeliveryKind.ENCODE_AND_UPLOAD) for p in partners]
        )
        got = self.get(round_id)
        assert got is not None
        return got

    def get(self, round_id: str | None = None) -> Round | None:
        """The round ``round_id``, or the latest one."""
        if round_id:
            rows = self._db.query(
                f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE round_id = :round_id",
                round_id=round_id,
            )
        else:
            rows = self._db.query(f"SELECT {_ROUND_COLUMNS} FROM rounds ORDER BY seq DESC LIMIT 1")
        return _round(rows[0]) if rows else None

    def active(self) -> list[Round]:
        """Rounds not yet finished, oldest first."""
        finished = [s.value for s in RoundState if s.finished]
        rows = self._db.query(
            f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE state NOT IN :finished ORDER BY seq",
            finished=finished,
        )
        return [_round(r) for r in rows]

    def count_by_state(self) -> dict[RoundState, int]:
        """How many rounds are in each state (for the metrics)."""
        rows = self._db.query("SELECT state, COUNT(*) FROM rounds GROUP BY state")
        return {RoundState(state): count for state, count in rows}

    def released(self) -> list[str]:
        """Ids of the rounds whose products were released (now released or closed), oldest
        first."""
        rows = self._db.query(
            "SELECT round_id FROM rounds WHERE state IN :states ORDER BY seq",
            states=[RoundState.RELEASED.value, RoundState.CLOSED.value],
        )
        return [r[0] for r in rows]

    def move(
        self,
        round_id: str,
        *,
        to: RoundState,
        allowed_from: Iterable[RoundState],
        **fields: object,
    ) -> bool:
        """Set the round's state to ``to`` (and ``fields``) if it is in one of ``allowed_from``.

        Returns False, changing nothing, when the round has meanwhile moved elsewhere (an
        operator cancelled it while it was matching, say).
        """
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable with a state: {sorted(unknown)}")
        sets = ", ".join(f"{k} = :{k}" for k in ("state", "updated", *fields))
        with self._db.tx() as db:
            cursor = db.execute(
                f"UPDATE rounds SET {sets} WHERE round_id = :round_id AND state IN :allowed",
                **fields,
                state=to.value,
                updated=now(),
                round_id=round_id,
                allowed=[s.value for s in allowed_from],
            )
            return cursor.rowcount == 1

    def note(self, round_id: str, message: str) -> None:
        """Replace the round's message, its state unchanged (a node's reported problem, say)."""
        with self._db.tx() as db:
            db.execute(
                "UPDATE rounds SET message = :message, updated = :updated "
                "WHERE round_id = :round_id",
                message=message,
                updated=now(),
                round_id=round_id,
            )


class Results:
    """Each round's entity ids (``entities``, ``members``) and product files (``products``,
    ``product_tables``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def store_members(
        self,
        *,
        round_id: str,
        rows: list[tuple[str, int, str, float | None]],
        new_entities: list[str],
    ) -> None:
        """Record (partner, ref, entity_id, score) for a round and register new entity ids."""
        with self._db.tx() as db:
            db.execute("DELETE FROM members WHERE round_id = :round_id", round_id=round_id)
            db.executemany(
                "INSERT INTO entities (entity_id, first_round) VALUES (:e, :round_id) "
                "ON CONFLICT DO NOTHING",
                [{"e": e, "round_id": round_id} for e in new_entities],
            )
            db.executemany(
                "INSERT INTO members (round_id, partner, ref, entity_id, score) "
                "VALUES (:round_id, :p, :r, :e, :s)",
                [{"round_id": round_id, "p": p, "r": r, "e": e, "s": s} for p, r, e, s in rows],
            )

    def entity_ids(self, *, round_id: str, partner: str) -> list[tuple[int, str]]:
        return self._db.query(
            "SELECT ref, entity_id FROM members WHERE round_id = :round_id "
            "AND partner = :partner ORDER BY ref",
            round_id=round_id,
            partner=partner,
        )

    def members(self, *, round_id: str) -> list[tuple[str, int, str, float | None]]:
        return self._db.query(
            "SELECT partner, ref, entity_id, score FROM members WHERE round_id = :round_id "
            "ORDER BY partner, ref",
            round_id=round_id,
        )

    def add_product(
        self,
        *,
        round_id: str,
        product_id: str,
        title: str,
        cells: int,
        suppressed: int,
        files: list[tuple[str, str, Path]],
    ) -> None:
        """Record a product made for a round: its table's size and its files (name, media
        type, path)."""
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO product_tables (round_id, product_id, title, cells, suppressed) "
                "VALUES (:round_id, :product_id, :title, :cells, :suppressed) "
                "ON CONFLICT (round_id, product_id) DO UPDATE SET title = excluded.title, "
                "cells = excluded.cells, suppressed = excluded.suppressed",
                round_id=round_id,
                product_id=product_id,
                title=title,
                cells=cells,
                suppressed=suppressed,
            )
            db.executemany(
                "INSERT INTO products (round_id, product_id, name, media_type, path) "
                "VALUES (:round_id, :product_id, :name, :media_type, :path) "
                "ON CONFLICT (round_id, product_id, name) DO UPDATE SET "
                "media_type = excluded.media_type, path = excluded.path",
                [{"round_id": round_id, "product_id": product_id, "name": n, "media_type": t,
                  "path": str(p)} for n, t, p in files],
            )  # fmt: skip

    def product_files(
        self, *, round_id: str, product_id: str | None = None
    ) -> list[tuple[str, str, str, str]]:
        """(product_id, name, media_type, path) of a round's product files."""
        sql = "SELECT product_id, name, media_type, path FROM products WHERE round_id = :round_id"
        if product_id is not None:
            sql += " AND product_id = :product_id"
        return self._db.query(
            sql + " ORDER BY product_id, name", round_id=round_id, product_id=product_id
        )

    def product_tables(self, *, round_id: str) -> list[tuple[str, str, int, int]]:
        """(product_id, title, cells, suppressed) of each product made for a round."""
        return self._db.query(
            "SELECT product_id, title, cells, suppressed FROM product_tables "
            "WHERE round_id = :round_id ORDER BY product_id",
            round_id=round_id,
        )


class Store:
    """The coordinator's database, with one attribute per table class.

    ``where`` is its SQLite file, or a PostgreSQL URL. Opening it checks the database
    (:class:`~oda_fed.coordinator.db.Database`; ``exclusive`` as there, for a serving
    coordinator); :func:`~oda_fed.coordinator.recovery.open_store` also refuses one that was
    lost, when the audit log shows it held rounds.

    Examples
    --------
    >>> store = Store(Path("state/coordinator.sqlite"))  # doctest: +SKIP
    >>> store = Store(database_url("postgresql://oda_fed@db/oda_fed"))  # doctest: +SKIP
    """

    def __init__(self, where: Path | URL, *, exclusive: bool = False) -> None:
        self._db = Database(where, exclusive=exclusive)
        #: The SQLite file; None on PostgreSQL.
        self.path = self._db.path
        #: Where the state is, for messages: the file, or the URL without its password.
        self.where = self._db.where
        #: The file held no schema when opened: a new, zero-byte or missing database.
        self.fresh = self._db.fresh
        self.rounds = RoundTable(self._db)
        self.deliveries = DeliveryTable(self._db)
        self.uploads = ChunkStore(self._db)
        self.results = Results(self._db)
        self.keys = KeyTable(self._db)
        self.pins = Pins(self._db)

    def close(self) -> None:
        self._db.close()
