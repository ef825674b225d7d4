"""Every handler fuzzed with hypothesis-generated protobufs against a live coordinator over mutual
TLS, for a bounded number of calls: each call ends with a status the handler chose (never an
unhandled error), and the coordinator serves honest calls afterwards."""

from __future__ import annotations

import contextlib

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oda_fed.proto.v1 import admin_pb2, coordinator_pb2, keys_pb2
from oda_fed.transport.protocol import RoundState

# What an unhandled exception or a broken server would give; anything else is a handler's answer.
BROKEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
EXAMPLES = 120

_TEXT = st.one_of(
    st.sampled_from(["", "council", "police", "r1", "clks", "sha256:" + "0" * 64, "../../x"]),
    st.text(max_size=120),
)
_INT = {
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    if field.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=300), st.just(bytes(128)))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in _INT:
        return st.one_of(st.integers(0, 3), _INT[field.type])
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, width=32)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"no strategy for {field.full_name}")


def messages(descriptor: Descriptor, cls: type[Message], depth: int = 0) -> st.SearchStrategy:
    """Any message of ``cls``: every field set or not, repeated fields of 0 to 3 values, one
    member of each oneof at most, nested messages two levels deep."""

    def value(field: FieldDescriptor) -> st.SearchStrategy:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            nested = field.message_type._concrete_class
            return messages(field.message_type, nested, depth + 1)
        return _scalar(field)

    fields = [f for f in descriptor.fields if depth < 2 or f.type != FieldDescriptor.TYPE_MESSAGE]

    @st.composite
    def build(draw) -> Message:
        msg = cls()
        chosen_oneofs: set[str] = set()
        for field in fields:
            oneof = field.containing_oneof
            if oneof is not None:
                if oneof.name in chosen_oneofs or not draw(st.booleans()):
                    continue
                chosen_oneofs.add(oneof.name)
            elif not draw(st.booleans()):
                continue
            if field.is_repeated:
                for item in draw(st.lists(value(field), max_size=3)):
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        getattr(msg, field.name).add().CopyFrom(item)
                    else:
                        getattr(msg, field.name).append(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(msg, field.name).CopyFrom(draw(value(field)))
            else:
                setattr(msg, field.name, draw(value(field)))
        return msg

    return build()


def _of(cls: type[Message]) -> st.SearchStrategy:
    return messages(cls.DESCRIPTOR, cls)


def _status(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, Message):
            for _ in result:
                pass
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _unary(module, service: str, stub, method: str, data) -> None:
    """One generated request to a unary ``method`` of ``service``: answered with a chosen status."""
    methods = module.DESCRIPTOR.services_by_name[service].methods
    request = data.draw(
        _of(next(m for m in methods if m.name == method).input_type._concrete_class)
    )
    code = _status(lambda: getattr(stub, method)(request, timeout=2))
    assert code not in BROKEN, (method, request)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@FUZZ
@given(
    method=st.sampled_from(
        [
            "GetUploadStatus",
            "UploadTable",
            "FetchEntities",
            "UploadClks",
            "UploadAttribute",
            "Connect",
        ]
    ),  # fmt: skip
    data=st.data(),
)
def test_the_nodes_service_answers_any_message_with_a_chosen_status(federation, method, data):
    # The police's live session, held across the examples as its node would hold it, so the
    # messages reach the handlers rather than stopping at the session check.
    if not hasattr(federation, "fuzz_session"):
        federation.fuzz_session = contextlib.ExitStack()
        federation.fuzz_stub = federation.fuzz_session.enter_context(federation.session("police"))
    stub = federation.fuzz_stub
    types = {
        "GetUploadStatus": coordinator_pb2.UploadStatusRequest,
        "UploadTable": coordinator_pb2.LocalTable,
        "FetchEntities": coordinator_pb2.FetchEntitiesRequest,
        "UploadClks": coordinator_pb2.ClkChunk,
        "UploadAttribute": coordinator_pb2.AttributeChunk,
        "Connect": coordinator_pb2.NodeEvent,
    }
    streamed = method in ("UploadClks", "UploadAttribute", "Connect")
    if streamed:
        request = data.draw(st.lists(_of(types[method]), min_size=1, max_size=3))
        code = _status(lambda: getattr(stub, method)(iter(request), timeout=2))
    else:
        request = data.draw(_of(types[method]))
        code = _status(lambda: getattr(stub, method)(request, timeout=2))
    assert code not in BROKEN, (method, request)


@FUZZ
@given(
    method=st.sampled_from(["PublishKey", "GetKeys", "PublishSecret", "FetchSecret"]),
    data=st.data(),
)
def test_the_key_relay_answers_any_message_with_a_chosen_status(federation, method, data):
    from oda_fed.proto.v1 import keys_pb2_grpc

    channel, _ = federation.node_stub("social_care")
    _unary(keys_pb2, "Keys", keys_pb2_grpc.KeysStub(channel), method, data)
    channel.close()


@FUZZ
@given(
    method=st.sampled_from(["StartRound", "GetRound", "ReleaseRound", "CancelRound"]),
    data=st.data(),
)
def test_the_operators_service_answers_any_message_with_a_chosen_status(federation, method, data):
    from oda_fed.proto.v1 import admin_pb2_grpc

    admin = federation.admin()
    _unary(admin_pb2, "Admin", admin_pb2_grpc.AdminStub(admin._channel), method, data)
    admin.close()


def test_after_fuzzing_the_coordinator_still_runs_an_honest_round(federation) -> None:
    for method in ("GetUploadStatus", "UploadTable"):
        channel, stub = federation.node_stub("council")
        for i in range(30):
            junk = coordinator_pb2.UploadStatusRequest(round_id=f"r{i}\x00\x1b",
                                                       project_fingerprint="x" * 500)  # fmt: skip
            if method == "UploadTable":
                junk = coordinator_pb2.LocalTable(round_id="r" * 200, product_id="\u202e" * 50)
            rpc = getattr(stub, method)
            assert _status(lambda r=rpc, j=junk: r(j, timeout=2)) not in BROKEN
        channel.close()
    status = federation.run_round()
    assert status.state is RoundState.CLOSED, status.message
