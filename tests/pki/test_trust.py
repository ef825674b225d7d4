"""Checking certificates at run time: issuance, trust anchors and key pairs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from oda_fed.errors import AuthError, ConfigError
from oda_fed.pki import (
    issue,
    load_ca_bundle,
    load_certificate,
    load_key_pair,
    verify_issued_by,
)
from oda_fed.pki.trust import load_private_key


@pytest.fixture(scope="module")
def council(ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return issue(ca_dir=ca_dir, name="council", role="node", out_dir=tmp_path_factory.mktemp("c"))


@pytest.fixture(scope="module")
def coordinator(ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("coord")
    return issue(ca_dir=ca_dir, name="coordinator", role="coordinator", out_dir=out)


def test_verify_issued_by_accepts_our_certificates(
    ca_dir: Path, council: tuple[Path, Path]
) -> None:
    ca = load_certificate(ca_dir / "ca.crt")
    verify_issued_by(ca, load_certificate(council[0]))
    verify_issued_by((ca_dir / "ca.crt").read_bytes(), council[0].read_bytes())


def test_certificate_from_another_ca_with_the_same_name_is_refused(
    ca_dir: Path, other_ca_dir: Path, tmp_path: Path
) -> None:
    # The attacker's CA has the same CN as ours, so only the signature can tell them apart.
    other_ca = load_certificate(other_ca_dir / "ca.crt")
    assert other_ca.subject == load_certificate(ca_dir / "ca.crt").subject
    cert_path, _ = issue(ca_dir=other_ca_dir, name="police", role="node", out_dir=tmp_path)
    with pytest.raises(
        AuthError, match=r"certificate for 'police' was not issued by this partnership's CA"
    ):
        verify_issued_by((ca_dir / "ca.crt").read_bytes(), cert_path.read_bytes())


def test_self_signed_and_foreign_certificates_are_refused(ca_dir: Path, forge_cert, pem) -> None:
    ca_pem = (ca_dir / "ca.crt").read_bytes()
    forged = forge_cert(
        cn="council", sans=[x509.UniformResourceIdentifier("urn:oda-fed:node:council")]
    )
    with pytest.raises(AuthError, match="not issued by"):
        verify_issued_by(ca_pem, pem(forged))
    # Same issuer name as our CA, signed by a different key.
    lookalike = forge_cert(cn="council", sans=None, issuer_name="oda-fed partnership CA")
    with pytest.raises(AuthError, match="not issued by"):
        verify_issued_by(ca_pem, pem(lookalike))


def test_expired_and_future_certificates_are_refused(ca_dir: Path, forge_cert, pem) -> None:
    ca_pem = (ca_dir / "ca.crt").read_bytes()
    ca_key, _ = load_private_key(ca_dir / "ca.key", what="CA key")
    issuer = load_certificate(ca_dir / "ca.crt").subject.rfc4514_string()[3:]
    expired = forge_cert(
        cn="council", sans=None, issuer_key=ca_key, issuer_name=issuer, days=(-30, -1)
    )
    with pytest.raises(AuthError, match="expired"):
        verify_issued_by(ca_pem, pem(expired))
    future = forge_cert(
        cn="council", sans=None, issuer_key=ca_key, issuer_name=issuer, days=(2, 30)
    )
    with pytest.raises(AuthError, match="not valid until"):
        verify_issued_by(ca_pem, pem(future))


def test_a_leaf_is_not_accepted_as_ca(
    council: tuple[Path, Path], coordinator: tuple[Path, Path]
) -> None:
    with pytest.raises(AuthError, match="is not a CA certificate"):
        verify_issued_by(council[0].read_bytes(), coordinator[0].read_bytes())
    with pytest.raises(AuthError, match="not a PEM certificate"):
        verify_issued_by(b"junk", council[0].read_bytes())


def test_certificates_pass_an_independent_rfc5280_verifier(
    ca_dir: Path, council: tuple[Path, Path], coordinator: tuple[Path, Path]
) -> None:
    # cryptography's path validator is strict (CA/B Forum-like profile): what it accepts, TLS
    # libraries accept too.
    store = verification.Store([load_certificate(ca_dir / "ca.crt")])
    builder = verification.PolicyBuilder().store(store)
    node = load_certificate(council[0])
    verified = builder.build_client_verifier().verify(node, [])
    assert [u.value for u in verified.subjects] == ["urn:oda-fed:node:council"]
    coord = load_certificate(coordinator[0])
    for host in (
        verification.DNSName("localhost"),
        verification.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        builder.build_server_verifier(host).verify(coord, [])
    # A node's certificate cannot serve TLS: no host names, no serverAuth.
    with pytest.raises(verification.VerificationError):
        builder.build_server_verifier(verification.DNSName("localhost")).verify(node, [])


def test_load_ca_bundle(ca_dir: Path, council: tuple[Path, Path], tmp_path: Path) -> None:
    assert load_ca_bundle(ca_dir / "ca.crt") == (ca_dir / "ca.crt").read_bytes()
    with pytest.raises(ConfigError, match="does not exist"):
        load_ca_bundle(tmp_path / "missing.crt")
    (tmp_path / "junk.crt").write_text("hello")
    with pytest.raises(ConfigError, match="is not a PEM certificate"):
        load_ca_bundle(tmp_path / "junk.crt")
    with pytest.raises(ConfigError, match="which is not a CA"):
        load_ca_bundle(council[0])


def test_load_ca_bundle_never_echoes_a_private_key(ca_dir: Path) -> None:
    key_pem = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(ConfigError, match="holds a private key") as info:
        load_ca_bundle(ca_dir / "ca.key")
    body = b"".join(key_pem.splitlines()[1:-1]).decode()
    assert body[:20] not in str(info.value)


def test_load_key_pair(council: tuple[Path, Path], coordinator: tuple[Path, Path]) -> None:
    cert_pem, key_pem = load_key_pair(cert_path=council[0], key_path=council[1])
    assert cert_pem == council[0].read_bytes()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == load_certificate(council[0]).public_key()
    with pytest.raises(ConfigError, match="is not the private key of"):
        load_key_pair(cert_path=council[0], key_path=coordinator[1])
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_key_pair(cert_path=council[0], key_path=coordinator[0])
