"""The operator's client for their own coordinator: start a round, follow it, release, cancel."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from oda_fed.config import CoordinatorConfig, TlsFiles
from oda_fed.errors import ConfigError, OdaFedError
from oda_fed.proto.v1 import admin_pb2_grpc
from oda_fed.transport import serde
from oda_fed.transport.channel import create_channel, describe_rpc_error
from oda_fed.transport.messages import RoundStatus
from oda_fed.transport.protocol import ADMIN_TIMEOUT, RoundState

__all__ = ["AdminClient", "RoundStatus"]


class AdminClient:
    """Talks to the coordinator's Admin service with the operator certificate.

    Examples
    --------
    >>> client = AdminClient(load_coordinator_config(Path("coordinator.toml")))  # doctest: +SKIP
    >>> status = client.start_round()  # doctest: +SKIP
    >>> client.wait(status.round_id, timeout=3600).state  # doctest: +SKIP
    <RoundState.AWAITING_RELEASE: 'awaiting_release'>
    """

    def __init__(self, config: CoordinatorConfig, *, address: str | None = None) -> None:
        if config.operator is None:
            raise ConfigError(
                "coordinator.toml has no [operator] section with the operator "
                "certificate and key (issue one with `oda-fed pki issue NAME --role operator`)"
            )
        host, _, port = config.listen.rpartition(":")
        self.address = (
            address or f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{port}"
        )
        tls = TlsFiles(ca=config.tls.ca, cert=config.operator.cert, key=config.operator.key)
        self._channel = create_channel(
            address=self.address, tls=tls, server_name=config.server_name
        )
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable, request) -> RoundStatus:
        try:
            return serde.from_proto(method(request, timeout=ADMIN_TIMEOUT))
        except grpc.RpcError as exc:
            raise OdaFedError(describe_rpc_error(exc, address=self.address)) from None

    def start_round(self, *, project_fingerprint: str = "") -> RoundStatus:
        return self._call(self._stub.StartRound, serde.start_round_request(project_fingerprint))

    def get_round(self, round_id: str = "") -> RoundStatus:
        """A round's status; the latest round's when ``round_id`` is empty."""
        return self._call(self._stub.GetRound, serde.get_round_request(round_id))

    def release_round(self, round_id: str) -> RoundStatus:
        """Release the products of a round that is awaiting release."""
        return self._call(self._stub.ReleaseRound, serde.release_round_request(round_id))

    def cancel_round(self, round_id: str, *, reason: str) -> RoundStatus:
        """Cancel a round that is not yet released; every partner is told ``reason``."""
        return self._call(self._stub.CancelRound, serde.cancel_round_request(round_id, reason))

    def wait(
        self,
        round_id: str,
        *,
        timeout: float,
        on_status: Callable[[RoundStatus], None] | None = None,
        interval: float = 0.25,
    ) -> RoundStatus:
        """Poll until the round is finished or awaits the operator's release; raise when
        ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_round(round_id)
            if on_status is not None:
                on_status(status)
            if status.finished or status.state is RoundState.AWAITING_RELEASE:
                return status
            if time.monotonic() > deadline:
                raise OdaFedError(
                    f"round {round_id} still '{status.state}' after {timeout:.0f}s: "
                    f"{status.message}"
                )
            time.sleep(interval)
