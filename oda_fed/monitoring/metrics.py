"""Prometheus metrics of the coordinator and the node, served on their own plain-HTTP port.

Each process (each server, in tests) has its own :class:`~prometheus_client.CollectorRegistry`,
never the library's global one. Labels come from bounded sets only: gRPC method names and status
codes, audit kinds, round states, and partner ids (public in the signed project). No label or
value carries a record id, a value from an extract, a CLK, a token, a file name or the secret.

Counts come from what the services record already: every audit log entry
(:class:`~oda_fed.transport.crossing.Crossings` tells its observers), every refusal, every
round's state in the store; the gRPC interceptor here adds calls and their latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from oda_fed.errors import ConfigError
from oda_fed.transport.auth import ROLES_BY_METHOD
from oda_fed.transport.crossing import Crossed
from oda_fed.transport.protocol import AuditKind, RoundState

#: Which upload an audit kind is, for the upload counters.
UPLOADS: Mapping[AuditKind, str] = {
    AuditKind.CLK_CHUNK: "clks",
    AuditKind.ATTRIBUTE_CHUNK: "attribute",
    AuditKind.LOCAL_TABLE: "table",
}
#: What the coordinator counts of the uploads it receives, by partner and upload.
_UPLOADED = {
    "chunks": "Upload messages received from nodes (CLK and attribute chunks, local tables), by "
    "partner and upload.",
    "bytes": "Bytes of the upload messages received from nodes, by partner and upload.",
    "records": "Records (CLKs, attribute values, table cells) received from nodes, by partner "
    "and upload.",
}
#: The gauges of the last round's matching, in the order :meth:`CoordinatorMetrics.linked`
#: takes them.
_LAST_LINKAGE = {
    "duration_seconds": "How long the last round's matching took.",
    "candidate_pairs": "Candidate pairs of the last round's matching (above the similarity "
    "threshold).",
    "entities": "Entities the last round's matching made, linked or not.",
    "linked_entities": "Entities of the last round's matching holding records of more than one "
    "partner.",
}
#: Seconds: from a health check to a long upload stream.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); port 0 binds any free one.

    Examples
    --------
    >>> parse_address("127.0.0.1:9464")
    ('127.0.0.1', 9464)
    >>> parse_address("[::1]:9464")
    ('::1', 9464)
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics address '{text}' is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)


class Endpoint:
    """``/metrics`` of one registry over plain HTTP, on a thread of its own, until :meth:`stop`.

    Unauthenticated, as Prometheus endpoints are: it belongs on localhost or the partner's own
    monitoring network.
    """

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        host, port = parse_address(address)
        try:
            self._server: WSGIServer
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {address}: {exc.strerror}") from None
        self.host = host
        self.port: int = self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Metrics:
    """A registry with the metrics both services have."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.audit_entries = Counter(
            "oda_fed_audit_entries",
            "Entries written to this party's audit log, by audit kind.",
            ["kind"],
            registry=self.registry,
        )
        self._endpoint: Endpoint | None = None

    def serve(self, address: str | None) -> Endpoint | None:
        """Serve ``/metrics`` on ``address`` (``HOST:PORT``); nothing when it is None."""
        if address is None or self._endpoint is not None:
            return self._endpoint
        self._endpoint = Endpoint(self.registry, address)
        return self._endpoint

    def stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()
            self._endpoint = None

    def crossed(self, entry: Crossed) -> None:
        """An audit log entry was written (a :class:`Crossings` observer)."""
        self.audit_entries.labels(kind=entry.kind.value).inc()


class CoordinatorMetrics(_Metrics):
    """The coordinator's metrics."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Counter(
            "oda_fed_grpc_requests",
            "gRPC calls the coordinator finished, by service, method and status code.",
            ["service", "method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "oda_fed_grpc_request_duration_seconds",
            "How long the coordinator's gRPC calls took, streams included, by service and method.",
            ["service", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.uploads = {
            key: Counter(f"oda_fed_upload_{key}", text, ["partner", "upload"], registry=r)
            for key, text in _UPLOADED.items()
        }
        self.refusals = Counter(
            "oda_fed_refusals",
            "Calls refused, by the audit kind they were logged under ('none': not logged, such "
            "as a busy coordinator) and the status code the caller got.",
            ["kind", "code"],
            registry=r,
        )
        self.last_linkage = {
            key: Gauge(f"oda_fed_last_linkage_{key}", text, registry=r)
            for key, text in _LAST_LINKAGE.items()
        }
        self.linkages = Counter(
            "oda_fed_linkages", "Rounds matched since the coordinator started.", registry=r
        )
        self.connected = Gauge(
            "oda_fed_nodes_connected", "Nodes holding a live session now.", registry=r
        )

    def crossed(self, entry: Crossed) -> None:
        super().crossed(entry)
        upload = UPLOADS.get(entry.kind)
        if upload is not None and entry.recipient != entry.sender and not entry.discarded:
            counts = {"chunks": 1, "bytes": entry.payload_bytes, "records": entry.records}
            for key, counter in self.uploads.items():
                counter.labels(partner=entry.sender, upload=upload).inc(counts[key])

    def refused(self, *, kind: AuditKind | None, code: str) -> None:
        self.refusals.labels(kind="none" if kind is None else kind.value, code=code).inc()

    def linked(self, *, seconds: float, candidates: int, entities: int, linked: int) -> None:
        """A round was matched: how long it took and what it found, in counts."""
        values = (seconds, candidates, entities, linked)
        for gauge, value in zip(self.last_linkage.values(), values, strict=True):
            gauge.set(value)
        self.linkages.inc()

    def watch(
        self, *, rounds: Callable[[], Mapping[RoundState, int]], connected: Callable[[], int]
    ) -> None:
        """Read the rounds by state and the connected nodes when scraped, from the store and
        the sessions: never a second copy to keep in step."""
        self.registry.register(_RoundsCollector(rounds))
        self.connected.set_function(connected)

    def interceptor(self) -> grpc.ServerInterceptor:
        """A server interceptor that counts and times every call (outermost, so that calls the
        authorisation refuses are counted too)."""
        return _CallMetrics(self)


class _RoundsCollector(Collector):
    def __init__(self, rounds: Callable[[], Mapping[RoundState, int]]) -> None:
        self._rounds = rounds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "oda_fed_rounds", "Rounds in the coordinator's store, by state.", labels=["state"]
        )
        counts = self._rounds()
        for state in RoundState:
            family.add_metric([state.value], counts.get(state, 0))
        yield family


def _method_labels(method: object) -> tuple[str, str]:
    """(service, method) of a call; 'unknown' for any method the coordinator does not offer, so
    that a caller cannot make up labels."""
    if isinstance(method, str) and method in ROLES_BY_METHOD:
        service, _, name = method.strip("/").partition("/")
        return service.rpartition(".")[2], name
    return "unknown", "unknown"


class _CallMetrics(grpc.ServerInterceptor):
    def __init__(self, metrics: CoordinatorMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _method_labels(handler_call_details.method)
        requests, latency = self._metrics.requests, self._metrics.latency.labels(service, method)

        def finish(started: float, context: grpc.ServicerContext, failed: bool) -> None:
            latency.observe(time.perf_counter() - started)
            code = context.code() if hasattr(context, "code") else None
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            requests.labels(service, method, name).inc()

        return _timed(handler, finish)


def _timed(handler: grpc.RpcMethodHandler, finish: Callable[..., None]) -> grpc.RpcMethodHandler:
    """``handler``, with ``finish(started, context, failed)`` called as each call ends."""
    ser = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }

    def unary(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                answer = fn(request, context)
                failed = False
                return answer
            finally:
                finish(started, context, failed)

        return call

    def streaming(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started, failed = time.perf_counter(), True
            try:
                yield from fn(request, context)
                failed = False
            except GeneratorExit:  # the client went away
                context.set_code(grpc.StatusCode.CANCELLED)
                failed = False
                raise
            finally:
                finish(started, context, failed)

        return call

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **ser)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **ser)


class NodeMetrics(_Metrics):
    """A node's metrics."""

    def __init__(self) -> None:
        super().__init__()
        # When each round under way began here (by round id; forgotten once it ends).
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        r = self.registry
        self.encoded = Counter(
            "oda_fed_node_records_encoded",
            "Records of the partner's extract encoded into CLKs.",
            registry=r,
        )
        self.chunks = Counter(
            "oda_fed_node_upload_chunks",
            "Upload messages sent to the coordinator (CLK and attribute chunks, local tables), "
            "by upload.",
            ["upload"],
            registry=r,
        )
        self.bytes = Counter(
            "oda_fed_node_upload_bytes",
            "Bytes of the upload messages sent to the coordinator, by upload.",
            ["upload"],
            registry=r,
        )
        self.round_seconds = Gauge(
            "oda_fed_node_last_round_duration_seconds",
            "From the last round's first instruction to this node until it heard the round end.",
            registry=r,
        )
        self.rounds = Counter(
            "oda_fed_node_rounds_closed", "Rounds this node heard end.", registry=r
        )
        self.errors = Counter(
            "oda_fed_node_errors",
            "Problems the node met, by kind: an error class of oda-fed, 'refused_instruction', "
            "'round_moved_on', 'unreachable' (the coordinator could not be reached), "
            "'keys_pending' or 'rpc_<status code>' (a call the coordinator failed).",
            ["kind"],
            registry=r,
        )

    def crossed(self, entry: Crossed) -> None:
        super().crossed(entry)
        upload = UPLOADS.get(entry.kind)
        if upload is not None and entry.sender != entry.recipient and entry.sent_by_me:
            self.chunks.labels(upload=upload).inc()
            self.bytes.labels(upload=upload).inc(entry.payload_bytes)

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def round_seen(self, round_id: str) -> None:
        """An instruction of ``round_id`` arrived (its first starts the round's clock)."""
        with self._lock:
            self._started.setdefault(round_id, time.monotonic())

    def round_closed(self, round_id: str) -> None:
        with self._lock:
            started = self._started.pop(round_id, None)
        self.rounds.inc()
        if started is not None:
            self.round_seconds.set(time.monotonic() - started)
