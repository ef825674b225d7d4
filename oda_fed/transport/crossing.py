"""Audit every message that crosses an organisation boundary, identically on both sides.

Sender and recipient each hash the message's deterministic serialisation
(:func:`oda_fed.transport.serde.payload`), so the two logs record the same ``payload_sha256`` for
one crossing and a DPO can cross-check them. Kinds come from
:class:`~oda_fed.transport.protocol.AuditKind` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from oda_fed.audit import AuditLog
from oda_fed.transport.protocol import AuditKind, loggable_round


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
        kind: AuditKind,
        payload: bytes = b"",
        records: int = 0,
        round_id: str | None = None,
        detail: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        """Append one entry; ``payload`` is the message's wire bytes (empty for a local act)."""
        if not isinstance(kind, AuditKind):
            raise TypeError(f"audit kinds come from AuditKind, not {kind!r}")
        self.log.append(
            sender=sender,
            recipient=recipient,
            kind=kind.value,
            project=self.project,
            payload=payload,
            records=records,
            round_id=loggable_round(round_id),
            detail=dict(detail or {}),
        )

    def forbid(self, values: Iterable[bytes]) -> None:
        """Refuse from now on any entry containing one of ``values`` (a newly agreed secret)."""
        self.log.forbid(values)

    def close(self) -> None:
        self.log.close()
