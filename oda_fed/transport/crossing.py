"""Audit every message that crosses an organisation boundary, identically on both sides.

Sender and recipient each hash the message's deterministic serialisation, so the two logs record the
same ``payload_sha256`` for one crossing and a DPO can cross-check them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from google.protobuf.message import Message

from oda_fed.audit import AuditLog


def wire_bytes(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


class Crossings:
    """One party's audit log, bound to that party and the project it works under."""

    def __init__(self, path: Path, *, party: str, project: str) -> None:
        self.party = party
        self.project = project
        self.log = AuditLog(path, party=party)

    def record(
        self,
        *,
        sender: str,
        recipient: str,
        kind: str,
        message: Message | None = None,
        records: int = 0,
        round_id: str | None = None,
        detail: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        payload = wire_bytes(message) if message is not None else b""
        self.log.append(
            sender=sender,
            recipient=recipient,
            kind=kind,
            project=self.project,
            payload=payload,
            records=records,
            round_id=round_id or None,
            detail=dict(detail or {}),
        )

    def close(self) -> None:
        self.log.close()
