"""The coordinator's gRPC servicers: thin, as Flower's are.

Each method takes the caller's identity from its certificate, turns the request into plain values
(:mod:`oda_fed.transport.serde`), calls a handler over them and the coordinator's state
(:mod:`~oda_fed.coordinator.nodes`, :mod:`~oda_fed.coordinator.operator`), and turns the answer
back. A :class:`~oda_fed.coordinator.state.Refusal` from a handler is written to the audit log
and becomes the call's status. :mod:`oda_fed.transport.auth` has already checked the
certificate's role before any of this runs.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import grpc
from google.protobuf.message import Message

from oda_fed.coordinator import keys, nodes, operator
from oda_fed.coordinator.sessions import Holder
from oda_fed.coordinator.state import CoordinatorState, Refusal, Status
from oda_fed.errors import AuthError, ProtocolError, StateError
from oda_fed.proto.v1 import admin_pb2_grpc, coordinator_pb2_grpc, keys_pb2_grpc
from oda_fed.transport import serde
from oda_fed.transport.auth import peer
from oda_fed.transport.messages import EntityChunk, Instruction, WrappedSecret
from oda_fed.transport.protocol import COORDINATOR, INSTRUCTION_KINDS, AuditKind, cut

log = logging.getLogger(__name__)

#: Initial metadata of a Connect stream whose session is open.
SESSION_HEADER = "oda-fed-session"


@contextmanager
def _refusals(state: CoordinatorState, context: grpc.ServicerContext, *, who: str | None):
    """Log a handler's refusal and end the call with its status. A message that cannot be
    read as the protocol's (an unknown upload name, say) is refused as invalid, never left to
    end the call as an unhandled error."""
    try:
        try:
            yield
        except ProtocolError as exc:
            raise Refusal(
                Status.INVALID_ARGUMENT, cut(str(exc)), kind=AuditKind.REFUSED_CALL
            ) from None
    except Refusal as refusal:
        state.log_refusal(refusal, who=who)
        log.warning(
            "refused %s from %s: %s",
            refusal.kind,
            who or "unknown",
            refusal.reason,
            extra={
                "partner": who or "unknown",
                "refusal": "none" if refusal.kind is None else refusal.kind.value,
                "code": refusal.status.value,
                "round_id": refusal.round_id,
            },
        )
        context.abort(grpc.StatusCode[refusal.status.value], refusal.reason)
    except StateError as exc:
        # The database went away mid-call (PostgreSQL restarting): nothing was written, and the
        # node retries an unavailable coordinator.
        log.error("call from %s failed: %s", who or "unknown", exc, extra={"partner": who or ""})
        context.abort(grpc.StatusCode.UNAVAILABLE, "the coordinator's database is unavailable")


def _holder(context: grpc.ServicerContext) -> Holder:
    """The caller's certificate, as a partner's session is bound to it."""
    caller = peer(context)
    return Holder(
        fingerprint=caller.fingerprint, serial=caller.serial_hex, not_after=caller.not_after
    )


def _caller(state: CoordinatorState, context: grpc.ServicerContext, kind: AuditKind) -> str:
    """The name in the caller's certificate (a node's must be a partner of the project, be the
    certificate pinned for it (:func:`~oda_fed.coordinator.nodes.pinned`) and hold its live
    session: :func:`~oda_fed.coordinator.nodes.bound`)."""
    with _refusals(state, context, who=None):
        try:
            name = peer(context).identity.name
        except AuthError as exc:
            raise Refusal(Status.UNAUTHENTICATED, str(exc), kind=kind) from None
    if kind is AuditKind.REFUSED_CALL:
        return name
    with _refusals(state, context, who=name):
        partner = nodes.check_partner(state, name, kind=kind)
        holder = _holder(context)
        nodes.pinned(state, partner, holder, kind=kind)
        if kind is not AuditKind.REFUSED_HELLO:  # Connect opens the session
            nodes.bound(state, partner, holder, kind=kind)
        return partner


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    """The nodes' service."""

    def __init__(self, state: CoordinatorState) -> None:
        self.state = state

    def Connect(self, request_iterator, context):  # noqa: N802 - gRPC's method names
        partner = _caller(self.state, context, AuditKind.REFUSED_HELLO)
        events = (serde.node_event_from_proto(e) for e in request_iterator)
        # Headers go out once the session is open, so a node knows it holds it.
        opened = lambda: context.send_initial_metadata(((SESSION_HEADER, "live"),))  # noqa: E731
        with _refusals(self.state, context, who=partner):
            for instruction in nodes.connect(
                self.state, partner, events, caller=_holder(context), opened=opened
            ):
                yield self._send(partner, instruction)

    def UploadClks(self, request_iterator, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_CLK_UPLOAD)
        with (
            _refusals(self.state, context, who=partner),
            nodes.upload_slots(self.state, request_iterator) as requests,
        ):
            chunks = (serde.received(c) for c in requests)
            return serde.to_proto(nodes.receive_clks(self.state, partner, chunks))

    def GetUploadStatus(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_UPLOAD_STATUS)
        with _refusals(self.state, context, who=partner):
            asked = serde.from_proto(request)
            return serde.to_proto(nodes.upload_status(self.state, partner, asked))

    def UploadAttribute(self, request_iterator, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_ATTRIBUTE_UPLOAD)
        with (
            _refusals(self.state, context, who=partner),
            nodes.upload_slots(self.state, request_iterator) as requests,
        ):
            chunks = (serde.received(c) for c in requests)
            return serde.to_proto(nodes.receive_attribute(self.state, partner, chunks))

    def UploadTable(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_TABLE_UPLOAD)
        with _refusals(self.state, context, who=partner):
            return serde.to_proto(nodes.receive_table(self.state, partner, serde.received(request)))

    def FetchEntities(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_FETCH_ENTITIES)
        with _refusals(self.state, context, who=partner):
            asked = serde.from_proto(request)
            for chunk in nodes.entity_chunks(self.state, partner, asked):
                yield self._send(partner, chunk, round_id=asked.round_id)

    def _send(
        self, partner: str, value: Instruction | EntityChunk, *, round_id: str = ""
    ) -> Message:
        """``value`` on the wire, logged as sent to ``partner``."""
        message, payload = serde.encode(value)
        crossings = self.state.crossings
        if isinstance(value, EntityChunk):
            crossings.record(
                sender=COORDINATOR,
                recipient=partner,
                kind=AuditKind.ENTITY_CHUNK,
                payload=payload,
                records=len(value.entity_ids),
                round_id=round_id,
            )
            return message
        # An instruction is logged when the node answers it: one lost on the way is in neither
        # log, and is offered again.
        name = value.body_name
        crossings.record_when_confirmed(
            f"{partner}/{value.instruction_id}",
            sender=COORDINATOR,
            recipient=partner,
            kind=AuditKind.EMPTY_INSTRUCTION if name is None else INSTRUCTION_KINDS[name][0],
            payload=payload,
            round_id=value.round_id,
            detail=value.audit_detail(),
        )
        return message


class KeysServicer(keys_pb2_grpc.KeysServicer):
    """The key relay: the nodes' agreement keys and wrapped secrets, never the secret."""

    def __init__(self, state: CoordinatorState) -> None:
        self.state = state

    def PublishKey(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_KEYS)
        with _refusals(self.state, context, who=partner):
            peer = bytes(context.auth_context()["x509_pem_cert"][0])
            # A node publishes its key before it says hello: its certificate is pinned here.
            nodes.pinned(self.state, partner, _holder(context), kind=AuditKind.REFUSED_KEYS,
                         pin=True)  # fmt: skip
            published = keys.publish_key(
                self.state, partner, serde.received(request), peer_certificate=peer
            )
            return serde.to_proto(published)

    def GetKeys(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_KEYS)
        with _refusals(self.state, context, who=partner):
            return serde.to_proto(keys.get_keys(self.state, serde.from_proto(request)))

    def PublishSecret(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_KEYS)
        with _refusals(self.state, context, who=partner):
            published = keys.publish_secret(self.state, partner, serde.received(request))
            return serde.to_proto(published)

    def FetchSecret(self, request, context):  # noqa: N802
        partner = _caller(self.state, context, AuditKind.REFUSED_KEYS)
        with _refusals(self.state, context, who=partner):
            wrapped: WrappedSecret = keys.fetch_secret(
                self.state, partner, serde.from_proto(request)
            )
            message, payload = serde.encode(wrapped)
            self.state.crossings.record(
                sender=COORDINATOR,
                recipient=partner,
                kind=AuditKind.WRAPPED_SECRET,
                payload=payload,
                records=1,
                detail={"key_version": wrapped.key_version},
            )
            return message


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """The operator's service."""

    def __init__(self, state: CoordinatorState) -> None:
        self.state = state

    def StartRound(self, request, context):  # noqa: N802
        who = _caller(self.state, context, AuditKind.REFUSED_CALL)
        with _refusals(self.state, context, who=who):
            started = operator.start_round(
                self.state, operator=who, fingerprint=request.project_fingerprint
            )
            return serde.to_proto(started)

    def GetRound(self, request, context):  # noqa: N802
        who = _caller(self.state, context, AuditKind.REFUSED_CALL)
        with _refusals(self.state, context, who=who):
            return serde.to_proto(operator.get_round(self.state, request.round_id))

    def ReleaseRound(self, request, context):  # noqa: N802
        who = _caller(self.state, context, AuditKind.REFUSED_CALL)
        with _refusals(self.state, context, who=who):
            released = operator.release_round(self.state, operator=who, round_id=request.round_id)
            return serde.to_proto(released)

    def CancelRound(self, request, context):  # noqa: N802
        who = _caller(self.state, context, AuditKind.REFUSED_CALL)
        with _refusals(self.state, context, who=who):
            cancelled = operator.cancel_round(
                self.state, operator=who, round_id=request.round_id, reason=request.reason
            )
            return serde.to_proto(cancelled)
