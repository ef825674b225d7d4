"""Loading and checking partnership certificates and keys: trust anchors, key pairs, issuance.

These are what a running node or coordinator needs; making and signing certificates is in
:mod:`oda_fed.pki.ca`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from oda_fed.errors import AuthError, ConfigError
from oda_fed.pki.files import read_file
from oda_fed.pki.identity import common_name, shown

SIGN_HINT = "issue one with `oda-fed pki sign` (or `oda-fed pki issue`)"


def load_certificate(path: Path, *, what: str = "certificate") -> x509.Certificate:
    """Load the first certificate from a PEM file.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable or holds no PEM certificate.

    Examples
    --------
    >>> load_certificate(Path("pki/ca.crt")).subject.rfc4514_string()  # doctest: +SKIP
    'CN=oda-fed partnership CA'
    """
    return load_certs(read_file(path, what=what, hint=SIGN_HINT), path=path, what=what)[0]


def load_certs(data: bytes, *, path: Path, what: str) -> list[x509.Certificate]:
    """Parse every PEM certificate in ``data``, read from ``path``; ConfigError if none."""
    if b"PRIVATE KEY" in data:
        # Most likely the key was passed for the certificate. Say so without echoing any of it.
        raise ConfigError(
            f"{what} {path} holds a private key, not a certificate; pass the .crt file"
        )
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{what} {path} is not a PEM certificate") from None


def load_private_key(path: Path, *, what: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """Load an unencrypted PEM EC private key; return it with the file's bytes."""
    data = read_file(path, what=what, hint="check the path, or create it with `oda-fed pki`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{what} {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{what} {path} is not an EC private key")
    return key, data


def same_key(a: object, b: object) -> bool:
    """Return True if two public keys are the same key."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)  # type: ignore[attr-defined]


def verify_issued_by(ca_cert: x509.Certificate | bytes, cert: x509.Certificate | bytes) -> None:
    """Check that ``cert`` was signed by the partnership CA ``ca_cert`` and is valid now.

    gRPC performs this check during the TLS handshake; use this function for certificates that
    arrive another way (files, a renewal) and in tests. Both arguments may be PEM bytes.

    Raises
    ------
    AuthError
        If ``ca_cert`` is not a CA certificate or is expired, or ``cert`` was not issued by it, is
        itself a CA, or is outside its validity period.

    Examples
    --------
    >>> verify_issued_by(ca_pem, Path("police.crt").read_bytes())  # doctest: +SKIP
    """
    ca = _as_cert(ca_cert, what="CA certificate")
    leaf = _as_cert(cert, what="certificate")
    ca_name = common_name(ca.subject)
    where = f"certificate for {shown(common_name(leaf.subject))}"
    if not _is_ca(ca):
        raise AuthError(f"{shown(ca_name)} is not a CA certificate; pass the partnership's ca.crt")
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise AuthError(
            f"{where} was not issued by this partnership's CA ({shown(ca_name)}, ca.crt); "
            f"{SIGN_HINT}"
        ) from None
    if _is_ca(leaf):
        raise AuthError(f"{where} is a CA certificate, not a party's certificate")
    now = dt.datetime.now(dt.UTC)
    for what, c in (("the CA certificate", ca), (where, leaf)):
        if now < c.not_valid_before_utc:
            raise AuthError(
                f"{what} is not valid until {c.not_valid_before_utc:%Y-%m-%d %H:%M}Z; "
                "check the clock"
            )
        if now > c.not_valid_after_utc:
            raise AuthError(f"{what} expired on {c.not_valid_after_utc:%Y-%m-%d}; {SIGN_HINT}")


def _as_cert(value: x509.Certificate | bytes, *, what: str) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    try:
        return x509.load_pem_x509_certificates(bytes(value))[0]
    except ValueError:
        raise AuthError(f"{what} is not a PEM certificate") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def load_ca_bundle(path: Path) -> bytes:
    """Read the partnership CA certificate(s) as PEM, for gRPC's ``root_certificates``.

    Raises
    ------
    ConfigError
        If the file is missing, holds a private key or no certificate, or holds a certificate
        that is not a CA (a common slip: passing the party's own certificate).

    Examples
    --------
    >>> roots = load_ca_bundle(Path("pki/ca.crt"))  # doctest: +SKIP
    >>> grpc.ssl_channel_credentials(roots, key, cert)  # doctest: +SKIP
    """
    data = read_file(path, what="CA certificate", hint="copy the partnership's ca.crt there")
    for cert in load_certs(data, path=path, what="CA certificate"):
        if not _is_ca(cert):
            raise ConfigError(
                f"{path} holds the certificate of {shown(common_name(cert.subject))}, "
                "which is not a CA; pass the partnership's ca.crt"
            )
    return data


def load_key_pair(*, cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    """Read a party's certificate and private key as PEM, checking that they belong together.

    Returns
    -------
    tuple[bytes, bytes]
        ``(certificate_pem, private_key_pem)``; for gRPC pass them as
        ``ssl_server_credentials([(key, cert)], ...)`` or
        ``ssl_channel_credentials(ca, private_key=key, certificate_chain=cert)``.

    Raises
    ------
    ConfigError
        If either file is missing or malformed, or the key is not the certificate's key.

    Examples
    --------
    >>> load_key_pair(cert_path=Path("council.crt"), key_path=Path("council.key"))  # doctest: +SKIP
    (b'-----BEGIN CERTIFICATE-----...', b'-----BEGIN PRIVATE KEY-----...')
    """
    cert_pem = read_file(cert_path, what="certificate", hint=SIGN_HINT)
    cert = load_certs(cert_pem, path=cert_path, what="certificate")[0]
    key, key_pem = load_private_key(key_path, what="private key")
    if not same_key(cert.public_key(), key.public_key()):
        raise ConfigError(
            f"{key_path} is not the private key of {cert_path}; pass the matching pair"
        )
    return cert_pem, key_pem
