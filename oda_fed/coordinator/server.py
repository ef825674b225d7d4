"""Run the coordinator: load and pin the project, open the store and audit log, serve over mTLS.

Shutdown runs in this order: health reports NOT_SERVING, the server stops with a grace period, then
the lifecycle's worker stops, the audit log is flushed and fsynced and the store closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from oda_fed.audit.checkpoint import Signer
from oda_fed.config import LOCAL, CoordinatorConfig, Project, load_pinned_project
from oda_fed.coordinator.lifecycle import Lifecycle
from oda_fed.coordinator.postgres import database_url
from oda_fed.coordinator.recovery import open_store
from oda_fed.coordinator.servicer import AdminServicer, CoordinatorServicer, KeysServicer
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.durable import private_dir, write_atomic
from oda_fed.encoding.evidence import linkage_layout
from oda_fed.linkage import settings_for
from oda_fed.matching.executor import Executor, open_executor
from oda_fed.monitoring.metrics import CoordinatorMetrics
from oda_fed.pki.register import RevocationList, serial_hex, watch
from oda_fed.pki.trust import load_certificate
from oda_fed.products.boundaries import check_boundaries
from oda_fed.proto.v1 import admin_pb2_grpc, coordinator_pb2_grpc, keys_pb2_grpc
from oda_fed.transport.auth import CallLimits
from oda_fed.transport.channel import create_server
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import (
    CALLS_PER_CALLER,
    COORDINATOR,
    AuditKind,
    cut,
    largest_node_message,
)

log = logging.getLogger(__name__)

#: The largest message it sends, in MiB, unless the configuration says (a product's files).
SEND_MB = 32
SERVICES = ("oda_fed.proto.v1.Coordinator", "oda_fed.proto.v1.Admin", "oda_fed.proto.v1.Keys")


def serve(
    config: CoordinatorConfig,
    *,
    config_path: Path,
    port_file: Path | None = None,
    stop_event: threading.Event | None = None,
    grace: float = 5.0,
    accept_empty_state: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop_event``), then shut down gracefully.

    ``accept_empty_state`` lets it start with an empty database although its audit log shows
    earlier rounds (:func:`~oda_fed.coordinator.recovery.open_store`).
    """
    loaded = load_pinned_project(
        config.project, pinned=config.project_fingerprint, pinned_in=config_path
    )
    # Every map must be drawable before any round starts, not found wanting half-way through one.
    for product_id, drawn_on in check_boundaries(loaded.project, config.boundaries).items():
        log.info(
            "product '%s' is drawn on %s (%d areas, %s)",
            product_id,
            drawn_on.path,
            len(drawn_on.shapes),
            drawn_on.fingerprint,
        )
    # Products and reports hold counts (the disclosure reports true ones) before and after
    # release: the operator's alone, whatever the umask.
    private_dir(config.output_dir)
    metrics = CoordinatorMetrics()
    crossings = Crossings(
        config.audit_path,
        party=COORDINATOR,
        project=loaded.fingerprint,
        signer=Signer.from_files(config.tls.cert, config.tls.key),
        ca=load_certificate(config.tls.ca, what="CA certificate"),
    )
    crossings.observers.append(metrics.crossed)
    try:
        database = None
        if config.database:
            database = database_url(config.database, password_file=config.database_password_file)
            log.info(
                "coordinator state on PostgreSQL %s", database.render_as_string(hide_password=True)
            )
        store = open_store(
            config.state_dir / "coordinator.sqlite",
            audit_path=config.audit_path,
            crossings=crossings,
            accept_empty_state=accept_empty_state,
            database=database,
        )
    except BaseException:
        crossings.close()
        raise
    state = CoordinatorState(
        loaded=loaded,
        settings=settings_for(loaded.project.linkage),
        store=store,
        crossings=crossings,
        output_dir=config.output_dir,
        state_dir=config.state_dir,
        boundaries=dict(config.boundaries),
        metrics=metrics,
        executor=_executor(config),
    )
    state.lifecycle = Lifecycle(state)
    metrics.watch(
        rounds=store.rounds.count_by_state, connected=lambda: len(state.sessions.connected())
    )

    def on_refused(who: str | None, method: str, reason: str, code: grpc.StatusCode) -> None:
        detail = {"method": cut(method), "reason": cut(reason)}
        state.refusals.record(who=who, kind=AuditKind.REFUSED_CALL, round_id=None, detail=detail)
        metrics.refused(kind=AuditKind.REFUSED_CALL, code=code.name)

    stop = stop_event or threading.Event()
    revocations = _revocations(config, state, stop)
    if revocations is not None:
        state.revoked = lambda serial: revocations.revoked(int(serial, 16))
    # Each partner and operator may hold a few calls at once, and there are threads for all.
    limits = CallLimits(
        partners=loaded.project.partner_ids, per_caller=CALLS_PER_CALLER, strangers=2
    )
    server, port = create_server(
        address=config.listen,
        tls=config.tls,
        max_workers=limits.workers,
        max_message_mb=config.max_message_mb or SEND_MB,
        max_receive_bytes=receive_limit(config, loaded.project),
        on_refused=on_refused,
        limits=limits,
        revoked=None if revocations is None else revocations.revoked,
        partners=loaded.project.partner_ids,
        interceptors=[metrics.interceptor()],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(state), server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(state), server)
    keys_pb2_grpc.add_KeysServicer_to_server(KeysServicer(state), server)
    server.start()
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "coordinator for project '%s' (%s) listening on port %d",
        loaded.project.name,
        loaded.fingerprint,
        port,
        extra={"project": loaded.fingerprint, "port": port},
    )
    try:
        endpoint = metrics.serve(config.metrics)
    except BaseException:
        server.stop(0)
        state.lifecycle.stop()
        state.refusals.close()
        state.crossings.close()
        state.store.close()
        raise
    if endpoint is not None:
        log.info(
            "metrics on http://%s:%d/metrics (unauthenticated: keep it on a monitoring network)",
            endpoint.host,
            endpoint.port,
            extra={"metrics_port": endpoint.port},
        )
    # Handlers first: whoever reads the port file may stop the coordinator at once.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if revocations is not None:
            signal.signal(signal.SIGHUP, lambda *_: revocations.refresh(force=True))
    if port_file is not None:
        write_atomic(port_file, lambda tmp: tmp.write_text(f"{port}\n"))
    state.lifecycle.start()
    try:
        stop.wait()
    finally:
        log.info("coordinator shutting down")
        health_servicer.enter_graceful_shutdown()
        state.sessions.shutdown()
        server.stop(grace).wait()
        metrics.stop()
        state.lifecycle.stop()
        state.refusals.close()
        state.crossings.close()
        state.store.close()


def _executor(config: CoordinatorConfig) -> Callable[[], Executor]:
    """Opens, for each round, where it is matched: here, or the ``dask_scheduler``'s cluster
    (over TLS with the coordinator's certificates for a ``tls://`` one)."""
    if config.dask_scheduler is None:
        return Executor
    tls = config.tls
    return partial(
        open_executor,
        config.dask_scheduler,
        shared_dir=config.dask_shared_dir or config.state_dir / "dask",
        tls=(tls.ca, tls.cert, tls.key) if config.dask_scheduler.startswith("tls://") else None,
    )


def receive_limit(config: CoordinatorConfig, project: Project) -> int:
    """The largest message the coordinator reads: ``max_message_mb`` when the configuration
    sets it, else what the project's nodes need (:func:`largest_node_message`)."""
    if config.max_message_mb is not None:
        return config.max_message_mb << 20
    linkage = project.linkage
    tables = [len(p.dimensions) for p in project.products if p.kind == LOCAL]
    limit = largest_node_message(
        clk_bits=linkage.wire_bits,
        token_columns=sum(f.keyed_token for f in linkage.fields),
        record_keys=linkage.stable_entity_ids,
        attributes=bool(project.attributes),
        table_dimensions=max(tables, default=0),
        evidence=tuple(width for _, width in linkage_layout(linkage)),
    )
    log.info("reading messages of at most %.1f MiB (the project's largest upload)", limit / 2**20)
    return limit


def _revocations(
    config: CoordinatorConfig, state: CoordinatorState, stop: threading.Event
) -> RevocationList | None:
    """The CA's revocation list the configuration names, if any, watched so that a live session
    of a certificate revoked meanwhile ends at once (its node's next call is refused)."""
    if config.revocation_list is None:
        log.warning(
            "coordinator.toml names no revocation_list: a certificate the CA revokes is still "
            "accepted here"
        )
        return None
    revocations = RevocationList(
        config.revocation_list, ca=load_certificate(config.tls.ca, what="CA certificate")
    )
    log.info("%d revoked certificate(s) in %s", len(revocations.serials), config.revocation_list)

    def on_revoked(serials: frozenset[int]) -> None:
        for partner in state.sessions.end_revoked(frozenset(serial_hex(s) for s in serials)):
            log.warning("ended the session of %s: its certificate was revoked", partner)

    watch(revocations, on_revoked, stop=stop)
    return revocations
