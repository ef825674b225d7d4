"""The node agent: dials out to the coordinator and keeps the session going, reconnecting with
back-off.

The node never accepts inbound connections. Before it dials out it checks what it can on its own:
the project's fingerprint against the one its DPO pinned, its certificate against the
partnership's CA and its partner id, and the linkage secret. A node without a secret file agrees
the secret with its partners through the coordinator (:mod:`oda_fed.node.keys`) each time it
connects, before it says hello, so it takes up a rotated secret between sessions. What it does with
each instruction is in :mod:`oda_fed.node.tasks`, checked by :mod:`oda_fed.node.policy`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from oda_fed.audit.checkpoint import Signer
from oda_fed.config import NodeConfig, load_pinned_project
from oda_fed.durable import private_dir
from oda_fed.errors import AuthError, ConfigError, ProjectMismatchError, ProtocolError
from oda_fed.node.keys import KeysPending, NodeKeys
from oda_fed.node.session import run_session
from oda_fed.node.sources import layout_for
from oda_fed.node.state import NodeState
from oda_fed.pki import identity_from_cert, load_certificate, read_secret, verify_issued_by
from oda_fed.proto.v1 import coordinator_pb2_grpc, keys_pb2_grpc
from oda_fed.transport.channel import create_channel, describe_rpc_error
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.protocol import CONNECT_TIMEOUT

log = logging.getLogger(__name__)

#: Refusals a retry cannot fix: the node stops with the matching error.
_FATAL = {
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.FAILED_PRECONDITION: ProjectMismatchError,
    grpc.StatusCode.INVALID_ARGUMENT: ProtocolError,
    grpc.StatusCode.UNIMPLEMENTED: ProtocolError,
}
#: Back-off between reconnection attempts, in seconds: first and longest.
_FIRST_DELAY, _MAX_DELAY = 1.0, 30.0

T = TypeVar("T")


class NodeAgent:
    """A partner's node. Construct from a validated config; :meth:`run` until told to stop."""

    def __init__(self, config: NodeConfig, *, config_path: Path) -> None:
        loaded = load_pinned_project(
            config.project, pinned=config.project_fingerprint, pinned_in=config_path
        )
        project = loaded.project
        if config.partner not in project.partner_ids:
            raise ConfigError(
                f"{config_path}: partner '{config.partner}' is not a partner in project "
                f"'{project.name}' ({', '.join(project.partner_ids)})"
            )
        check_certificate(config)
        secret = None if config.secret_file is None else read_secret(config.secret_file)
        private_dir(config.workdir)  # it holds CLKs, the ref mapping and entity ids
        crossings = Crossings(
            config.audit_path,
            party=config.partner,
            project=loaded.fingerprint,
            signer=Signer.from_files(config.tls.cert, config.tls.key),
            ca=load_certificate(config.tls.ca, what="CA certificate"),
        )
        self.state = NodeState(
            config=config,
            loaded=loaded,
            layout=layout_for(project, config.partner, config.source),
            crossings=crossings,
        )
        crossings.observers.append(self.state.metrics.crossed)
        #: How this node agrees its secret with its partners; None when it has a secret file.
        self.keys = None if secret is not None else NodeKeys(config, loaded, crossings)
        held = (0, secret) if secret is not None else self.keys.held()  # type: ignore[union-attr]
        if held is not None:
            self.state.use_secret(held[1], version=held[0])

    def close(self) -> None:
        self.state.metrics.stop()
        self.state.crossings.close()

    def run(self, *, rounds: int | None = None, give_up_after: float | None = None) -> None:
        """Stay connected, reconnecting with back-off, until ``rounds`` rounds have ended.

        Raises an :class:`~oda_fed.errors.OdaFedError` for anything a retry cannot fix: a refused
        identity, project or secret, a failed TLS handshake, or bad input data.
        """
        endpoint = self.state.metrics.serve(self.state.config.metrics)
        if endpoint is not None:
            log.info(
                "metrics on http://%s:%d/metrics (unauthenticated: keep it on a monitoring network)",
                endpoint.host,
                endpoint.port,
                extra={"partner": self.state.partner, "metrics_port": endpoint.port},
            )
        while rounds is None or self.state.rounds_closed < rounds:

            def session(channel: grpc.Channel) -> None:
                self._take_up_secret(channel)
                stub = coordinator_pb2_grpc.CoordinatorStub(channel)
                run_session(self.state, stub, rounds=rounds)

            self._connected(session, give_up_after=give_up_after)

    def agree_secret(self, *, give_up_after: float | None = None) -> int:
        """Agree the linkage secret with the partners now, waiting for them; its key version."""
        self._connected(self._take_up_secret, give_up_after=give_up_after)
        return self.state.key_version

    def rotate_secret(self, *, give_up_after: float | None = None) -> int:
        """Make the next key version and publish it wrapped for every partner (the dealer only,
        between rounds); its number. The other nodes take it up when they next connect: the
        coordinator ends their sessions."""
        keys = self._agreeing()
        version = self._connected(
            lambda channel: keys.rotate(keys_pb2_grpc.KeysStub(channel)),
            give_up_after=give_up_after,
        )
        held = keys.held()
        assert held is not None and held[0] == version
        self.state.use_secret(held[1], version=version)
        return version

    def _agreeing(self) -> NodeKeys:
        if self.keys is None:
            raise ConfigError(
                f"this node uses the secret file {self.state.config.secret_file}; secrets are "
                "agreed and rotated through the coordinator only by nodes without secret_file"
            )
        return self.keys

    def _take_up_secret(self, channel: grpc.Channel) -> None:
        """Agree (or fetch) the latest key version before saying hello with it."""
        if self.keys is None:
            return
        version, secret = self.keys.agree(keys_pb2_grpc.KeysStub(channel))
        if (version, secret) != (self.state.key_version, self.state.secret):
            self.state.use_secret(secret, version=version)

    def _connected(self, action: Callable[[grpc.Channel], T], *, give_up_after: float | None) -> T:
        """``action`` over a channel to the coordinator, retried with back-off while the
        coordinator is unreachable or the secret cannot be agreed yet."""
        config = self.state.config
        address = config.coordinator.address
        delay, down_since = _FIRST_DELAY, None
        while True:
            channel = create_channel(
                address=address, tls=config.tls, server_name=config.coordinator.server_name
            )
            try:
                # Act (and log) only once a connection exists, so an unreachable coordinator
                # leaves no one-sided entries in this node's audit log.
                grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
                return action(channel)
            except grpc.FutureTimeoutError:
                self.state.metrics.error("unreachable")
                problem = (
                    f"{address}: no connection within {CONNECT_TIMEOUT:.0f}s (is the coordinator "
                    "running, and was its certificate issued by the partnership CA?)"
                )
            except KeysPending as exc:
                self.state.metrics.error("keys_pending")
                problem = str(exc)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                self.state.metrics.error(f"rpc_{code.name.lower() if code else 'error'}")
                _raise_if_fatal(exc, address)
                problem = describe_rpc_error(exc, address=address)
            finally:
                channel.close()
            down_since = _wait_to_retry(problem, delay, down_since, give_up_after)
            delay = min(delay * 2, _MAX_DELAY)


def check_certificate(config: NodeConfig) -> None:
    """Catch a wrong certificate here, with a clear message, before the coordinator's TLS
    handshake refuses it with nothing more than a closed socket."""
    tls = config.tls
    cert = load_certificate(tls.cert)
    verify_issued_by(load_certificate(tls.ca, what="CA certificate"), cert)
    ident = identity_from_cert(cert)
    if ident.role != "node" or ident.name != config.partner:
        raise AuthError(
            f"{tls.cert} is a {ident.role} certificate for '{ident.name}', but this node is "
            f"partner '{config.partner}'; use the node certificate issued to '{config.partner}'"
        )


def _raise_if_fatal(exc: grpc.RpcError, address: str) -> None:
    details = (exc.details() or "") if hasattr(exc, "details") else ""
    # Only a call that never reached the coordinator failed in the handshake; a refusal that
    # names a certificate (a revoked one, say) is the coordinator's answer, reported as such.
    unreached = exc.code() is grpc.StatusCode.UNAVAILABLE
    if unreached and ("handshake" in details.lower() or "certificate" in details.lower()):
        message = describe_rpc_error(exc, address=address)
        raise AuthError(f"TLS handshake with the coordinator failed: {message}") from None
    fatal = _FATAL.get(exc.code())
    if fatal is not None:
        raise fatal(f"the coordinator refused this node: {details}") from None


def _wait_to_retry(
    problem: str, delay: float, down_since: float | None, give_up_after: float | None
) -> float:
    now = time.monotonic()
    down_since = down_since or now
    if give_up_after is not None and now - down_since > give_up_after:
        raise ProtocolError(f"gave up after {give_up_after:.0f}s: {problem}")
    log.warning("%s; retrying in %.0fs", problem, delay)
    time.sleep(delay)
    return down_since
