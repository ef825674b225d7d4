"""Size limits on everything a node sends, a receive limit derived from the project, and the
coordinator's health for the project's own. Each attack is played by a partner's (or a
stranger's) certificate against a live coordinator over mutual TLS."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oda_fed.audit import read_entries
from oda_fed.config import MAX_DIMENSIONS, TlsFiles, load_coordinator_config, load_project
from oda_fed.coordinator.server import receive_limit
from oda_fed.coordinator.store import Store
from oda_fed.errors import ProtocolError
from oda_fed.pki import issue
from oda_fed.proto.v1 import coordinator_pb2 as wire
from oda_fed.proto.v1 import keys_pb2 as keys
from oda_fed.proto.v1 import keys_pb2_grpc
from oda_fed.transport import serde
from oda_fed.transport.channel import create_channel
from oda_fed.transport.protocol import (
    CHUNK_RECORDS,
    FIELD_BOUNDS,
    MAX_NAME_CHARS,
    MAX_TABLE_CELLS,
    MAX_TABLE_DIMENSIONS,
    MAX_VALUE_CHARS,
    largest_node_message,
)

_SIZED = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)


def _node_messages() -> list[Descriptor]:
    files = (wire.DESCRIPTOR, keys.DESCRIPTOR)
    found = [f.message_types_by_name[n] for f in files for n in f.message_types_by_name]
    return [d for d in found if d.full_name in serde.NODE_MESSAGES]


def _bounded(d: Descriptor) -> list[FieldDescriptor]:
    return [f for f in d.fields if f.type in _SIZED or f.is_repeated]


def test_every_field_a_node_sends_has_a_bound_chosen_for_it() -> None:
    # The requests of both services a node calls, and everything inside them.
    assert {"Hello", "InstructionResult", "Witness", "ClkChunk", "TokenColumn", "LocalCell",
            "WrappedSecrets", "WrappedSecret", "AgreementKey"} <= {
        d.name for d in _node_messages()}  # fmt: skip
    wanted = {f"{d.name}.{f.name}": f for d in _node_messages() for f in _bounded(d)}
    missing = sorted(set(wanted) - set(FIELD_BOUNDS))
    assert not missing, f"choose a bound in protocol.FIELD_BOUNDS for {missing}"
    assert not set(FIELD_BOUNDS) - set(wanted), "a bound for a field no node sends"
    for name, field in wanted.items():
        bound = FIELD_BOUNDS[name]
        assert (bound.size > 0) == (field.type in _SIZED), name
        assert (bound.items > 1) == field.is_repeated, name
    assert MAX_TABLE_DIMENSIONS == MAX_DIMENSIONS


@dataclass(frozen=True)
class Oversized:
    """One field of a node's message over its bound, in the message a node's call carries."""

    message: Message
    field: str  # as the refusal names it
    limit: int


def _oversized(cls: type[Message], at: str = "") -> Iterator[tuple[Message, str, int]]:
    """``cls`` messages, each with one field (or a field of a field) over its bound."""
    at = at or cls.DESCRIPTOR.name
    for field in cls.DESCRIPTOR.fields:
        name, bound = f"{at}.{field.name}", serde.bound(field)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = field.message_type._concrete_class
            if field.is_repeated:
                yield cls(**{field.name: [inner()] * (bound.items + 1)}), name, bound.items
            shown = f"{name}[0]" if field.is_repeated else name
            for sub, where, limit in _oversized(inner, shown):
                yield cls(**{field.name: [sub] if field.is_repeated else sub}), where, limit
            continue
        if field.type not in _SIZED:
            continue
        long = ("Z" if field.type == FieldDescriptor.TYPE_STRING else b"Z") * (bound.size + 1)
        if field.is_repeated:
            yield cls(**{field.name: [long[:1]] * (bound.items + 1)}), name, bound.items
            yield cls(**{field.name: [long]}), f"{name}[0]", bound.size
        else:
            yield cls(**{field.name: long}), name, bound.size


def _cases(*types: type[Message]) -> list[Oversized]:
    return [Oversized(m, f, n) for t in types for m, f, n in _oversized(t)]


def test_every_field_is_refused_one_past_its_bound_and_taken_at_it() -> None:
    cases = _cases(*(d._concrete_class for d in _node_messages()))
    assert len(cases) >= len(FIELD_BOUNDS)
    for case in cases:
        with pytest.raises(ProtocolError) as info:
            serde.check_bounds(case.message)
        assert f"{case.field} " in str(info.value) and f"at most {case.limit} " in str(info.value)
    # At its bound, every field is taken: a CLK chunk of the widest CLKs, a full table.
    full = wire.LocalTable(product_id="p" * MAX_NAME_CHARS, cells=[
        wire.LocalCell(coordinates=["\U0001f600" * MAX_VALUE_CHARS] * MAX_TABLE_DIMENSIONS)
    ] * MAX_TABLE_CELLS)  # fmt: skip
    serde.check_bounds(full)
    serde.check_bounds(wire.ClkChunk(clks=bytes(FIELD_BOUNDS["ClkChunk.clks"].size)))


def _calls(federation, council) -> dict[str, object]:
    """How a council sends each message: over its held session, or opening Connect."""
    channel, _ = federation.node_stub("council")
    relay = keys_pb2_grpc.KeysStub(channel)

    def connect(hello):
        return list(council.Connect(iter([wire.NodeEvent(hello=hello)]), timeout=10))

    return {
        "Hello": connect,
        "ClkChunk": lambda m: council.UploadClks(iter([m]), timeout=10),
        "AttributeChunk": lambda m: council.UploadAttribute(iter([m]), timeout=10),
        "UploadStatusRequest": lambda m: council.GetUploadStatus(m, timeout=10),
        "FetchEntitiesRequest": lambda m: list(council.FetchEntities(m, timeout=10)),
        "LocalTable": lambda m: council.UploadTable(m, timeout=10),
        "AgreementKey": lambda m: relay.PublishKey(m, timeout=10),
        "KeysRequest": lambda m: relay.GetKeys(m, timeout=10),
        "WrappedSecrets": lambda m: relay.PublishSecret(m, timeout=10),
        "SecretRequest": lambda m: relay.FetchSecret(m, timeout=10),
        "close": channel.close,
    }


@pytest.mark.grpc
def test_an_oversized_value_in_any_field_is_refused_at_once_and_nothing_of_it_kept(
    federation,
) -> None:
    # Attack: a partner puts a value far beyond any honest one into each field of each message
    # it may send (a 10 kB software version, 10,001 token columns, a 101-character cell label).
    # Before, only the overall message cap (32 MiB) held most of them.
    config = load_coordinator_config(federation.coordinator_config)
    project = load_project(federation.workdir / "project.toml").project
    limit = receive_limit(config, project)
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    round_id = federation.start_round()
    logged_before = log.stat().st_size
    requests = [wire.Hello, wire.ClkChunk, wire.AttributeChunk, wire.UploadStatusRequest,
                wire.FetchEntitiesRequest, wire.LocalTable, keys.AgreementKey, keys.KeysRequest,
                keys.WrappedSecrets, keys.SecretRequest]  # fmt: skip
    cases = _cases(*requests)
    too_big = 0
    with federation.session("council") as council:
        calls = _calls(federation, council)
        for case in cases:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                calls[case.message.DESCRIPTOR.name](case.message)
            assert time.monotonic() - started < 5, case.field
            if case.message.ByteSize() > limit:  # gRPC refused it before reading it
                too_big += 1
                assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, case.field
                continue
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, case.field
            assert f"{case.field} " in info.value.details(), info.value.details()
            assert f"at most {case.limit} are accepted" in info.value.details()
        calls["close"]()
    assert too_big == 1  # ClkChunk.clks: its bound is for the widest CLKs of any project
    federation.stop_coordinator()  # writes the refusals still being counted
    # The audit log holds a few counted refusals, and none of the values sent.
    assert log.stat().st_size - logged_before < 20_000
    assert b"ZZZZZZZZ" not in log.read_bytes()
    refused = [e for e in read_entries(log) if e.kind.startswith("refused:")]
    assert sum(e.detail.get("repeats", 1) for e in refused) >= len(cases) - too_big
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    assert store.uploads.state(round_id=round_id, partner="council") is None
    store.close()


@pytest.mark.grpc
def test_an_oversized_result_ends_the_session_and_is_not_recorded(federation) -> None:
    # Attack: a 1 kB-plus error or a 64 KiB-plus checkpoint in an answer on the control
    # stream. The result is never taken (nor hashed into the audit log); the stream ends.
    from oda_fed.pki import read_secret
    from oda_fed.pki.secret import key_check

    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    secret = read_secret(federation.workdir / "nodes" / "council" / "linkage.secret")
    check = key_check(secret, fingerprint=federation.fingerprint, version=0)
    hello = wire.Hello(partner_id="council", project_fingerprint=federation.fingerprint,
                       key_check=check)  # fmt: skip
    cases = _cases(wire.InstructionResult)
    assert {c.field for c in cases} >= {
        "InstructionResult.error",
        "InstructionResult.witness.checkpoint",
    }
    # The last answer is within its bounds: it is taken, so the others were not for lack of a
    # session.
    within = wire.InstructionResult(instruction_id="none-such", error="Z" * 7)
    for result in [*(c.message for c in cases), within]:
        channel, stub = federation.node_stub("council")
        events = [wire.NodeEvent(hello=hello), wire.NodeEvent(result=result)]
        with contextlib.suppress(grpc.RpcError):  # ends at once, or when the session is ended
            for _ in stub.Connect(iter(events), timeout=5):
                pass
        channel.close()
    federation.stop_coordinator()
    taken = [e for e in read_entries(log) if e.kind == "instruction_result"]
    assert [e.payload_sha256 for e in taken] == [hashlib.sha256(serde.payload(within)).hexdigest()]
    assert b"ZZZZZZZZ" not in log.read_bytes()
    # Each refusal is audited (counted per interval), naming the field over its bound.
    refused = [e for e in read_entries(log) if e.kind == "refused:instruction"]
    assert refused and all(e.sender == "council" for e in refused)
    assert sum(int(e.detail.get("repeats", 1)) for e in refused) == len(cases)
    assert "InstructionResult." in refused[0].detail["reason"]


def _largest_honest(*, clk_bits: int, tokens: int, record_keys: bool, dimensions: int):
    """The largest messages an honest node of such a project sends, every value at its longest."""
    name = "n" * MAX_NAME_CHARS
    clks = wire.ClkChunk(
        round_id=name, project_fingerprint=name, chunk_index=2**32 - 1, total_chunks=2**32 - 1,
        first_ref=2**64 - 1, records=CHUNK_RECORDS, total_records=2**64 - 1, clk_bits=clk_bits,
        clks=b"\xff" * (CHUNK_RECORDS * clk_bits // 8),
        tokens=[wire.TokenColumn(field=name, values=[b"\xff" * 32] * CHUNK_RECORDS)] * tokens,
        record_keys=[b"\xff" * 32] * CHUNK_RECORDS if record_keys else [],
    )  # fmt: skip
    widest = "\U0001f600" * MAX_VALUE_CHARS  # four bytes a character
    values = wire.AttributeChunk(round_id=name, project_fingerprint=name, product_id=name,
                                 attribute=name, values=[widest] * CHUNK_RECORDS)  # fmt: skip
    table = wire.LocalTable(round_id=name, project_fingerprint=name, product_id=name, cells=[
        wire.LocalCell(coordinates=[widest] * dimensions, count=2**64 - 1)] * MAX_TABLE_CELLS)  # fmt: skip
    return clks, values, table


@pytest.mark.parametrize(
    ("clk_bits", "tokens", "record_keys", "dimensions"),
    [(1024, 0, False, 0), (2048, 3, True, 0), (16384, 8, True, 3), (128, 1, False, 1)],
)
def test_the_receive_limit_holds_every_honest_message_of_the_project(
    clk_bits: int, tokens: int, record_keys: bool, dimensions: int
) -> None:
    limit = largest_node_message(clk_bits=clk_bits, token_columns=tokens, record_keys=record_keys,
                                 attributes=True, table_dimensions=dimensions)  # fmt: skip
    clks, values, table = _largest_honest(
        clk_bits=clk_bits, tokens=tokens, record_keys=record_keys, dimensions=dimensions
    )
    assert clks.ByteSize() <= limit and values.ByteSize() <= limit
    if dimensions:
        assert table.ByteSize() <= limit
    # ... and little more than the largest of them (ids at their longest, and framing).
    honest = max(clks.ByteSize(), values.ByteSize(), table.ByteSize() if dimensions else 0)
    assert limit <= max(honest, 1 << 20) + (128 << 10)


@pytest.mark.grpc
def test_a_message_beyond_the_projects_needs_is_refused_before_it_is_read(federation) -> None:
    # Attack: 32 MiB messages on many uploads at once (the fixed limit before). Now gRPC reads
    # no message larger than the project's largest upload.
    config = load_coordinator_config(federation.coordinator_config)
    project = load_project(federation.workdir / "project.toml").project
    limit = receive_limit(config, project)
    assert limit < 8 << 20  # CLKs of 1024 bits and attribute values: a few MiB, not 32
    # A limit the configuration sets is kept as it is.
    assert receive_limit(config.model_copy(update={"max_message_mb": 48}), project) == 48 << 20
    round_id = federation.start_round()
    bits = project.linkage.wire_bits
    chunk = wire.ClkChunk(round_id=round_id, project_fingerprint=federation.fingerprint,
                          total_chunks=1, records=1, total_records=1, clk_bits=bits,
                          clks=bytes(limit))  # fmt: skip
    with federation.session("council") as council, pytest.raises(grpc.RpcError) as info:
        council.UploadClks(iter([chunk]), timeout=10)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.grpc
def test_only_the_projects_own_may_ask_for_the_coordinators_health(federation, tmp_path) -> None:
    # Attack: any certificate of the partnership CA (a node of another project) watched the
    # coordinator's health, each watch holding a server thread.
    def check(tls: TlsFiles) -> health_pb2.HealthCheckResponse:
        channel = create_channel(address=f"127.0.0.1:{federation.port}", tls=tls,
                                 server_name="localhost")  # fmt: skip
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        finally:
            channel.close()

    ca = federation.workdir / "ca"
    cert, key = issue(ca_dir=ca, name="fire", role="node", out_dir=tmp_path)
    with pytest.raises(grpc.RpcError) as info:
        check(TlsFiles(ca=ca / "ca.crt", cert=cert, key=key))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'fire' is no partner of this project" in info.value.details()
    police = federation.workdir / "nodes" / "police" / "tls"
    served = check(
        TlsFiles(ca=ca / "ca.crt", cert=police / "police.crt", key=police / "police.key")
    )
    assert served.status == health_pb2.HealthCheckResponse.SERVING
    operator = load_coordinator_config(federation.coordinator_config).operator
    assert operator is not None
    served = check(TlsFiles(ca=ca / "ca.crt", cert=operator.cert, key=operator.key))
    assert served.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.grpc
def test_a_call_to_an_unknown_method_is_recorded_under_the_callers_name(federation) -> None:
    channel, _ = federation.node_stub("police")
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/oda_fed.proto.v1.Coordinator/" + "X" * 5000)(b"", timeout=5)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    channel.close()
    federation.stop_coordinator()
    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    refused = [e for e in read_entries(log) if e.kind == "refused:call"]
    assert [e.sender for e in refused] == ["police"]
    assert len(refused[0].detail["method"]) <= 200
