"""The operator's client for their own coordinator: start a round, follow it to the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from oda_fed.config import CoordinatorConfig, TlsFiles
from oda_fed.errors import ConfigError, OdaFedError
from oda_fed.proto.v1 import admin_pb2, admin_pb2_grpc
from oda_fed.transport.channel import create_channel, describe_rpc_error

FINAL_STATES = ("closed", "failed")


@dataclass(frozen=True)
class PartnerProgress:
    partner: str
    connected: bool
    records: int
    uploaded: bool
    entities_delivered: bool


@dataclass(frozen=True)
class RoundStatus:
    round_id: str
    state: str
    message: str
    entities: int
    linked_entities: int
    partners: tuple[PartnerProgress, ...]
    product_files: tuple[str, ...]
    report_path: str

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def _status(msg: admin_pb2.RoundStatus) -> RoundStatus:
    return RoundStatus(
        round_id=msg.round_id,
        state=msg.state,
        message=msg.message,
        entities=msg.entities,
        linked_entities=msg.linked_entities,
        report_path=msg.report_path,
        product_files=tuple(msg.product_files),
        partners=tuple(
            PartnerProgress(p.partner_id, p.connected, p.records, p.uploaded, p.entities_delivered)
            for p in msg.partners
        ),
    )


class AdminClient:
    """Talks to the coordinator's Admin service with the operator certificate."""

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

    def _call(self, fn: Callable, request) -> RoundStatus:
        try:
            return _status(fn(request, timeout=30))
        except grpc.RpcError as exc:
            raise OdaFedError(describe_rpc_error(exc, address=self.address)) from None

    def start_round(self, *, project_fingerprint: str = "") -> RoundStatus:
        return self._call(
            self._stub.StartRound,
            admin_pb2.StartRoundRequest(project_fingerprint=project_fingerprint),
        )

    def get_round(self, round_id: str = "") -> RoundStatus:
        return self._call(self._stub.GetRound, admin_pb2.GetRoundRequest(round_id=round_id))

    def wait(
        self,
        round_id: str,
        *,
        timeout: float,
        on_status: Callable[[RoundStatus], None] | None = None,
        interval: float = 0.25,
    ) -> RoundStatus:
        """Poll until the round closes or fails; raise when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_round(round_id)
            if on_status is not None:
                on_status(status)
            if status.finished:
                return status
            if time.monotonic() > deadline:
                raise OdaFedError(
                    f"round {round_id} still '{status.state}' after {timeout:.0f}s: "
                    f"{status.message}"
                )
            time.sleep(interval)
