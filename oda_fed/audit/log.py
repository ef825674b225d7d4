"""Appending to an audit log: one fsynced JSON line per boundary crossing, hash-chained.

Both sides of every crossing append to their own log: the node when it sends or receives, the
coordinator likewise. A log is only ever appended to. Opening one verifies it first and refuses a
log that fails, so a tampered or damaged log is never extended (and so never made to look
continuous); the DPO must look at it first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from oda_fed.audit.checkpoint import Checkpoint, new_checkpoint
from oda_fed.audit.entry import (
    FORMAT_VERSION,
    TORN_LINE_REPAIRED,
    ZERO_HASH,
    AuditEntry,
    DetailValue,
    field_problems,
    leaf_hash,
    utc_now,
)
from oda_fed.audit.merkle import MerkleTree
from oda_fed.audit.verify import _verify
from oda_fed.durable import fsync_dir
from oda_fed.errors import AuditError
from oda_fed.pki.identity import is_valid_name

try:  # POSIX only; elsewhere two processes on one log are not detected.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOG_MODE = 0o640
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _payload_digest(
    payload: bytes | None, payload_sha256: str | None, size: int | None
) -> tuple[str, int]:
    if payload is not None:
        digest = hashlib.sha256(payload).hexdigest()
        if payload_sha256 is not None and payload_sha256.lower() != digest:
            raise AuditError("payload_sha256 does not match the payload given with it")
        if size is not None and size != len(payload):
            raise AuditError("size does not match the length of the payload given with it")
        return digest, len(payload)
    if payload_sha256 is not None:
        if not isinstance(payload_sha256, str):
            raise AuditError("payload_sha256 must be a hex string")
        if size is None:
            raise AuditError("size is required with payload_sha256 (the payload's length in bytes)")
        return payload_sha256.lower(), size
    if size not in (None, 0):
        raise AuditError("size was given without a payload or payload_sha256")
    return _EMPTY_SHA256, 0


class AuditLog:
    """An append-only, hash-chained audit log for one party.

    Parameters
    ----------
    path
        The ``.jsonl`` file; created (with its folder) if missing.
    party
        Who writes this log, e.g. ``"council"`` or ``"coordinator"``. Every entry's sender or
        recipient must be this party.
    forbidden
        Byte strings that must never appear in the log, e.g. ``secret_fingerprints(secret)`` on a
        node. An entry containing one (in any letter case) is refused, as a last guard against
        logging the secret.

    Raises
    ------
    AuditError
        If the log exists but fails verification, was written by another party, is held by
        another process, or cannot be opened.

    Examples
    --------
    >>> with AuditLog(Path("audit/council.jsonl"), party="council") as log:  # doctest: +SKIP
    ...     log.append(sender="council", recipient="coordinator", kind="clk_upload",
    ...                project=fingerprint, payload=chunk, records=1000, round_id="r1")
    """

    def __init__(self, path: Path, *, party: str, forbidden: Iterable[bytes] = ()) -> None:
        if not is_valid_name(party):
            raise AuditError(
                f"party {str(party)[:64]!r} is not a valid name ([a-z0-9][a-z0-9_-]{{0,62}})"
            )
        self._path = Path(path)
        self._party = party
        # Compared case-insensitively, so mixed-case hex of a secret is caught too.
        self._forbidden = tuple(dict.fromkeys(f.lower() for f in forbidden if f))
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._broken = False
        self._size = 0
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            existed = self._path.exists()
            fd = os.open(
                self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE
            )
        except OSError as exc:
            raise AuditError(f"cannot open audit log {self._path}: {exc.strerror or exc}") from None
        repaired: tuple[int, bytes] | None = None
        try:
            self._take_lock(fd)
            tree = MerkleTree()
            report = _verify(self._path, tree=tree)
            if not report.ok:
                repaired = self._repair_torn_tail(fd)
                tree = MerkleTree()
                report = _verify(self._path, tree=tree) if repaired else report
            if not report.ok:
                raise AuditError(
                    f"audit log {self._path} fails verification ({len(report.problems)} "
                    f"problem(s); first: {report.problems[0]}); refusing to append to it. "
                    "Keep the file for the DPO, run `oda-fed audit verify`, and start a new log"
                )
            if report.party is not None and report.party != party:
                raise AuditError(
                    f"audit log {self._path} belongs to {report.party!r}, not {party!r}; "
                    "each party writes its own log"
                )
            self._size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._tree = tree
        self._next_seq = report.entries
        self._head = report.head or ZERO_HASH
        if not existed:
            fsync_dir(self._path.parent)
        if repaired is not None:
            line, fragment = repaired
            self.append(
                sender=party,
                recipient=party,
                kind=TORN_LINE_REPAIRED,
                project=self._project_of_last(),
                payload=fragment,
                detail={"line": line},
            )

    def _repair_torn_tail(self, fd: int) -> tuple[int, bytes] | None:
        """Cut a last line that a crash or a full disk left half-written, if everything before it
        verifies; return its line number and bytes (for the entry recording the repair)."""
        with self._path.open("rb") as handle:
            data_end = handle.seek(0, os.SEEK_END)
            back = min(data_end, 1 << 20)  # an entry is far shorter than a MiB
            handle.seek(data_end - back)
            tail = handle.read()
        cut = tail.rfind(b"\n") + 1
        fragment = tail[cut:]
        keep = data_end - back + cut
        if not fragment or (cut == 0 and back < data_end):
            return None
        prefix = _verify(self._path, end=keep)
        if not prefix.ok or prefix.party not in (None, self._party) or prefix.entries == 0:
            return None  # only a log whose owner and good entries are known is repaired
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return prefix.entries + 1, fragment

    def _project_of_last(self) -> str:
        with self._path.open("rb") as handle:
            last = None
            for raw in handle:
                last = raw
        return json.loads(last)["project"] if last else ""

    def _take_lock(self, fd: int) -> None:
        # Two writers would fork the chain (two entries with one seq), so a second one is refused.
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AuditError(
                f"audit log {self._path} is already open for writing by another process or "
                "AuditLog; a log has exactly one writer"
            ) from None

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    @property
    def party(self) -> str:
        """Who writes this log."""
        return self._party

    @property
    def next_seq(self) -> int:
        """The seq the next entry will get (the number of entries so far)."""
        return self._next_seq

    @property
    def head(self) -> str:
        """Hash of the last entry, or 64 zeros for an empty log."""
        return self._head

    def append(
        self,
        *,
        sender: str,
        recipient: str,
        kind: str,
        project: str,
        payload: bytes | None = None,
        payload_sha256: str | None = None,
        size: int | None = None,
        records: int = 0,
        round_id: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry:
        """Append one crossing and make it durable (write, then ``os.fsync``) before returning.

        Safe to call from several threads (gRPC handlers): entries get consecutive seqs and
        chain in the order they are written.

        Parameters
        ----------
        sender, recipient
            Party names; one of them must be this log's party.
        kind
            Message kind, e.g. ``"clk_upload"`` or ``"refused"``.
        project
            Project fingerprint, ``"sha256:<hex>"``.
        payload
            The message bytes; only their SHA-256 and length are logged.
        payload_sha256, size
            Instead of ``payload``: its hex SHA-256 and length, for streamed payloads. With
            neither, the entry is for an empty payload.
        records
            Number of records the message carries.
        round_id
            The linkage round, if any.
        detail
            Small non-personal metadata: flat, at most 32 keys, strings of at most 200
            characters. Never put personal data or key material here.

        Returns
        -------
        AuditEntry
            The entry as written.

        Raises
        ------
        AuditError
            If an argument breaks the format (the message names the field, never its value), the
            entry contains a ``forbidden`` string, the log is closed, or the write fails.

        Examples
        --------
        >>> log.append(sender="coordinator", recipient="council", kind="entity_ids",
        ...            project=fp, payload=body, records=812, round_id="r1")  # doctest: +SKIP
        AuditEntry(v=1, seq=3, ...)
        """
        digest, nbytes = _payload_digest(payload, payload_sha256, size)
        fields: dict[str, object] = {
            "v": FORMAT_VERSION,
            "seq": 0,
            "time": utc_now(),
            "party": self._party,
            "sender": sender,
            "recipient": recipient,
            "kind": kind,
            "project": project,
            "round": round_id,
            "records": records,
            "bytes": nbytes,
            "payload_sha256": digest,
            "detail": detail if detail is not None else {},
            "prev": ZERO_HASH,
            "hash": ZERO_HASH,
        }
        problems = field_problems(fields)
        if problems:
            raise AuditError("cannot log this entry: " + "; ".join(problems))
        fields["detail"] = dict(fields["detail"])  # type: ignore[call-overload]
        with self._lock:
            if self._fd is None:
                raise AuditError(f"audit log {self._path} is closed")
            if self._broken:
                raise AuditError(f"audit log {self._path} had a failed write; open a new log")
            fields.update(seq=self._next_seq, time=utc_now(), prev=self._head)
            fields["hash"] = leaf_hash(fields)
            entry = AuditEntry.from_json(fields)
            line = entry.line() + b"\n"
            lowered = line.lower()
            if any(f in lowered for f in self._forbidden):
                raise AuditError(
                    "refusing to log an entry that contains a forbidden value (a secret)"
                )
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]
                os.fsync(self._fd)
            except OSError as exc:
                self._undo_partial_write()
                raise AuditError(
                    f"cannot write audit log {self._path}: {exc.strerror or exc}; "
                    "the crossing was not logged"
                ) from None
            self._next_seq += 1
            self._size += len(line)
            self._head = entry.hash
            self._tree.append(bytes.fromhex(entry.hash))
        return entry

    def _undo_partial_write(self) -> None:
        # A full disk may leave part of the line behind. Cut it, so the log stays whole and the
        # next append (once there is space) can succeed; only if that fails is the log closed to
        # writes, and then the next start repairs the torn line.
        try:
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]
            os.fsync(self._fd)  # type: ignore[arg-type]
        except OSError:
            self._broken = True

    def checkpoint(self, *, project: str, round_id: str | None = None) -> Checkpoint:
        """The log's tree head as it stands now (unsigned)."""
        with self._lock:
            return new_checkpoint(
                party=self._party,
                project=project,
                size=self._tree.size,
                root=self._tree.root(),
                round_id=round_id,
            )

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 proof that this log at ``new_size`` extends itself at ``old_size``."""
        with self._lock:
            return self._tree.consistency_proof(old_size, new_size)

    def forbid(self, values: Iterable[bytes]) -> None:
        """Add to ``forbidden``, e.g. when a node takes up a secret agreed after the log opened."""
        with self._lock:
            new = (f.lower() for f in values if f)
            self._forbidden = tuple(dict.fromkeys((*self._forbidden, *new)))

    def close(self) -> None:
        """Flush to disk and close; further appends raise :class:`AuditError`. Idempotent."""
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Release the descriptor (and its lock) if the owner forgot close(); entries are already
        # durable because each append fsyncs.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __repr__(self) -> str:
        return f"AuditLog({str(self._path)!r}, party={self._party!r}, next_seq={self._next_seq})"
