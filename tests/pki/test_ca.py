"""The CA, requests and signing: round trips, and the requests a CA must refuse."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from oda_fed.errors import AuthError, ConfigError
from oda_fed.pki import (
    Identity,
    create_request,
    identity_from_pem,
    init_ca,
    issue,
    load_certificate,
    sign_request,
    verify_issued_by,
)
from oda_fed.pki.register import CRL_FILE, load_crl, read_register, serial_hex

EKU = ExtendedKeyUsageOID


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _ext(cert: x509.Certificate, cls: type) -> object:
    return cert.extensions.get_extension_for_class(cls)


def test_init_ca_writes_a_constrained_ca_with_a_private_key(tmp_path: Path) -> None:
    cert_path = init_ca(tmp_path / "ca", name="test partnership CA", days=30)
    assert cert_path == tmp_path / "ca" / "ca.crt"
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    cert = load_certificate(cert_path)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"


@pytest.mark.parametrize(
    ("name", "role", "ekus"),
    [
        ("council", "node", [EKU.CLIENT_AUTH]),
        ("coordinator", "coordinator", [EKU.SERVER_AUTH, EKU.CLIENT_AUTH]),
        ("oda-staff", "operator", [EKU.CLIENT_AUTH]),
    ],
)
def test_issue_round_trips_identity_for_each_role(
    ca_dir: Path, tmp_path: Path, name: str, role: str, ekus: list[x509.ObjectIdentifier]
) -> None:
    cert_path, key_path = issue(ca_dir=ca_dir, name=name, role=role, out_dir=tmp_path)  # type: ignore[arg-type]
    assert (cert_path, key_path) == (tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    assert _mode(key_path) == 0o600
    assert not (tmp_path / f"{name}.csr").exists()
    pem = cert_path.read_bytes()
    assert identity_from_pem(pem) == Identity(name=name, role=role)  # type: ignore[arg-type]
    verify_issued_by((ca_dir / "ca.crt").read_bytes(), pem)
    cert = load_certificate(cert_path)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == ekus
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_coordinator_gets_default_and_custom_hosts(ca_dir: Path, tmp_path: Path) -> None:
    cert_path, _ = issue(ca_dir=ca_dir, name="coordinator", role="coordinator", out_dir=tmp_path)
    san = _ext(load_certificate(cert_path), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]

    cert_path, _ = issue(
        ca_dir=ca_dir,
        name="linkage",
        role="coordinator",
        out_dir=tmp_path,
        hosts=["oda.example.gov.uk", "10.0.0.7", "::1"],
    )
    san = _ext(load_certificate(cert_path), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["oda.example.gov.uk"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    assert "localhost" not in san.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("hosts", [["localhost"], ["127.0.0.1"]])
def test_a_node_certificate_may_not_name_hosts(
    ca_dir: Path, tmp_path: Path, hosts: list[str]
) -> None:
    with pytest.raises(ConfigError, match="only to the coordinator"):
        issue(ca_dir=ca_dir, name="council", role="node", out_dir=tmp_path, hosts=hosts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("host", ["bad host", "-lead.example", "a..b", "x" * 64 + ".example"])
def test_invalid_host_names_are_refused(ca_dir: Path, tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
        create_request(name="coordinator", role="coordinator", out_dir=tmp_path, hosts=[host])


def test_csr_flow_keeps_the_key_on_the_node(ca_dir: Path, tmp_path: Path) -> None:
    node_dir, inbox = tmp_path / "node", tmp_path / "ca-inbox"
    csr_path = create_request(name="police", role="node", out_dir=node_dir)
    assert csr_path == node_dir / "police.csr"
    assert _mode(node_dir / "police.key") == 0o600
    # Only the CSR travels to the CA holder.
    inbox.mkdir()
    (inbox / "police.csr").write_bytes(csr_path.read_bytes())
    cert_path = sign_request(ca_dir=ca_dir, csr_path=inbox / "police.csr", days=10)
    assert cert_path == inbox / "police.crt"
    assert sorted(p.name for p in inbox.iterdir()) == ["police.crt", "police.csr"]
    cert = load_certificate(cert_path)
    key = serialization.load_pem_private_key((node_dir / "police.key").read_bytes(), password=None)
    assert cert.public_key() == key.public_key()
    assert identity_from_pem(cert_path.read_bytes()) == Identity(name="police", role="node")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 10 <= lifetime.days <= 11


def test_sign_request_writes_to_out_path(ca_dir: Path, tmp_path: Path) -> None:
    csr_path = create_request(name="fire", role="node", out_dir=tmp_path)
    out = sign_request(ca_dir=ca_dir, csr_path=csr_path, out_path=tmp_path / "issued" / "x.pem")
    assert out == tmp_path / "issued" / "x.pem"
    assert identity_from_pem(out.read_bytes()).name == "fire"


def test_certificate_never_outlives_the_ca(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", days=5)
    cert_path, _ = issue(
        ca_dir=tmp_path / "ca", name="council", role="node", out_dir=tmp_path, days=825
    )
    ca = load_certificate(tmp_path / "ca" / "ca.crt")
    assert load_certificate(cert_path).not_valid_after_utc <= ca.not_valid_after_utc


def _sign_forged(ca_dir: Path, tmp_path: Path, csr: x509.CertificateSigningRequest) -> Path:
    path = tmp_path / "forged.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return sign_request(ca_dir=ca_dir, csr_path=path)


def _uri(identity: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(f"urn:oda-fed:{identity}")


@pytest.mark.parametrize(
    ("cn", "sans", "message"),
    [
        # A police requester asking the CA to vouch that it is the council.
        ("police", [_uri("node:council")], "CN differs"),
        # Becoming the coordinator: the role in the URI decides what the server lets you call.
        ("council", [_uri("coordinator:coordinator")], "CN differs"),
        ("council", [_uri("admin:council")], "unknown or malformed URI"),
        ("council", [_uri("node:Council")], "unknown or malformed URI"),
        (
            "council",
            [x509.UniformResourceIdentifier("https://evil.example/")],
            "unknown or malformed",
        ),
        ("council", [_uri("node:council"), _uri("operator:council")], "exactly one identity URI"),
        # an empty SAN: cryptography >= 51 refuses to parse it at all, older versions parse no names
        ("council", [], "exactly one identity URI|malformed subjectAltName"),
        ("council", None, "no subjectAltName"),
        ("council", [_uri("node:council"), x509.DNSName("localhost")], "only the coordinator"),
        ("council", [_uri("node:council"), x509.RFC822Name("dpo@example.org")], "not allowed"),
    ],
)
def test_sign_request_refuses_hostile_requests(
    ca_dir: Path, tmp_path: Path, forge_csr, cn: str, sans: list | None, message: str
) -> None:
    csr = forge_csr(cn=cn, sans=sans)
    with pytest.raises(AuthError, match=message):
        _sign_forged(ca_dir, tmp_path, csr)
    assert not list(tmp_path.glob("*.crt"))


def test_sign_request_refuses_a_tampered_request(ca_dir: Path, tmp_path: Path, forge_csr) -> None:
    csr = forge_csr(cn="council", sans=[_uri("node:council")])
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit in the signature
    tampered = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(AuthError, match="invalid signature"):
        _sign_forged(ca_dir, tmp_path, tampered)


def test_sign_request_refuses_a_non_p256_key(ca_dir: Path, tmp_path: Path, forge_csr) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError, match="EC P-256"):
        _sign_forged(
            ca_dir, tmp_path, forge_csr(cn="council", sans=[_uri("node:council")], key=rsa_key)
        )


def test_requested_extensions_are_not_copied(ca_dir: Path, tmp_path: Path) -> None:
    # A request that asks to be a CA itself gets an ordinary leaf certificate.
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "housing")]))
        .add_extension(x509.SubjectAlternativeName([_uri("node:housing")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = load_certificate(_sign_forged(ca_dir, tmp_path, csr))
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [EKU.CLIENT_AUTH]


def test_sign_request_reports_unreadable_inputs(ca_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        sign_request(ca_dir=ca_dir, csr_path=tmp_path / "missing.csr")
    (tmp_path / "junk.csr").write_text("not a request")
    with pytest.raises(ConfigError, match="not a PEM certificate signing request"):
        sign_request(ca_dir=ca_dir, csr_path=tmp_path / "junk.csr")
    csr_path = create_request(name="council", role="node", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="CA certificate .* does not exist"):
        sign_request(ca_dir=tmp_path / "no-ca", csr_path=csr_path)


def test_ca_key_that_does_not_match_its_certificate_is_refused(
    ca_dir: Path, other_ca_dir: Path, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed-ca"
    mixed.mkdir()
    (mixed / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    (mixed / "ca.key").write_bytes((other_ca_dir / "ca.key").read_bytes())
    csr_path = create_request(name="council", role="node", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="is not the key of"):
        sign_request(ca_dir=mixed, csr_path=csr_path)


def test_private_keys_are_never_overwritten_silently(ca_dir: Path, tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    ca_key = (tmp_path / "ca" / "ca.key").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        init_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").read_bytes() == ca_key

    create_request(name="council", role="node", out_dir=tmp_path)
    key = (tmp_path / "council.key").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        create_request(name="council", role="node", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        issue(ca_dir=ca_dir, name="council", role="node", out_dir=tmp_path)
    assert (tmp_path / "council.key").read_bytes() == key

    create_request(name="council", role="node", out_dir=tmp_path, force=True)
    assert (tmp_path / "council.key").read_bytes() != key
    assert _mode(tmp_path / "council.key") == 0o600
    init_ca(tmp_path / "ca", force=True)
    assert (tmp_path / "ca" / "ca.key").read_bytes() != ca_key
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "council.key").symlink_to(target)
    with pytest.raises(ConfigError, match="already exists"):
        create_request(name="council", role="node", out_dir=tmp_path / "keys")
    assert target.read_text() == "keep me"


def test_key_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        create_request(name="council", role="node", out_dir=tmp_path)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "council.key") == 0o600


@pytest.mark.parametrize("name", ["Council", "", "-council", "council!", "a" * 64, "coun cil"])
def test_invalid_names_are_refused(ca_dir: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        issue(ca_dir=ca_dir, name=name, role="node", out_dir=tmp_path)


def test_invalid_role_and_days_are_refused(ca_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="role 'admin' is not valid"):
        create_request(name="council", role="admin", out_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="days"):
        issue(ca_dir=ca_dir, name="council", role="node", out_dir=tmp_path, days=0)


def test_issue_without_a_ca_makes_no_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        issue(ca_dir=tmp_path / "no-ca", name="council", role="node", out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "council.key").exists()


def test_a_second_node_certificate_for_a_partner_is_refused_unless_it_replaces_the_first(
    tmp_path: Path,
) -> None:
    """Either of two valid certificates for a partner could act for it, so the CA signs a second
    only as a replacement, and then revokes the first (register and CRL) as it signs."""
    ca = tmp_path / "ca"
    init_ca(ca)
    first, _ = issue(ca_dir=ca, name="council", role="node", out_dir=tmp_path / "first")
    csr = create_request(name="council", role="node", out_dir=tmp_path / "second")
    with pytest.raises(ConfigError, match="already issued a valid node certificate for 'council'"):
        sign_request(ca_dir=ca, csr_path=csr)
    assert [e.status() for e in read_register(ca)] == ["valid"]
    assert not (tmp_path / "second" / "council.crt").exists()

    second = load_certificate(sign_request(ca_dir=ca, csr_path=csr, replace=True))
    old = load_certificate(first)
    assert [(e.serial, e.status()) for e in read_register(ca)] == [
        (serial_hex(old.serial_number), "revoked"), (serial_hex(second.serial_number), "valid")
    ]  # fmt: skip
    assert read_register(ca)[0].reason == "superseded"
    assert load_crl(ca / CRL_FILE, ca=load_certificate(ca / "ca.crt")) == {old.serial_number}
    # Operators and the coordinator are not partners: several valid ones are fine.
    for n in range(2):
        issue(ca_dir=ca, name="oda-staff", role="operator", out_dir=tmp_path / f"op{n}")
