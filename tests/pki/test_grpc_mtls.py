"""Our certificates in a real mutual-TLS gRPC handshake on loopback: who gets in, and as whom."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from oda_fed.errors import AuthError
from oda_fed.pki import identity_from_pem, issue, load_ca_bundle, load_key_pair

pytestmark = pytest.mark.grpc


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    # What a servicer does: identity from the verified certificate, never from the request.
    pems = context.auth_context().get("x509_pem_cert", [])
    try:
        identity = identity_from_pem(pems[0] if pems else b"")
    except AuthError as exc:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    return str(identity).encode()


@pytest.fixture(scope="module")
def pki(ca_dir: Path, other_ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mtls")
    issue(ca_dir=ca_dir, name="coordinator", role="coordinator", out_dir=out)
    issue(ca_dir=ca_dir, name="council", role="node", out_dir=out)
    issue(ca_dir=ca_dir, name="oda-staff", role="operator", out_dir=out)
    issue(ca_dir=other_ca_dir, name="council", role="node", out_dir=out / "impostor")
    return out


@pytest.fixture(scope="module")
def server_port(ca_dir: Path, pki: Path) -> Iterator[int]:
    cert, key = load_key_pair(cert_path=pki / "coordinator.crt", key_path=pki / "coordinator.key")
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=load_ca_bundle(ca_dir / "ca.crt"), require_client_auth=True
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "test.Identity", {"WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("localhost:0", credentials)
    server.start()
    yield port
    server.stop(grace=None)


def _call(
    target: str,
    ca: bytes,
    key: bytes | None = None,
    cert: bytes | None = None,
    *,
    server_name: str | None = None,
) -> bytes:
    credentials = grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    with grpc.secure_channel(target, credentials, options=options) as channel:
        return channel.unary_unary("/test.Identity/WhoAmI")(b"", timeout=5)


@pytest.mark.parametrize(
    ("name", "host", "expected"),
    [
        ("council", "localhost", b"node:council"),
        ("council", "127.0.0.1", b"node:council"),
        ("oda-staff", "localhost", b"operator:oda-staff"),
    ],
)
def test_server_derives_role_and_name_from_the_client_certificate(
    ca_dir: Path, pki: Path, server_port: int, name: str, host: str, expected: bytes
) -> None:
    cert, key = load_key_pair(cert_path=pki / f"{name}.crt", key_path=pki / f"{name}.key")
    ca = load_ca_bundle(ca_dir / "ca.crt")
    assert _call(f"{host}:{server_port}", ca, key, cert) == expected


def test_client_without_a_certificate_is_refused(ca_dir: Path, server_port: int) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(f"localhost:{server_port}", load_ca_bundle(ca_dir / "ca.crt"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_is_refused(ca_dir: Path, pki: Path, server_port: int) -> None:
    # Same name and role as a real node, issued by a CA with the same name as ours.
    cert, key = load_key_pair(
        cert_path=pki / "impostor" / "council.crt", key_path=pki / "impostor" / "council.key"
    )
    with pytest.raises(grpc.RpcError) as info:
        _call(f"localhost:{server_port}", load_ca_bundle(ca_dir / "ca.crt"), key, cert)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_node_refuses_a_server_whose_host_is_not_in_its_certificate(
    ca_dir: Path, pki: Path, server_port: int
) -> None:
    cert, key = load_key_pair(cert_path=pki / "council.crt", key_path=pki / "council.key")
    with pytest.raises(grpc.RpcError) as info:
        _call(
            f"127.0.0.1:{server_port}",
            load_ca_bundle(ca_dir / "ca.crt"),
            key,
            cert,
            server_name="oda.example.gov.uk",
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
