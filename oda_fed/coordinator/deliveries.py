"""What the coordinator owes each node in a round, until the node says it is done.

A delivery is one instruction for one partner: encode and upload, share an attribute, compute a
local table, fetch entity ids, receive a product, or hear that the round has ended. Each has an
opaque instruction id; the node's result names it, and the delivery is looked up by it, never
parsed from it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

from oda_fed.coordinator.db import Database
from oda_fed.transport.protocol import RoundState


class DeliveryKind(StrEnum):
    """The instruction a delivery sends (its value is the instruction body's name)."""

    ENCODE_AND_UPLOAD = "encode_and_upload"
    SHARE_ATTRIBUTE = "share_attribute"
    COMPUTE_TABLE = "compute_table"
    ENTITIES_READY = "entities_ready"
    PRODUCT_RELEASE = "product_release"
    ROUND_CLOSED = "round_closed"


@dataclass(frozen=True)
class Delivery:
    """One instruction owed to one partner in one round."""

    round_id: str
    partner: str
    kind: DeliveryKind
    product_id: str = ""
    attribute: str = ""
    instruction_id: str = ""
    done: bool = False
    error: str = ""


_COLUMNS = "round_id, partner, kind, product_id, attribute, instruction_id, done, error"


def _delivery(row: tuple) -> Delivery:
    round_id, partner, kind, product_id, attribute, instruction_id, done, error = row
    return Delivery(
        round_id=round_id,
        partner=partner,
        kind=DeliveryKind(kind),
        product_id=product_id,
        attribute=attribute,
        instruction_id=instruction_id,
        done=bool(done),
        error=error,
    )


class DeliveryTable:
    """The ``deliveries`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, items: list[Delivery]) -> None:
        """Owe these deliveries (each once: one already owed is left as it is)."""
        with self._db.tx() as db:
            last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM deliveries").scalar_one()
            db.executemany(
                f"INSERT INTO deliveries ({_COLUMNS}, seq) VALUES (:round_id, :partner, :kind, "
                ":product_id, :attribute, :instruction_id, 0, '', :seq) ON CONFLICT DO NOTHING",
                [
                    {"round_id": d.round_id, "partner": d.partner, "kind": d.kind.value,
                     "product_id": d.product_id, "attribute": d.attribute,
                     "instruction_id": _new_id(), "seq": last + n}
                    for n, d in enumerate(items, start=1)
                ],
            )  # fmt: skip

    def pending(self, *, partner: str) -> list[tuple[Delivery, RoundState]]:
        """What ``partner`` has not acknowledged yet, with its round's state, oldest round first."""
        rows = self._db.query(
            f"SELECT {', '.join('d.' + c for c in _COLUMNS.split(', '))}, r.state "
            "FROM deliveries d JOIN rounds r USING (round_id) "
            "WHERE d.partner = :partner AND d.done = 0 ORDER BY r.seq, d.seq",
            partner=partner,
        )
        return [(_delivery(row[:-1]), RoundState(row[-1])) for row in rows]

    def find(self, *, partner: str, instruction_id: str) -> Delivery | None:
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM deliveries WHERE partner = :partner "
            "AND instruction_id = :instruction_id",
            partner=partner,
            instruction_id=instruction_id,
        )
        return _delivery(rows[0]) if rows else None

    def mark(self, delivery: Delivery, *, error: str = "") -> None:
        """Record the node's answer: done, or not done with the reason it gave."""
        with self._db.tx() as db:
            db.execute(
                "UPDATE deliveries SET done = :done, error = :error "
                "WHERE instruction_id = :instruction_id",
                done=0 if error else 1,
                error=error,
                instruction_id=delivery.instruction_id,
            )

    def of_round(self, round_id: str) -> list[Delivery]:
        return [
            _delivery(row)
            for row in self._db.query(
                f"SELECT {_COLUMNS} FROM deliveries WHERE round_id = :round_id ORDER BY seq",
                round_id=round_id,
            )
        ]


def _new_id() -> str:
    return "i" + secrets.token_hex(8)
