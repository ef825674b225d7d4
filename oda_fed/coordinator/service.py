"""The coordinator's gRPC servicers: node sessions, uploads, entity delivery and the admin API.

Every handler runs after :mod:`oda_fed.transport.auth` has checked the caller's certificate role.
Handlers then check that the certificate's name is a partner of the project and that the request
names the coordinator's project. Every message in and out is written to the coordinator's audit
log, and so is every refusal.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from oda_fed.config import LoadedProject
from oda_fed.coordinator.rounds import CLOSED, ENCODE, ENTITIES, RoundEngine
from oda_fed.coordinator.sessions import Sessions
from oda_fed.coordinator.store import CLKS, Chunk, Store, attribute_upload
from oda_fed.coordinator.uploads import (
    chunk_detail,
    clk_chunk_problem,
    record_key_problem,
    token_blob,
    token_problem,
)
from oda_fed.errors import AuthError, ProtocolError
from oda_fed.proto.v1 import admin_pb2, admin_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from oda_fed.transport.auth import peer_identity
from oda_fed.transport.crossing import Crossings

log = logging.getLogger(__name__)

COORDINATOR = "coordinator"
ENTITY_CHUNK = 10_000


class CoordinatorService(coordinator_pb2_grpc.CoordinatorServicer, admin_pb2_grpc.AdminServicer):
    """Both services share one state: the project, the store, the engine, the sessions."""

    def __init__(
        self,
        *,
        loaded: LoadedProject,
        store: Store,
        crossings: Crossings,
        output_dir: Path,
        chunk_records: int = 10_000,
    ) -> None:
        self.loaded = loaded
        self.project = loaded.project
        self.store = store
        self.crossings = crossings
        self.sessions: Sessions[coordinator_pb2.Instruction] = Sessions()
        self.chunk_records = chunk_records
        self.keyed_fields = frozenset(f.name for f in self.project.linkage.fields if f.keyed_token)
        self.stable_ids = self.project.linkage.stable_entity_ids
        self.engine = RoundEngine(
            store=store,
            loaded=loaded,
            output_dir=output_dir,
            notify=self.push,
            on_deleted=self._log_deletion,
            audit_log=crossings.log.path,
        )
        self._advance_q: queue.Queue[str | None] = queue.Queue()
        self._worker = threading.Thread(target=self._advance_loop, name="rounds", daemon=True)
        self._worker.start()

    # --- plumbing -------------------------------------------------------------------------------

    def _advance_loop(self) -> None:
        while (round_id := self._advance_q.get()) is not None:
            self.engine.advance(round_id)

    def schedule(self, round_id: str) -> None:
        self._advance_q.put(round_id)

    def _log_deletion(self, round_id: str, records: int) -> None:
        self.crossings.record(
            sender=COORDINATOR,
            recipient=COORDINATOR,
            kind="retention:clks_deleted",
            records=records,
            round_id=round_id,
            detail={"clk_days": self.project.retention.clk_days},
        )

    def resume(self) -> None:
        """After a restart, delete what retention says must go, then pick up rounds under way."""
        self.engine.enforce_retention()
        for r in self.store.active_rounds():
            log.info("resuming round %s (%s)", r.round_id, r.state)
            self.schedule(r.round_id)

    def stop(self) -> None:
        self.sessions.shutdown()
        self._advance_q.put(None)
        self._worker.join(timeout=30)

    def refuse(
        self,
        context: grpc.ServicerContext,
        code: grpc.StatusCode,
        reason: str,
        *,
        who: str | None,
        kind: str,
        round_id: str | None = None,
    ) -> None:
        self.crossings.record(
            sender=who or "unknown",
            recipient=COORDINATOR,
            kind=f"refused:{kind}",
            round_id=round_id,
            detail={"reason": reason[:200]},
        )
        log.warning("refused %s from %s: %s", kind, who or "unknown", reason)
        context.abort(code, reason)

    def _partner(self, context: grpc.ServicerContext, kind: str) -> str:
        try:
            ident = peer_identity(context)
        except AuthError as exc:
            self.refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(exc), who=None, kind=kind)
        if ident.name not in self.project.partner_ids:
            self.refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"'{ident.name}' is not a partner in project '{self.project.name}'",
                who=ident.name,
                kind=kind,
            )
        return ident.name

    def _check_project(
        self,
        context: grpc.ServicerContext,
        fingerprint: str,
        *,
        who: str,
        kind: str,
        round_id: str | None = None,
    ) -> None:
        if fingerprint != self.loaded.fingerprint:
            self.refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"project fingerprint mismatch: the request names {fingerprint or '(none)'}, this "
                f"coordinator runs {self.loaded.fingerprint}. Both sides must use the project file "
                "the partners signed.",
                who=who,
                kind=kind,
                round_id=round_id,
            )

    def _open_round(
        self,
        context: grpc.ServicerContext,
        round_id: str,
        *,
        who: str,
        kind: str,
        states: tuple[str, ...],
    ) -> None:
        r = self.store.round(round_id)
        if r is None or r.state not in states:
            self.refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"round '{round_id}' is {'unknown' if r is None else r.state}; "
                f"{kind} is only accepted while it is {' or '.join(states)}",
                who=who,
                kind=kind,
                round_id=round_id,
            )

    # --- instructions ---------------------------------------------------------------------------

    def instruction(self, round_id: str, what: str) -> coordinator_pb2.Instruction:
        msg = coordinator_pb2.Instruction(
            instruction_id=f"{round_id}/{what}",
            project_fingerprint=self.loaded.fingerprint,
            round_id=round_id,
        )
        if what == ENCODE:
            msg.encode_and_upload.chunk_records = self.chunk_records
            msg.encode_and_upload.clk_bits = self.project.linkage.wire_bits
        elif what == ENTITIES:
            msg.entities_ready.SetInParent()
        elif what.startswith("attribute:"):
            _, product_id, attribute = what.split(":", 2)
            msg.share_attribute.product_id = product_id
            msg.share_attribute.attribute = attribute
        elif what.startswith("product:"):
            product_id = what.split(":", 1)[1]
            prod = next(p for p in self.project.products if p.id == product_id)
            msg.product_release.product_id = product_id
            msg.product_release.title = prod.title
            for _, name, media_type, path in self.store.product_files(
                round_id=round_id, product_id=product_id
            ):
                msg.product_release.files.add(
                    name=name, media_type=media_type, content=Path(path).read_bytes()
                )
        elif what == CLOSED:
            r = self.store.round(round_id)
            msg.round_closed.status = r.state if r else "unknown"
            msg.round_closed.message = r.message if r else ""
        else:
            raise ValueError(f"unknown delivery {what!r}")
        return msg

    def push(self, partner: str) -> None:
        """Offer a connected partner every instruction it has not acknowledged yet."""
        if partner not in self.sessions.connected():
            return
        for round_id, what in self.store.pending_deliveries(partner=partner):
            state = self.store.round(round_id).state
            if what == ENCODE and state != "open":
                continue
            self.sessions.offer(partner, self.instruction(round_id, what))

    # --- Coordinator service --------------------------------------------------------------------

    def Connect(
        self, request_iterator: Iterator[coordinator_pb2.NodeEvent], context: grpc.ServicerContext
    ) -> Iterator[coordinator_pb2.Instruction]:
        partner = self._partner(context, "hello")
        first = next(request_iterator, None)
        if first is None or not first.HasField("hello"):
            self.refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message on Connect must be a Hello",
                who=partner,
                kind="hello",
            )
        hello = first.hello
        self.crossings.record(sender=partner, recipient=COORDINATOR, kind="hello", message=hello)
        if hello.partner_id != partner:
            self.refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"the node claims partner id '{hello.partner_id}' but its certificate is "
                f"issued to '{partner}'; a node may only act as the partner named in its "
                "certificate",
                who=partner,
                kind="hello",
            )
        self._check_project(context, hello.project_fingerprint, who=partner, kind="hello")
        q = self.sessions.open(partner)
        log.info("node %s connected (oda-fed %s)", partner, hello.software_version or "?")
        reader = threading.Thread(
            target=self._read_results,
            args=(partner, request_iterator, q),
            name=f"results-{partner}",
            daemon=True,
        )
        reader.start()
        self.push(partner)
        try:
            while (instruction := q.get()) is not None:
                kind = "instruction:" + instruction.WhichOneof("body")
                self.crossings.record(
                    sender=COORDINATOR,
                    recipient=partner,
                    kind=kind,
                    message=instruction,
                    round_id=instruction.round_id,
                )
                yield instruction
        finally:
            self.sessions.close(partner, q)
            log.info("node %s disconnected", partner)

    def _read_results(
        self, partner: str, events: Iterator[coordinator_pb2.NodeEvent], q: queue.Queue
    ) -> None:
        try:
            for event in events:
                if not event.HasField("result"):
                    continue
                result = event.result
                round_id, _, what = result.instruction_id.partition("/")
                self.crossings.record(
                    sender=partner,
                    recipient=COORDINATOR,
                    kind="instruction_result",
                    message=result,
                    round_id=round_id,
                    records=result.records,
                )
                if result.ok:
                    self.store.mark_delivered(round_id=round_id, partner=partner, what=what)
                else:
                    error = result.error[:200] or "no reason given"
                    self.store.mark_delivered(
                        round_id=round_id, partner=partner, what=what, error=error
                    )
                    self.store.set_state(
                        round_id,
                        self.store.round(round_id).state,
                        message=f"{partner} could not do '{what}': {error}",
                    )
                    log.warning("node %s could not do %s: %s", partner, what, error)
                self.schedule(round_id)
        except grpc.RpcError:
            pass  # the stream ended; the generator side cleans up
        finally:
            q.put(None)

    def UploadClks(
        self, request_iterator: Iterator[coordinator_pb2.ClkChunk], context: grpc.ServicerContext
    ) -> coordinator_pb2.UploadReceipt:
        partner = self._partner(context, "clk_upload")
        bits = self.project.linkage.wire_bits
        state = None
        round_id = ""
        for chunk in request_iterator:
            round_id = chunk.round_id
            self._check_project(
                context,
                chunk.project_fingerprint,
                who=partner,
                kind="clk_upload",
                round_id=round_id,
            )
            self._open_round(context, round_id, who=partner, kind="clk_upload", states=("open",))
            problem = (
                clk_chunk_problem(chunk, bits)
                or token_problem(chunk, self.keyed_fields)
                or record_key_problem(chunk, stable=self.stable_ids)
            )
            if problem:
                self.refuse(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    problem,
                    who=partner,
                    kind="clk_upload",
                    round_id=round_id,
                )
            self.crossings.record(
                sender=partner,
                recipient=COORDINATOR,
                kind="clk_chunk",
                message=chunk,
                records=chunk.records,
                round_id=round_id,
                detail=chunk_detail(chunk),
            )
            state = self._store_chunk(
                context,
                partner,
                CLKS,
                chunk,
                chunk.clks,
                chunk.records,
                tokens=token_blob(chunk),
                record_keys=b"".join(chunk.record_keys) if self.stable_ids else None,
            )
        if state is None:
            self.refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the upload carried no chunks",
                who=partner,
                kind="clk_upload",
            )
        if state.complete:
            log.info("round %s: %s uploaded %d CLKs", round_id, partner, state.total_records)
            self.schedule(round_id)
        return _receipt(round_id, state)

    def _store_chunk(
        self,
        context,
        partner: str,
        upload: str,
        chunk,
        data: bytes,
        records: int,
        *,
        tokens: bytes | None = None,
        record_keys: bytes | None = None,
    ):
        try:
            return self.store.store_chunk(
                round_id=chunk.round_id,
                partner=partner,
                upload=upload,
                chunk=Chunk(
                    chunk_index=chunk.chunk_index,
                    total_chunks=chunk.total_chunks,
                    first_ref=chunk.first_ref,
                    records=records,
                    total_records=chunk.total_records,
                    data=data,
                    tokens=tokens,
                    record_keys=record_keys,
                ),
            )
        except ProtocolError as exc:
            self.refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                str(exc),
                who=partner,
                kind=upload.split(":")[0],
                round_id=chunk.round_id,
            )

    def GetUploadStatus(
        self, request: coordinator_pb2.UploadStatusRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.UploadReceipt:
        partner = self._partner(context, "upload_status")
        self._check_project(context, request.project_fingerprint, who=partner, kind="upload_status")
        state = self.store.upload_state(
            round_id=request.round_id, partner=partner, upload=request.upload or CLKS
        )
        return _receipt(request.round_id, state)

    def UploadAttribute(
        self,
        request_iterator: Iterator[coordinator_pb2.AttributeChunk],
        context: grpc.ServicerContext,
    ) -> coordinator_pb2.UploadReceipt:
        partner = self._partner(context, "attribute_upload")
        state = None
        round_id = ""
        for chunk in request_iterator:
            round_id = chunk.round_id
            self._check_project(
                context,
                chunk.project_fingerprint,
                who=partner,
                kind="attribute_upload",
                round_id=round_id,
            )
            if not self.project.attribute_allowed(
                partner=partner, product_id=chunk.product_id, attribute=chunk.attribute
            ):
                self.refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the project does not let '{partner}' share attribute "
                    f"'{chunk.attribute}' for product '{chunk.product_id}'",
                    who=partner,
                    kind="attribute_upload",
                    round_id=round_id,
                )
            self._open_round(
                context,
                round_id,
                who=partner,
                kind="attribute_upload",
                states=("waiting_attributes",),
            )
            clk_state = self.store.upload_state(round_id=round_id, partner=partner, upload=CLKS)
            if clk_state is None or chunk.total_records != clk_state.total_records:
                self.refuse(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "attribute upload must have one value per uploaded CLK "
                    f"({clk_state.total_records if clk_state else 0}), got {chunk.total_records}",
                    who=partner,
                    kind="attribute_upload",
                    round_id=round_id,
                )
            self.crossings.record(
                sender=partner,
                recipient=COORDINATOR,
                kind="attribute_chunk",
                message=chunk,
                records=len(chunk.values),
                round_id=round_id,
                detail={"attribute": chunk.attribute, "chunk": chunk.chunk_index},
            )
            data = json.dumps(list(chunk.values), ensure_ascii=False).encode("utf-8")
            state = self._store_chunk(
                context,
                partner,
                attribute_upload(chunk.product_id, chunk.attribute),
                chunk,
                data,
                len(chunk.values),
            )
        if state is None:
            self.refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the upload carried no chunks",
                who=partner,
                kind="attribute_upload",
            )
        if state.complete:
            self.schedule(round_id)
        return _receipt(round_id, state)

    def FetchEntities(
        self, request: coordinator_pb2.FetchEntitiesRequest, context: grpc.ServicerContext
    ) -> Iterator[coordinator_pb2.EntityChunk]:
        partner = self._partner(context, "fetch_entities")
        self._check_project(
            context,
            request.project_fingerprint,
            who=partner,
            kind="fetch_entities",
            round_id=request.round_id,
        )
        self._open_round(
            context,
            request.round_id,
            who=partner,
            kind="fetch_entities",
            states=("waiting_attributes", "releasing", "closed"),
        )
        rows = self.store.entity_ids(round_id=request.round_id, partner=partner)
        for start in range(0, len(rows), ENTITY_CHUNK):
            part = rows[start : start + ENTITY_CHUNK]
            msg = coordinator_pb2.EntityChunk(first_ref=part[0][0], entity_ids=[e for _, e in part])
            self.crossings.record(
                sender=COORDINATOR,
                recipient=partner,
                kind="entity_chunk",
                message=msg,
                records=len(part),
                round_id=request.round_id,
            )
            yield msg

    # --- Admin service --------------------------------------------------------------------------

    def StartRound(
        self, request: admin_pb2.StartRoundRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RoundStatus:
        if request.project_fingerprint and request.project_fingerprint != self.loaded.fingerprint:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this coordinator runs project {self.loaded.fingerprint}, not "
                f"{request.project_fingerprint}",
            )
        active = self.store.active_rounds()
        if active:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"round {active[-1].round_id} is still {active[-1].state}; wait for it to close",
            )
        round_id = self.engine.start_round()
        return self.status(round_id)

    def GetRound(
        self, request: admin_pb2.GetRoundRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RoundStatus:
        r = self.store.round(request.round_id or None)
        if r is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no round {request.round_id or 'yet'}")
        return self.status(r.round_id)

    def status(self, round_id: str) -> admin_pb2.RoundStatus:
        r = self.store.round(round_id)
        connected = self.sessions.connected()
        deliveries = self.store.deliveries(round_id=round_id)
        msg = admin_pb2.RoundStatus(
            round_id=r.round_id,
            state=r.state,
            message=r.message,
            entities=r.entities,
            linked_entities=r.linked_entities,
            report_path=r.report,
        )
        for partner in self.project.partner_ids:
            up = self.store.upload_state(round_id=round_id, partner=partner, upload=CLKS)
            msg.partners.add(
                partner_id=partner,
                connected=partner in connected,
                records=up.total_records if up else 0,
                uploaded=bool(up and up.complete),
                entities_delivered=any(
                    p == partner and w == ENTITIES and d for p, w, d, _ in deliveries
                ),
            )
        msg.product_files.extend(path for *_, path in self.store.product_files(round_id=round_id))
        return msg


def _receipt(round_id: str, state) -> coordinator_pb2.UploadReceipt:
    if state is None:
        return coordinator_pb2.UploadReceipt(round_id=round_id)
    return coordinator_pb2.UploadReceipt(
        round_id=round_id,
        chunks_stored=len(state.stored_chunks),
        records_stored=state.records_stored,
        complete=state.complete,
        stored_chunks=list(state.stored_chunks),
    )
