"""The node's calls to the coordinator besides the control stream: uploads and entity ids.

Each chunk that crosses is written to the node's audit log, with the bytes the coordinator's log
hashes too. Uploads resume: chunks the coordinator already holds are not sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import grpc
import numpy as np

from oda_fed.errors import ProtocolError
from oda_fed.node.state import NodeState
from oda_fed.proto.v1 import coordinator_pb2_grpc
from oda_fed.transport import serde
from oda_fed.transport.messages import (
    AttributeChunk,
    ClkChunk,
    FetchEntitiesRequest,
    LocalTable,
    TokenColumn,
    UploadReceipt,
    UploadStatusRequest,
)
from oda_fed.transport.protocol import CHUNK_RECORDS, COORDINATOR, AuditKind, chunk_count, chunks

log = logging.getLogger(__name__)


class RoundMovedOn(Exception):
    """The coordinator refused a call because the round is no longer where the instruction found
    it (an operator cancelled it, say). Not this node's fault: it answers the instruction as not
    done and carries on; the news that the round ended follows on the control stream."""


@contextmanager
def _round_may_have_moved_on() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
            raise RoundMovedOn(exc.details() or "refused") from None
        raise


def clk_chunks(
    *,
    round_id: str,
    fingerprint: str,
    clks: np.ndarray,
    tokens: Mapping[str, Sequence[bytes | None]],
    keys: Sequence[bytes] | None,
    chunk_records: int,
    skip: frozenset[int] = frozenset(),
) -> Iterator[ClkChunk]:
    """A node's CLKs (with keyed tokens, and record keys when the project asks) as chunks,
    leaving out the chunks in ``skip``."""
    n = len(clks)
    total = chunk_count(n, chunk_records)
    for index, start, stop in chunks(n, chunk_records):
        if index in skip:
            continue
        yield ClkChunk(
            round_id=round_id,
            project_fingerprint=fingerprint,
            chunk_index=index,
            total_chunks=total,
            first_ref=start,
            records=stop - start,
            total_records=n,
            clk_bits=clks.shape[1] * 64,
            clks=clks[start:stop].astype("<u8", copy=False).tobytes(),
            tokens=tuple(
                TokenColumn(field=f, values=tuple(v or b"" for v in values[start:stop]))
                for f, values in tokens.items()
            ),
            record_keys=() if keys is None else tuple(keys[start:stop]),
        )


class CoordinatorClient:
    """Uploads and downloads of one node, over its channel to the coordinator."""

    def __init__(self, stub: coordinator_pb2_grpc.CoordinatorStub, state: NodeState) -> None:
        self._stub = stub
        self._state = state

    def upload_clks(
        self,
        round_id: str,
        clks: np.ndarray,
        *,
        tokens: Mapping[str, Sequence[bytes | None]],
        keys: Sequence[bytes] | None,
        chunk_records: int,
    ) -> None:
        """Send the CLKs in chunks, skipping those the coordinator already holds."""
        state = self._state
        asked = UploadStatusRequest(round_id=round_id, project_fingerprint=state.fingerprint)
        status: UploadReceipt = serde.from_proto(self._stub.GetUploadStatus(serde.to_proto(asked)))
        if status.complete:
            return
        parts = clk_chunks(
            round_id=round_id,
            fingerprint=state.fingerprint,
            clks=clks,
            tokens=tokens,
            keys=keys,
            chunk_records=chunk_records,
            skip=frozenset(status.stored_chunks),
        )

        def sent() -> Iterator:
            for chunk in parts:
                yield self._log_sent(
                    chunk, AuditKind.CLK_CHUNK, chunk.records, round_id, chunk.audit_detail()
                )

        with _round_may_have_moved_on():
            receipt: UploadReceipt = serde.from_proto(self._stub.UploadClks(sent()))
        if not receipt.complete:
            raise ProtocolError(
                f"upload of round {round_id} incomplete: the coordinator holds "
                f"{receipt.records_stored} of {len(clks)} CLKs"
            )
        log.info("round %s: uploaded %d CLKs%s", round_id, len(clks),
                 " with record keys" if keys is not None else "")  # fmt: skip

    def upload_attribute(
        self, round_id: str, *, product_id: str, attribute: str, values: Sequence[str]
    ) -> None:
        """Send one attribute's values, one per ref, in chunks."""
        n = len(values)
        total = chunk_count(n, CHUNK_RECORDS)

        def sent() -> Iterator:
            for index, start, stop in chunks(n, CHUNK_RECORDS):
                chunk = AttributeChunk(
                    round_id=round_id,
                    project_fingerprint=self._state.fingerprint,
                    product_id=product_id,
                    attribute=attribute,
                    chunk_index=index,
                    total_chunks=total,
                    first_ref=start,
                    total_records=n,
                    values=tuple(values[start:stop]),
                )
                detail = {"attribute": attribute, "chunk": index}
                yield self._log_sent(
                    chunk, AuditKind.ATTRIBUTE_CHUNK, stop - start, round_id, detail
                )

        with _round_may_have_moved_on():
            self._stub.UploadAttribute(sent())

    def upload_table(self, table: LocalTable) -> None:
        """Send a local product's controlled table."""
        detail = {"product": table.product_id}
        message = self._log_sent(
            table, AuditKind.LOCAL_TABLE, len(table.cells), table.round_id, detail
        )
        with _round_may_have_moved_on():
            receipt: UploadReceipt = serde.from_proto(self._stub.UploadTable(message))
        if not receipt.complete:
            raise ProtocolError(
                f"the coordinator did not keep the table of '{table.product_id}' for round "
                f"{table.round_id}"
            )

    def fetch_entities(self, round_id: str) -> list[str]:
        """The entity ids of this node's refs, in ref order."""
        asked = FetchEntitiesRequest(round_id=round_id, project_fingerprint=self._state.fingerprint)
        entity_ids: list[str] = []
        with _round_may_have_moved_on():
            for message in self._stub.FetchEntities(serde.to_proto(asked)):
                got = serde.received(message)
                chunk = got.message
                self._state.crossings.record(
                    sender=COORDINATOR,
                    recipient=self._state.partner,
                    kind=AuditKind.ENTITY_CHUNK,
                    payload=got.payload,
                    records=len(chunk.entity_ids),
                    round_id=round_id,
                )
                if chunk.first_ref != len(entity_ids):
                    raise ProtocolError(f"entity ids arrived out of order (ref {chunk.first_ref})")
                entity_ids.extend(chunk.entity_ids)
        return entity_ids

    def _log_sent(
        self, value: ClkChunk | AttributeChunk | LocalTable, kind: AuditKind, records: int, round_id: str,
        detail: dict[str, int | bool | str],
    ):  # fmt: skip
        message, payload = serde.encode(value)
        self._state.crossings.record(
            sender=self._state.partner,
            recipient=COORDINATOR,
            kind=kind,
            payload=payload,
            records=records,
            round_id=round_id,
            detail=detail,
        )
        return message
