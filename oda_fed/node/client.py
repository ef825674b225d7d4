"""The node's calls to the coordinator besides the control stream: uploads and entity ids.

Each chunk that crosses is written to the node's audit log, with the bytes the coordinator's log
hashes too. Uploads resume: chunks the coordinator already holds are not sent again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import grpc
import numpy as np
from google.protobuf.message import Message

from oda_fed.encoding.evidence import Evidence, linkage_layout
from oda_fed.encoding.evidence import Layout as EvidenceLayout
from oda_fed.errors import ProtocolError
from oda_fed.node.state import NodeState
from oda_fed.proto.v1 import coordinator_pb2_grpc
from oda_fed.transport import serde
from oda_fed.transport.messages import (
    CLKS,
    AttributeChunk,
    ClkChunk,
    EvidenceColumn,
    FetchEntitiesRequest,
    LocalTable,
    TokenColumn,
    Upload,
    UploadReceipt,
    UploadStatusRequest,
    upload_sha256,
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
    evidence: Evidence | None = None,
    layout: EvidenceLayout = (),
) -> Iterator[ClkChunk]:
    """A node's CLKs (with keyed tokens, and record keys and field evidence when the project asks)
    as chunks."""
    n = len(clks)
    total = chunk_count(n, chunk_records)
    for index, start, stop in chunks(n, chunk_records):
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
            evidence=()
            if evidence is None
            else tuple(EvidenceColumn(n, d) for n, d in evidence.columns(layout, start, stop)),
        )


class CoordinatorClient:
    """Uploads and downloads of one node, over its channel to the coordinator.

    An upload's chunks are logged when the coordinator confirms it holds them, not when they are
    handed to gRPC, so a chunk lost in a crash is never in one log only; and before it says an
    upload is done, the node checks that what the coordinator holds is what it sent.
    """

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
        evidence: Evidence | None = None,
    ) -> None:
        """Send the CLKs in chunks, skipping those the coordinator already holds."""
        parts = clk_chunks(
            round_id=round_id,
            fingerprint=self._state.fingerprint,
            clks=clks,
            tokens=tokens,
            keys=keys,
            chunk_records=chunk_records,
            evidence=evidence,
            layout=linkage_layout(self._state.project.linkage),
        )
        stable = keys is not None
        upload = self._upload(round_id, CLKS, AuditKind.CLK_CHUNK, "CLKs")
        sending = (
            upload.part(
                c, c.chunk_index, c.records, c.content_sha256(stable=stable), c.audit_detail()
            )
            for c in parts
        )
        receipt = upload.send(self._stub.UploadClks, sending)
        upload.check(receipt, records=len(clks))
        log.info("round %s: uploaded %d CLKs%s", round_id, len(clks),
                 " with record keys" if keys is not None else "")  # fmt: skip

    def upload_attribute(
        self, round_id: str, *, product_id: str, attribute: str, values: Sequence[str]
    ) -> None:
        """Send one attribute's values, one per ref, in chunks."""
        n = len(values)
        total = chunk_count(n, CHUNK_RECORDS)
        upload = self._upload(
            round_id,
            Upload(product_id=product_id, attribute=attribute),
            AuditKind.ATTRIBUTE_CHUNK,
            f"attribute '{attribute}'",
        )

        def sending() -> Iterator[_Part]:
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
                detail = {"product": product_id, "attribute": attribute, "chunk": index}
                yield upload.part(chunk, index, stop - start, chunk.content_sha256(), detail)

        receipt = upload.send(self._stub.UploadAttribute, sending())
        upload.check(receipt, records=n)

    def _upload(self, round_id: str, which: Upload, kind: AuditKind, what: str) -> _Upload:
        asked = serde.to_proto(
            UploadStatusRequest(
                round_id=round_id, project_fingerprint=self._state.fingerprint, upload=which
            )
        )

        def status() -> UploadReceipt:
            return serde.from_proto(self._stub.GetUploadStatus(asked))

        return _Upload(self._state, round_id, kind, what, status)

    def upload_table(self, table: LocalTable) -> None:
        """Send a local product's controlled table; logged once the coordinator has kept it."""
        detail = {"product": table.product_id}
        message, payload = serde.encode(table)
        with _round_may_have_moved_on():
            receipt: UploadReceipt = serde.from_proto(self._stub.UploadTable(message))
        if not receipt.complete:
            raise ProtocolError(
                f"the coordinator did not keep the table of '{table.product_id}' for round "
                f"{table.round_id}"
            )
        self._state.crossings.record(
            sender=self._state.partner,
            recipient=COORDINATOR,
            kind=AuditKind.LOCAL_TABLE,
            payload=payload,
            records=len(table.cells),
            round_id=table.round_id,
            detail=detail,
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


class _Part(NamedTuple):
    index: int
    message: Message
    payload: bytes
    records: int
    digest: str
    detail: dict[str, int | bool | str]


class _Upload:
    """One upload's chunks: sent if the coordinator lacks them, logged once it holds them."""

    def __init__(self, state: NodeState, round_id: str, kind: AuditKind, what: str,
                 status: Callable[[], UploadReceipt]) -> None:  # fmt: skip
        self._state = state
        self._status = status
        self._round_id = round_id
        self._kind = kind
        self._what = what
        self._parts: dict[int, _Part] = {}

    def part(self, value: ClkChunk | AttributeChunk, index: int, records: int, digest: str,
             detail: dict[str, int | bool | str]) -> _Part:  # fmt: skip
        message, payload = serde.encode(value)
        return _Part(index, message, payload, records, digest, detail)

    def send(
        self, call: Callable[[Iterator[Message]], Message], parts: Iterable[_Part]
    ) -> UploadReceipt:
        """Stream the chunks the coordinator lacks, and log every chunk it says it holds (those
        of an earlier, interrupted attempt too)."""
        status = self._status()
        held = frozenset(status.stored_chunks)

        def missing() -> Iterator[Message]:
            for part in parts:
                self._parts[part.index] = part
                if part.index in held:
                    self._log(part)
                else:
                    yield part.message

        if status.complete:
            for _ in missing():  # nothing to send: log, and keep digests for the check
                pass
            return status
        try:
            with _round_may_have_moved_on():
                receipt: UploadReceipt = serde.from_proto(call(missing()))
        except (grpc.RpcError, RoundMovedOn):
            # The call broke: what did get through is logged all the same, so both logs agree
            # even if this upload is never resumed.
            with contextlib.suppress(grpc.RpcError):
                self._log_held(self._status())
            raise
        self._log_held(receipt)
        return receipt

    def _log_held(self, receipt: UploadReceipt) -> None:
        for index in receipt.stored_chunks:
            if index in self._parts:
                self._log(self._parts[index])

    def _log(self, part: _Part) -> None:
        crossings = self._state.crossings
        sender = self._state.partner
        if crossings.logged(sender=sender, recipient=COORDINATOR, kind=self._kind,
                            payload=part.payload, round_id=self._round_id):  # fmt: skip
            return
        crossings.record(
            sender=sender,
            recipient=COORDINATOR,
            kind=self._kind,
            payload=part.payload,
            records=part.records,
            round_id=self._round_id,
            detail=part.detail,
        )

    def check(self, receipt: UploadReceipt, *, records: int) -> None:
        """Fail unless the coordinator holds exactly this node's chunks."""
        if not receipt.complete:
            raise ProtocolError(
                f"upload of {self._what} in round {self._round_id} incomplete: the coordinator "
                f"holds {receipt.records_stored} of {records} records"
            )
        expected = upload_sha256(self._parts[i].digest for i in sorted(self._parts))
        if receipt.sha256 != expected or receipt.records_stored != records:
            raise ProtocolError(
                f"the coordinator holds different {self._what} for '{self._state.partner}' in "
                f"round {self._round_id} ({receipt.records_stored} records) than this node sent "
                f"({records}): something else uploaded in this partner's name. Nothing more is "
                "sent for this round; tell the coordinator's operator and your DPO, and have the "
                "round cancelled"
            )
