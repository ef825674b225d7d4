"""The one place where protobuf messages become plain values and back (Flower's ``serde``).

:func:`to_proto` and :func:`from_proto` convert every message of
:mod:`oda_fed.transport.messages`; :func:`received` also keeps the bytes that arrived, which is
what the recipient's audit log hashes. Sender and recipient hash the deterministic serialisation
of the same message, so one crossing has one ``payload_sha256`` in both logs.

A message a node sends (:data:`NODE_MESSAGES`) is held to the bound of each of its fields
(:data:`~oda_fed.transport.protocol.FIELD_BOUNDS`) before anything of it is converted or hashed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from oda_fed.errors import ProtocolError
from oda_fed.proto.v1 import admin_pb2 as admin
from oda_fed.proto.v1 import coordinator_pb2 as wire
from oda_fed.proto.v1 import keys_pb2 as keys
from oda_fed.transport import messages as m
from oda_fed.transport.protocol import DEFAULT_BOUND, FIELD_BOUNDS, Bound, RoundState

T = TypeVar("T")


def payload(message: Message) -> bytes:
    """The bytes both sides' audit logs hash: the message's deterministic serialisation."""
    return message.SerializeToString(deterministic=True)


def encode(value: object) -> tuple[Message, bytes]:
    """``value`` on the wire, and the bytes its sender's audit log hashes."""
    message = to_proto(value)
    return message, payload(message)


def received(message: Message) -> m.Received[Any]:
    """A message that arrived, as a value together with its bytes."""
    return m.Received(message=from_proto(message), payload=payload(message))


def to_proto(value: object) -> Message:
    """The protobuf message of a value of :mod:`oda_fed.transport.messages`."""
    try:
        convert = _TO[type(value)]
    except KeyError:
        raise TypeError(f"no wire form for {type(value).__name__}") from None
    return convert(value)


def from_proto(message: Message) -> Any:
    """The value of a protobuf message of ``oda_fed.proto.v1``; one of :data:`NODE_MESSAGES`
    only within its bounds (:func:`check_bounds`)."""
    try:
        convert = _FROM[type(message)]
    except KeyError:
        raise TypeError(f"no value for {type(message).__name__}") from None
    if message.DESCRIPTOR.full_name in NODE_MESSAGES:
        check_bounds(message)
    return convert(message)


def _sent_by_nodes(*descriptors: Descriptor) -> frozenset[str]:
    found: set[str] = set()
    todo = list(descriptors)
    while todo:
        d = todo.pop()
        if d.full_name not in found:
            found.add(d.full_name)
            todo.extend(f.message_type for f in d.fields if f.message_type is not None)
    return frozenset(found)


#: Every message a node sends (the requests of the nodes' service and the key relay's, and the
#: messages inside them), by full name.
NODE_MESSAGES = _sent_by_nodes(
    *(m.input_type for m in wire.DESCRIPTOR.services_by_name["Coordinator"].methods),
    *(m.input_type for m in keys.DESCRIPTOR.services_by_name["Keys"].methods),
)


def bound(field: FieldDescriptor) -> Bound:
    """The bound of a field of one of :data:`NODE_MESSAGES`."""
    return FIELD_BOUNDS.get(f"{field.containing_type.name}.{field.name}", DEFAULT_BOUND)


def check_bounds(message: Message, *, at: str = "") -> None:
    """Refuse ``message`` when a field holds more than its :func:`bound`: too many items, or a
    string or bytes too long. Only lengths are looked at, never content.

    Raises
    ------
    ProtocolError
        Naming the field, what it holds and its bound (never its content).
    """
    where = at or message.DESCRIPTOR.name
    for field, value in message.ListFields():
        name, most = f"{where}.{field.name}", bound(field)
        items = value if field.is_repeated else (value,)
        if len(items) > most.items:
            raise ProtocolError(
                f"{name} has {len(items)} items; at most {most.items} are accepted, and nothing "
                "of this message was taken"
            )
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(items):
                check_bounds(item, at=f"{name}[{i}]" if field.is_repeated else name)
        elif field.type in _SIZED and items and max(map(len, items)) > most.size:
            i, long = next((i, len(v)) for i, v in enumerate(items) if len(v) > most.size)
            shown = f"{name}[{i}]" if field.is_repeated else name
            raise ProtocolError(
                f"{shown} is {long} {_SIZED[field.type]} long; at most {most.size} are "
                "accepted, and nothing of this message was taken"
            )


_SIZED = {FieldDescriptor.TYPE_STRING: "characters", FieldDescriptor.TYPE_BYTES: "bytes"}


# --- the control stream ---------------------------------------------------------------------------


def node_event(value: m.Hello | m.InstructionResult) -> tuple[wire.NodeEvent, bytes]:
    """A node's message on the control stream, and the bytes of its Hello or result."""
    inner, data = encode(value)
    if isinstance(value, m.Hello):
        return wire.NodeEvent(hello=inner), data
    return wire.NodeEvent(result=inner), data


def node_event_from_proto(
    event: wire.NodeEvent,
) -> m.Received[m.Hello | m.InstructionResult] | None:
    """The Hello or result in a control-stream message (None for a kind this side ignores)."""
    body = event.WhichOneof("body")
    if body is None:
        return None
    return received(getattr(event, body))


def _instruction(v: m.Instruction) -> wire.Instruction:
    msg = wire.Instruction(
        instruction_id=v.instruction_id,
        project_fingerprint=v.project_fingerprint,
        round_id=v.round_id,
    )
    body = v.body
    if isinstance(body, m.EncodeAndUpload):
        msg.encode_and_upload.chunk_records = body.chunk_records
        msg.encode_and_upload.clk_bits = body.clk_bits
    elif isinstance(body, m.ShareAttribute):
        msg.share_attribute.product_id = body.product_id
        msg.share_attribute.attribute = body.attribute
    elif isinstance(body, m.EntitiesReady):
        msg.entities_ready.SetInParent()
    elif isinstance(body, m.ProductRelease):
        msg.product_release.product_id = body.product_id
        msg.product_release.title = body.title
        msg.product_release.released_by = body.released_by
        for f in body.files:
            msg.product_release.files.add(name=f.name, media_type=f.media_type, content=f.content)
    elif isinstance(body, m.RoundClosed):
        msg.round_closed.status = body.status
        msg.round_closed.message = body.message
        if body.witness is not None:
            msg.round_closed.witness.CopyFrom(_witness(body.witness))
    elif isinstance(body, m.ComputeTable):
        msg.compute_table.product_id = body.product_id
    return msg


def _instruction_from(msg: wire.Instruction) -> m.Instruction:
    name = msg.WhichOneof("body")
    body: m.Body | None = None
    if name == "encode_and_upload":
        e = msg.encode_and_upload
        body = m.EncodeAndUpload(chunk_records=e.chunk_records, clk_bits=e.clk_bits)
    elif name == "share_attribute":
        s = msg.share_attribute
        body = m.ShareAttribute(product_id=s.product_id, attribute=s.attribute)
    elif name == "entities_ready":
        body = m.EntitiesReady()
    elif name == "product_release":
        r = msg.product_release
        body = m.ProductRelease(
            product_id=r.product_id,
            title=r.title,
            files=tuple(
                m.ReleasedFile(name=f.name, media_type=f.media_type, content=f.content)
                for f in r.files
            ),
            released_by=r.released_by,
        )
    elif name == "round_closed":
        r = msg.round_closed
        body = m.RoundClosed(
            status=r.status,
            message=r.message,
            witness=_witness_from(r.witness) if r.HasField("witness") else None,
        )
    elif name == "compute_table":
        body = m.ComputeTable(product_id=msg.compute_table.product_id)
    return m.Instruction(
        instruction_id=msg.instruction_id,
        project_fingerprint=msg.project_fingerprint,
        round_id=msg.round_id,
        body=body,
    )


# --- uploads and downloads ------------------------------------------------------------------------


def _clk_chunk(v: m.ClkChunk) -> wire.ClkChunk:
    msg = wire.ClkChunk(
        round_id=v.round_id,
        project_fingerprint=v.project_fingerprint,
        chunk_index=v.chunk_index,
        total_chunks=v.total_chunks,
        first_ref=v.first_ref,
        records=v.records,
        total_records=v.total_records,
        clk_bits=v.clk_bits,
        clks=v.clks,
        record_keys=list(v.record_keys),
    )
    for column in v.tokens:
        msg.tokens.add(field=column.field, values=list(column.values))
    for ev in v.evidence:
        msg.evidence.add(name=ev.name, data=ev.data)
    return msg


def _clk_chunk_from(msg: wire.ClkChunk) -> m.ClkChunk:
    return m.ClkChunk(
        round_id=msg.round_id,
        project_fingerprint=msg.project_fingerprint,
        chunk_index=msg.chunk_index,
        total_chunks=msg.total_chunks,
        first_ref=msg.first_ref,
        records=msg.records,
        total_records=msg.total_records,
        clk_bits=msg.clk_bits,
        clks=msg.clks,
        tokens=tuple(m.TokenColumn(field=c.field, values=tuple(c.values)) for c in msg.tokens),
        record_keys=tuple(msg.record_keys),
        evidence=tuple(m.EvidenceColumn(name=c.name, data=c.data) for c in msg.evidence),
    )


def _local_table(v: m.LocalTable) -> wire.LocalTable:
    msg = wire.LocalTable(
        round_id=v.round_id, project_fingerprint=v.project_fingerprint, product_id=v.product_id
    )
    for c in v.cells:
        msg.cells.add(coordinates=list(c.coordinates), suppressed=c.suppressed, count=c.count)
    return msg


def _local_table_from(msg: wire.LocalTable) -> m.LocalTable:
    return m.LocalTable(
        round_id=msg.round_id,
        project_fingerprint=msg.project_fingerprint,
        product_id=msg.product_id,
        cells=tuple(
            m.LocalCell(coordinates=tuple(c.coordinates), suppressed=c.suppressed, count=c.count)
            for c in msg.cells
        ),
    )


def _status_request(v: m.UploadStatusRequest) -> wire.UploadStatusRequest:
    return wire.UploadStatusRequest(
        round_id=v.round_id,
        project_fingerprint=v.project_fingerprint,
        upload=v.upload.name,
    )


def _status_request_from(msg: wire.UploadStatusRequest) -> m.UploadStatusRequest:
    return m.UploadStatusRequest(
        round_id=msg.round_id,
        project_fingerprint=msg.project_fingerprint,
        upload=m.Upload.from_name(msg.upload),
    )


# --- agreeing the linkage secret -----------------------------------------------------------------


def _key_directory(v: m.KeyDirectory) -> keys.KeyDirectory:
    return keys.KeyDirectory(keys=[to_proto(k) for k in v.keys], key_version=v.key_version)


def _key_directory_from(msg: keys.KeyDirectory) -> m.KeyDirectory:
    return m.KeyDirectory(keys=tuple(from_proto(k) for k in msg.keys), key_version=msg.key_version)


_WRAPPED = ("project_fingerprint", "key_version", "sender", "recipient", "sender_key",
            "recipient_key", "salt", "nonce", "ciphertext")  # fmt: skip


def _wrapped(v: m.WrappedSecret) -> keys.WrappedSecret:
    msg = keys.WrappedSecret(**{n: getattr(v, n) for n in _WRAPPED})
    if v.sender_signed_key is not None:
        msg.sender_signed_key.CopyFrom(to_proto(v.sender_signed_key))
    return msg


def _wrapped_from(msg: keys.WrappedSecret) -> m.WrappedSecret:
    signed = from_proto(msg.sender_signed_key) if msg.HasField("sender_signed_key") else None
    return m.WrappedSecret(**{n: getattr(msg, n) for n in _WRAPPED}, sender_signed_key=signed)


def _wrapped_secrets(v: m.WrappedSecrets) -> keys.WrappedSecrets:
    return keys.WrappedSecrets(
        project_fingerprint=v.project_fingerprint,
        key_version=v.key_version,
        key_check=v.key_check,
        secrets=[_wrapped(w) for w in v.secrets],
    )


def _wrapped_secrets_from(msg: keys.WrappedSecrets) -> m.WrappedSecrets:
    return m.WrappedSecrets(
        project_fingerprint=msg.project_fingerprint,
        key_version=msg.key_version,
        key_check=msg.key_check,
        secrets=tuple(_wrapped_from(w) for w in msg.secrets),
    )


# --- the operator's interface ---------------------------------------------------------------------


def _round_status(v: m.RoundStatus) -> admin.RoundStatus:
    msg = admin.RoundStatus(
        round_id=v.round_id,
        state=v.state.value,
        message=v.message,
        entities=v.entities,
        linked_entities=v.linked_entities,
        product_files=list(v.product_files),
        report_path=v.report_path,
        deadline=v.deadline,
        quality_report_path=v.quality_report_path,
        released_by=v.released_by,
    )
    for p in v.partners:
        msg.partners.add(
            partner_id=p.partner,
            connected=p.connected,
            records=p.records,
            uploaded=p.uploaded,
            entities_delivered=p.entities_delivered,
            last_error=p.last_error,
        )
    for s in v.products:
        msg.products.add(
            product_id=s.product_id,
            title=s.title,
            recipients=list(s.recipients),
            cells=s.cells,
            suppressed=s.suppressed,
        )
    return msg


def _round_status_from(msg: admin.RoundStatus) -> m.RoundStatus:
    try:
        state = RoundState(msg.state)
    except ValueError:
        raise ProtocolError(
            f"the coordinator reports round state {msg.state[:40]!r}, which this version of "
            "oda-fed does not know; use the coordinator's version"
        ) from None
    return m.RoundStatus(
        round_id=msg.round_id,
        state=state,
        message=msg.message,
        entities=msg.entities,
        linked_entities=msg.linked_entities,
        partners=tuple(
            m.PartnerProgress(
                partner=p.partner_id,
                connected=p.connected,
                records=p.records,
                uploaded=p.uploaded,
                entities_delivered=p.entities_delivered,
                last_error=p.last_error,
            )
            for p in msg.partners
        ),
        product_files=tuple(msg.product_files),
        report_path=msg.report_path,
        deadline=msg.deadline,
        quality_report_path=msg.quality_report_path,
        products=tuple(
            m.ProductSummary(
                product_id=s.product_id,
                title=s.title,
                recipients=tuple(s.recipients),
                cells=s.cells,
                suppressed=s.suppressed,
            )
            for s in msg.products
        ),
        released_by=msg.released_by,
    )


def _fields(cls: type[T], proto: type[Message]) -> tuple[type, type[Message], Callable, Callable]:
    """Converters for a message whose fields are the value's, one to one (repeated fields are
    tuples in the value)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]

    def to(v: object) -> Message:
        return proto(**{n: getattr(v, n) for n in names})

    def back(msg: Message) -> T:
        values = {n: getattr(msg, n) for n in names}
        return cls(**{n: v if isinstance(v, _SCALARS) else tuple(v) for n, v in values.items()})

    return cls, proto, to, back


_SCALARS = (str, bytes, int, float, bool)


def _witness(v: m.Witness) -> wire.Witness:
    return wire.Witness(**{f.name: getattr(v, f.name) for f in fields(m.Witness)})


def _witness_from(msg: wire.Witness) -> m.Witness:
    return m.Witness(
        checkpoint=msg.checkpoint,
        since_size=msg.since_size,
        consistency=tuple(msg.consistency),
        cosignature=msg.cosignature,
        witnessed_size=msg.witnessed_size,
    )


def _result(v: m.InstructionResult) -> wire.InstructionResult:
    msg = wire.InstructionResult(
        instruction_id=v.instruction_id, ok=v.ok, error=v.error, records=v.records
    )
    if v.witness is not None:
        msg.witness.CopyFrom(_witness(v.witness))
    return msg


def _result_from(msg: wire.InstructionResult) -> m.InstructionResult:
    return m.InstructionResult(
        instruction_id=msg.instruction_id,
        ok=msg.ok,
        error=msg.error,
        records=msg.records,
        witness=_witness_from(msg.witness) if msg.HasField("witness") else None,
    )


_PAIRS: list[tuple[type, type[Message], Callable, Callable]] = [
    _fields(m.Hello, wire.Hello),
    (m.InstructionResult, wire.InstructionResult, _result, _result_from),
    _fields(m.AttributeChunk, wire.AttributeChunk),
    _fields(m.UploadReceipt, wire.UploadReceipt),
    _fields(m.FetchEntitiesRequest, wire.FetchEntitiesRequest),
    _fields(m.EntityChunk, wire.EntityChunk),
    (m.Instruction, wire.Instruction, _instruction, _instruction_from),
    (m.ClkChunk, wire.ClkChunk, _clk_chunk, _clk_chunk_from),
    (m.LocalTable, wire.LocalTable, _local_table, _local_table_from),
    (m.UploadStatusRequest, wire.UploadStatusRequest, _status_request, _status_request_from),
    (m.RoundStatus, admin.RoundStatus, _round_status, _round_status_from),
    _fields(m.AgreementKey, keys.AgreementKey),
    _fields(m.KeysRequest, keys.KeysRequest),
    _fields(m.SecretRequest, keys.SecretRequest),
    (m.KeyDirectory, keys.KeyDirectory, _key_directory, _key_directory_from),
    (m.WrappedSecret, keys.WrappedSecret, _wrapped, _wrapped_from),
    (m.WrappedSecrets, keys.WrappedSecrets, _wrapped_secrets, _wrapped_secrets_from),
]

_TO: dict[type, Callable[[Any], Message]] = {v: to for v, _, to, _ in _PAIRS}
_FROM: dict[type, Callable[[Any], Any]] = {p: back for _, p, _, back in _PAIRS}


# --- admin requests: plain fields -----------------------------------------------------------------


def start_round_request(project_fingerprint: str) -> admin.StartRoundRequest:
    return admin.StartRoundRequest(project_fingerprint=project_fingerprint)


def get_round_request(round_id: str) -> admin.GetRoundRequest:
    return admin.GetRoundRequest(round_id=round_id)


def release_round_request(round_id: str) -> admin.ReleaseRoundRequest:
    return admin.ReleaseRoundRequest(round_id=round_id)


def cancel_round_request(round_id: str, reason: str) -> admin.CancelRoundRequest:
    return admin.CancelRoundRequest(round_id=round_id, reason=reason)
