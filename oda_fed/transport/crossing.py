"""Audit every message that crosses an organisation boundary, identically on both sides.

Sender and recipient each hash the message's deterministic serialisation
(:func:`oda_fed.transport.serde.payload`), so the two logs record the same ``payload_sha256`` for
one crossing and a DPO can cross-check them. Kinds come from
:class:`~oda_fed.transport.protocol.AuditKind` only.

A message logged again with the same bytes (a chunk resent after a fault, an instruction offered
again after a reconnect) is written with ``"resend": true``, so honest retries never look like
one side logging more than the other. A message received and dropped unread (a node stopping
after its last round) is written with ``"discarded": true``.

Each party also keeps signed checkpoints of its log (:mod:`oda_fed.audit.checkpoint`), which the
other side cosigns at the end of each round.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from oda_fed.audit import AuditLog
from oda_fed.audit.checkpoint import (
    CheckpointFile,
    SignedCheckpoint,
    Signer,
    checkpoint_path,
)
from oda_fed.audit.verify import _iter_entries
from oda_fed.transport.protocol import AuditKind, loggable_round

Key = tuple[str, str, str, str | None, str]


@dataclass(frozen=True)
class Crossed:
    """What an observer of the log (:mod:`oda_fed.monitoring.metrics`) is told of an entry:
    counts and parties only, never the payload or the detail."""

    kind: AuditKind
    sender: str
    recipient: str
    records: int
    payload_bytes: int
    #: Written by the party that keeps this log (a node's own upload, say).
    sent_by_me: bool
    discarded: bool = False


def crossing_key(
    sender: str, recipient: str, kind: str, round_id: str | None, payload_sha256: str
) -> Key:
    """What makes two log entries the same message: who, what kind, which round, which bytes."""
    return (sender, recipient, kind, round_id, payload_sha256)


class Crossings:
    """One party's audit log, bound to that party and the project it works under.

    Parameters
    ----------
    path
        The log file; its checkpoints go beside it.
    party, project
        Who writes, and the fingerprint of the project it works under.
    forbidden
        Encodings of the linkage secret; an entry containing one is refused.
    signer
        The party's partnership key and certificate, to sign checkpoints; None where nothing
        is witnessed (a node's offline tools, some tests).
    ca
        The partnership CA's certificate: other parties' checkpoints must be signed with
        certificates it issued.
    """

    def __init__(
        self,
        path: Path,
        *,
        party: str,
        project: str,
        forbidden: Iterable[bytes] = (),
        signer: Signer | None = None,
        ca: x509.Certificate | None = None,
    ) -> None:
        self.party = party
        self.project = project
        self.log = AuditLog(path, party=party, forbidden=forbidden)
        self.signer = signer
        self.ca = ca
        self._lock = threading.Lock()
        self._unconfirmed: dict[str, dict] = {}
        #: Called with every entry once it is written (metrics count them).
        self.observers: list[Callable[[Crossed], None]] = []
        self.checkpoints = CheckpointFile(checkpoint_path(Path(path)))
        self._delivered: set[Key] = {
            crossing_key(e.sender, e.recipient, e.kind, e.round, e.payload_sha256)
            for _, e in _iter_entries(Path(path))
            if not e.detail.get("discarded")
        }

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
        discarded: bool = False,
    ) -> None:
        """Append one entry; ``payload`` is the message's wire bytes (empty for a local act)."""
        if not isinstance(kind, AuditKind):
            raise TypeError(f"audit kinds come from AuditKind, not {kind!r}")
        round_id = loggable_round(round_id)
        detail = dict(detail or {})
        if not kind.local:
            key = crossing_key(
                sender, recipient, kind.value, round_id, hashlib.sha256(payload).hexdigest()
            )
            if discarded:
                detail["discarded"] = True
            elif key in self._delivered:
                detail["resend"] = True
            else:
                self._delivered.add(key)
        self.log.append(
            sender=sender,
            recipient=recipient,
            kind=kind.value,
            project=self.project,
            payload=payload,
            records=records,
            round_id=round_id,
            detail=detail,
        )
        crossed = Crossed(kind=kind, sender=sender, recipient=recipient, records=records,
                          payload_bytes=len(payload), sent_by_me=sender == self.party,
                          discarded=discarded)  # fmt: skip
        for observe in self.observers:
            observe(crossed)

    def record_when_confirmed(self, token: str, **entry: object) -> None:
        """Log a message sent on a stream that gives no receipt once the recipient confirms it
        (:meth:`confirm`), so one that never arrives is in neither log. A later send under the
        same ``token`` replaces it."""
        with self._lock:
            self._unconfirmed[token] = entry

    def confirm(self, token: str) -> bool:
        """The recipient answered the message held under ``token``: log it now."""
        with self._lock:
            entry = self._unconfirmed.pop(token, None)
        if entry is None:
            return False
        self.record(**entry)  # type: ignore[arg-type]
        return True

    def logged(self, *, sender: str, recipient: str, kind: AuditKind, payload: bytes,
               round_id: str | None) -> bool:  # fmt: skip
        """Whether this very message is already in the log as delivered."""
        digest = hashlib.sha256(payload).hexdigest()
        key = crossing_key(sender, recipient, kind.value, loggable_round(round_id), digest)
        return key in self._delivered

    def signed_checkpoint(self, round_id: str | None = None) -> SignedCheckpoint:
        """The log's tree head now, signed by this party."""
        if self.signer is None:
            raise RuntimeError("this party has no key to sign checkpoints with")
        checkpoint = self.log.checkpoint(project=self.project, round_id=loggable_round(round_id))
        return SignedCheckpoint(checkpoint, (self.signer.sign(checkpoint),))

    def round_checkpoint(self, round_id: str) -> SignedCheckpoint:
        """This party's checkpoint for a round: made and kept the first time it is asked for,
        the same ever after, so every offer of it carries the same bytes."""
        with self._lock:
            found = self.checkpoints.for_round(party=self.party, round_id=round_id)
            if found is None:
                found = self.signed_checkpoint(round_id)
                self.checkpoints.append(found)
            return found

    def forbid(self, values: Iterable[bytes]) -> None:
        """Refuse from now on any entry containing one of ``values`` (a newly agreed secret)."""
        self.log.forbid(values)

    def close(self) -> None:
        self.log.close()
