"""Uploads as the coordinator stores them: chunks kept idempotently, whole uploads read back.

Each chunk is written in one transaction together with its bookkeeping, so a truncated or refused
upload leaves nothing half-stored, and a chunk sent again (a resumed upload) is stored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from oda_fed.coordinator.db import Database, Sql, now, stamp
from oda_fed.encoding.evidence import Evidence, Layout
from oda_fed.errors import ProtocolError
from oda_fed.transport.messages import CLKS, Upload, content_sha256, upload_sha256

#: Length of one record key (an HMAC-SHA256 digest).
RECORD_KEY_BYTES = 32


@dataclass(frozen=True)
class UploadState:
    total_chunks: int
    total_records: int
    complete: bool
    stored_chunks: tuple[int, ...]
    records_stored: int
    sha256: str = ""


@dataclass(frozen=True)
class Chunk:
    """One chunk as stored: its place in the upload and the bytes it carries."""

    chunk_index: int
    total_chunks: int
    first_ref: int
    records: int
    total_records: int
    data: bytes
    tokens: bytes | None = None
    # 32 bytes per record, concatenated, for projects with stable entity ids
    record_keys: bytes | None = None
    # the columns of field evidence one after the other, for projects with method = "fields"
    evidence: bytes | None = None

    def digest(self) -> str:
        """SHA-256 of what the chunk carries, to tell a re-sent chunk from a contradicting one."""
        return content_sha256(self.data, self.tokens, self.record_keys, self.evidence)


class ChunkStore:
    """The ``uploads`` and ``chunks`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def store(self, *, round_id: str, partner: str, upload: Upload, chunk: Chunk) -> UploadState:
        """Store one chunk idempotently; return where the upload stands.

        A chunk seen before with the same content is accepted and not stored twice. A chunk that
        contradicts what was stored (other content, other totals) is refused and nothing changes.
        """
        digest = chunk.digest()
        key = _key(round_id, partner, upload)
        with self._db.tx() as db:
            row = db.execute(
                f"SELECT total_chunks, total_records FROM uploads WHERE {_KEY}", **key
            ).first()
            if row is None:
                db.execute(
                    "INSERT INTO uploads (round_id, partner, upload, total_chunks, total_records) "
                    "VALUES (:round_id, :partner, :upload, :total_chunks, :total_records)",
                    **key,
                    total_chunks=chunk.total_chunks,
                    total_records=chunk.total_records,
                )
            elif (row[0], row[1]) != (chunk.total_chunks, chunk.total_records):
                raise ProtocolError(
                    f"chunk {chunk.chunk_index} says the upload has {chunk.total_chunks} chunks and "
                    f"{chunk.total_records} records, but it was started with {row[0]} and {row[1]}"
                )
            old = db.execute(
                f"SELECT sha256 FROM chunks WHERE {_KEY} AND chunk_index = :chunk_index",
                **key,
                chunk_index=chunk.chunk_index,
            ).first()
            if old is not None and old[0] != digest:
                raise ProtocolError(
                    f"chunk {chunk.chunk_index} was already received with different content; "
                    "a round's data cannot change once sent"
                )
            if old is None:
                held = db.execute(
                    f"SELECT COALESCE(SUM(records), 0) FROM chunks WHERE {_KEY}", **key
                ).scalar_one()
                if held + chunk.records > chunk.total_records:
                    # Chunks that overlap would otherwise all be stored (up to the declared
                    # total for each), and only found out when the upload completes.
                    raise ProtocolError(
                        f"chunk {chunk.chunk_index} would take the upload to {held + chunk.records} "
                        f"records, more than the {chunk.total_records} it declared"
                    )
                db.execute(
                    "INSERT INTO chunks (round_id, partner, upload, chunk_index, first_ref, records, "
                    "sha256, data, tokens, record_keys, evidence) VALUES (:round_id, :partner, "
                    ":upload, :chunk_index, :first_ref, :records, :sha256, :data, :tokens, "
                    ":record_keys, :evidence)",
                    **key,
                    chunk_index=chunk.chunk_index,
                    first_ref=chunk.first_ref,
                    records=chunk.records,
                    sha256=digest,
                    data=chunk.data,
                    tokens=chunk.tokens,
                    record_keys=chunk.record_keys,
                    evidence=chunk.evidence,
                )
            state = _state(db, key)
            if state is not None and not state.complete and _all_there(state):
                _check_contiguous(db, key, state.total_records)
                _check_record_keys_unique(db, key)
                db.execute(f"UPDATE uploads SET complete = 1 WHERE {_KEY}", **key)
                state = _state(db, key)
        assert state is not None
        return state

    def state(self, *, round_id: str, partner: str, upload: Upload = CLKS) -> UploadState | None:
        with self._db.reading() as db:
            return _state(db, _key(round_id, partner, upload))

    def complete(self, *, round_id: str, partner: str, upload: Upload = CLKS) -> bool:
        state = self.state(round_id=round_id, partner=partner, upload=upload)
        return bool(state and state.complete)

    def started(self, *, round_id: str) -> bool:
        """Whether any chunk of the round has been stored."""
        return bool(
            self._db.query(
                "SELECT 1 FROM chunks WHERE round_id = :round_id LIMIT 1", round_id=round_id
            )
        )

    def data(self, *, round_id: str, partner: str, upload: Upload) -> list[bytes]:
        """The stored chunks of a complete upload, in ref order."""
        rows = self._db.query(
            f"SELECT data FROM chunks WHERE {_KEY} ORDER BY first_ref",
            **_key(round_id, partner, upload),
        )
        return [r[0] for r in rows]

    def values(self, *, round_id: str, partner: str, upload: Upload) -> list[str]:
        """An attribute upload's values, in ref order."""
        out: list[str] = []
        for blob in self.data(round_id=round_id, partner=partner, upload=upload):
            out.extend(json.loads(blob.decode("utf-8")))
        return out

    def clks(self, *, round_id: str, partner: str, words: int) -> np.ndarray:
        blobs = self.data(round_id=round_id, partner=partner, upload=CLKS)
        if not blobs:
            return np.zeros((0, words), dtype=np.uint64)
        return np.frombuffer(b"".join(blobs), dtype="<u8").astype(np.uint64).reshape(-1, words)

    def tokens(self, *, round_id: str, partner: str, field: str) -> list[str | None]:
        """A complete CLK upload's keyed tokens for ``field`` (hex, None where missing), ref order."""
        out: list[str | None] = []
        for (blob,) in self._clk_column("tokens", round_id, partner):
            out.extend(json.loads(blob)[field] if blob else [])
        return out

    def record_keys(self, *, round_id: str, partner: str) -> list[str]:
        """A complete CLK upload's record keys (hex), in ref order; empty when none were sent."""
        out: list[str] = []
        for (blob,) in self._clk_column("record_keys", round_id, partner):
            if blob:
                out.extend(
                    blob[at : at + RECORD_KEY_BYTES].hex()
                    for at in range(0, len(blob), RECORD_KEY_BYTES)
                )
        return out

    def evidence(self, *, round_id: str, partner: str, layout: Layout) -> Evidence | None:
        """A complete CLK upload's field evidence, in ref order; None when the project's layout
        is empty (it does not link with ``method = "fields"``)."""
        if not layout:
            return None
        rows = self._db.query(
            f"SELECT evidence, records FROM chunks WHERE {_KEY} ORDER BY first_ref",
            **_key(round_id, partner, CLKS),
        )
        return Evidence.from_blobs(layout, [(blob or b"", records) for blob, records in rows])

    def _clk_column(self, column: str, round_id: str, partner: str) -> list[tuple]:
        return self._db.query(
            f"SELECT {column} FROM chunks WHERE {_KEY} ORDER BY first_ref",
            **_key(round_id, partner, CLKS),
        )

    def expired_clks(
        self, *, finished: tuple[str, ...], older_than: datetime
    ) -> list[tuple[str, int]]:
        """Rounds in a ``finished`` state whose CLKs are past retention: (round, CLKs held)."""
        return self._db.query(
            "SELECT r.round_id, COALESCE(SUM(c.records), 0) FROM rounds r LEFT JOIN chunks c "
            "ON c.round_id = r.round_id AND c.upload = :upload WHERE r.state IN :finished "
            "AND r.clks_deleted IS NULL AND r.updated <= :older_than "
            "GROUP BY r.round_id, r.seq ORDER BY r.seq",
            upload=CLKS.name,
            finished=list(finished),
            older_than=stamp(older_than),
        )

    def discard(
        self, *, round_id: str, partner: str, upload: Upload, complete_too: bool = False
    ) -> None:
        """Forget an incomplete upload whole (a refused one), so nothing of it stays stored;
        with ``complete_too`` a complete one as well (one its partner's node disowned)."""
        key = _key(round_id, partner, upload)
        with self._db.tx() as db:
            db.execute(f"DELETE FROM chunks WHERE {_KEY}", **key)
            incomplete = "" if complete_too else " AND complete = 0"
            db.execute(f"DELETE FROM uploads WHERE {_KEY}{incomplete}", **key)

    def delete_clks(self, round_id: str) -> None:
        """Delete a round's CLKs for good (the linked index and products stay)."""
        with self._db.tx() as db:
            db.execute(
                "DELETE FROM chunks WHERE round_id = :round_id AND upload = :upload",
                round_id=round_id,
                upload=CLKS.name,
            )
            db.execute(
                "UPDATE rounds SET clks_deleted = :at WHERE round_id = :round_id",
                at=now(),
                round_id=round_id,
            )
        self._db.vacuum()


#: An upload's rows: ``WHERE`` this, with :func:`_key`'s binds.
_KEY = "round_id = :round_id AND partner = :partner AND upload = :upload"
Key = dict[str, str]


def _key(round_id: str, partner: str, upload: Upload) -> Key:
    return {"round_id": round_id, "partner": partner, "upload": upload.name}


def _all_there(state: UploadState) -> bool:
    return (
        len(state.stored_chunks) == state.total_chunks
        and state.records_stored == state.total_records
    )


def _check_contiguous(db: Sql, key: Key, total: int) -> None:
    expected = 0
    for first_ref, records in db.execute(
        f"SELECT first_ref, records FROM chunks WHERE {_KEY} ORDER BY first_ref", **key
    ):
        if first_ref != expected:
            raise ProtocolError(
                f"chunks do not cover refs contiguously (gap or overlap at ref {expected})"
            )
        expected += records
    if expected != total:
        raise ProtocolError(f"chunks cover {expected} refs, but the upload declared {total}")


def _check_record_keys_unique(db: Sql, key: Key) -> None:
    # A repeated record key would make two records one in the linked index; refuse the upload
    # now, while the node can still be told, rather than fail the round later.
    seen: set[bytes] = set()
    expected = 0
    for (blob,) in db.execute(
        f"SELECT record_keys FROM chunks WHERE {_KEY} AND record_keys IS NOT NULL", **key
    ):
        for at in range(0, len(blob), RECORD_KEY_BYTES):
            seen.add(blob[at : at + RECORD_KEY_BYTES])
            expected += 1
    if len(seen) != expected:
        raise ProtocolError(
            f"the upload repeats {expected - len(seen)} record key(s); each record id must "
            "be unique within a partner's data"
        )


def _state(db: Sql, key: Key) -> UploadState | None:
    row = db.execute(
        f"SELECT total_chunks, total_records, complete FROM uploads WHERE {_KEY}", **key
    ).first()
    if row is None:
        return None
    stored = db.execute(
        f"SELECT chunk_index, records, sha256 FROM chunks WHERE {_KEY} ORDER BY chunk_index",
        **key,
    ).all()
    return UploadState(
        total_chunks=row[0],
        total_records=row[1],
        complete=bool(row[2]),
        stored_chunks=tuple(i for i, _, _ in stored),
        records_stored=sum(n for _, n, _ in stored),
        sha256=upload_sha256(d for _, _, d in stored),
    )
