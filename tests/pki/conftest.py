"""A partnership CA made once per module, and helpers to forge what a real CA would refuse."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from oda_fed.pki import init_ca


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA per module: it signs one valid node certificate per partner name, and modules each
    want their own council."""
    directory = tmp_path_factory.mktemp("ca")
    init_ca(directory)
    return directory


@pytest.fixture(scope="session")
def other_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA with the very same name: what an attacker would make."""
    directory = tmp_path_factory.mktemp("other-ca")
    init_ca(directory)
    return directory


def _pem(obj: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def _forge_cert(
    *,
    cn: str,
    sans: Sequence[x509.GeneralName] | None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer_name: str = "forger",
    days: tuple[int, int] = (-1, 30),
) -> x509.Certificate:
    """A certificate built by hand, bypassing sign_request's checks."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        # _validate=False: a forger is not bound by the 64-character CN limit.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _forge_csr(
    *, cn: str, sans: Sequence[x509.GeneralName] | None, key: object = None
) -> x509.CertificateSigningRequest:
    """A CSR built by hand, as a hostile or careless requester could."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    elif sans is not None:
        # cryptography >= 51 will not build an empty SAN; a hostile requester writes the DER itself.
        empty = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x00")
        builder = builder.add_extension(empty, critical=False)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


# Fixtures rather than imports: with --import-mode=importlib a test cannot import conftest.
@pytest.fixture(scope="session")
def pem() -> Callable[..., bytes]:
    return _pem


@pytest.fixture(scope="session")
def forge_cert() -> Callable[..., x509.Certificate]:
    return _forge_cert


@pytest.fixture(scope="session")
def forge_csr() -> Callable[..., x509.CertificateSigningRequest]:
    return _forge_csr
