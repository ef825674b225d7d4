"""Audit every message that crosses an organisation boundary, identically on both sides.

Sender and recipient each hash the message's deterministic serialisation, so the two logs record the
same ``payload_sha256`` for one crossing and a DPO can cross-check them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from google.protobuf.message import Message

from oda_fed.audit import AuditLog

# The audit format's round id shape: anything else from the wire is not written into a log.
ROUND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def loggable_round(round_id: str | None) -> str | None:
    """``round_id`` if it may go into an audit entry, else None (refusals of odd ids still log)."""
    return round_id if round_id and ROUND_ID.fullmatch(round_id) else None


def wire_bytes(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


class Crossings:
    """One party's audit log, bound to that party and the project it works under."""

    def __init__(
        self, path: Path, *, party: str, project: str, forbidden: Iterable[bytes] = ()
    ) -> None:
        self.party = party
        self.project = project
        # ``forbidden``: encodings of the linkage secret; an entry containing one is refused.
        self.log = AuditLog(path, party=party, forbidden=forbidden)

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
            round_id=loggable_round(round_id),
            detail=dict(detail or {}),
        )

    def close(self) -> None:
        self.log.close()
