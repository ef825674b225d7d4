"""Mutual-TLS gRPC servers and channels. There is no insecure mode."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from pathlib import Path

import grpc

from oda_fed.config import TlsFiles
from oda_fed.errors import ConfigError
from oda_fed.transport.auth import AuthInterceptor, CallLimits, RefusalHook

_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# The server must accept the clients' keepalive pings: by default it wants 5 minutes between
# pings without data and answers a node pinging every 20 s with GOAWAY "too_many_pings",
# dropping its control stream (seen under load, when pings bunch up).
_SERVER_PINGS = [
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found (see `oda-fed pki --help`)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{path}: not a PEM {what}")
    return data


def message_options(max_message_mb: int) -> list[tuple[str, int]]:
    size = max_message_mb * 1024 * 1024
    return [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]


def create_server(
    *,
    address: str,
    tls: TlsFiles,
    max_workers: int = 32,
    max_message_mb: int = 32,
    max_receive_bytes: int | None = None,
    on_refused: RefusalHook | None = None,
    limits: CallLimits | None = None,
    revoked: Callable[[int], bool] | None = None,
    partners: Iterable[str] | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int]:
    """A gRPC server that requires a client certificate from the partnership CA, and refuses
    every call from one whose serial ``revoked`` says the CA has revoked.

    ``max_receive_bytes`` lowers the largest message it reads below ``max_message_mb`` (which
    bounds what it sends): gRPC refuses a larger one before reading it into memory.
    ``partners`` names the nodes that are partners (see
    :class:`~oda_fed.transport.auth.AuthInterceptor`); ``interceptors`` run before the
    authorisation (the metrics' own, which counts refused calls too). Returns the (not yet started) server and
    the bound port, so tests can bind port 0.
    """
    credentials = grpc.ssl_server_credentials(
        [(_read(tls.key, "private key"), _read(tls.cert, "certificate"))],
        root_certificates=_read(tls.ca, "CA certificate"),
        require_client_auth=True,
    )
    sizes = dict(message_options(max_message_mb))
    if max_receive_bytes is not None:
        sizes["grpc.max_receive_message_length"] = max_receive_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=[
            *interceptors,
            AuthInterceptor(
                on_refused=on_refused, limits=limits, revoked=revoked, partners=partners
            ),
        ],
        options=[*sizes.items(), *_KEEPALIVE, *_SERVER_PINGS],
    )
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {address} (address in use or not local?)")
    return server, port


def create_channel(
    *, address: str, tls: TlsFiles, server_name: str | None = None, max_message_mb: int = 32
) -> grpc.Channel:
    """A channel that presents our certificate and checks the server's against the CA."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca, "CA certificate"),
        private_key=_read(tls.key, "private key"),
        certificate_chain=_read(tls.cert, "certificate"),
    )
    options: list[tuple[str, int | str]] = [*message_options(max_message_mb), *_KEEPALIVE]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, credentials, options=options)


def describe_rpc_error(exc: grpc.RpcError, *, address: str) -> str:
    """Turn a transport failure into one actionable line."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = (
            "the coordinator is not reachable, or the TLS handshake failed: check the address, that "
            "the coordinator is running, and that both certificates were issued by the partnership CA"
        )
        return f"{address}: {hint} ({details})"
    name = code.name if code is not None else "ERROR"
    return f"{address}: {name}: {details}"
