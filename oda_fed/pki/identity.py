"""Who a certificate speaks for: a partner name and a role, carried in a SAN URI.

A partnership certificate names its holder twice: the subject CN is the name, and a SAN URI
``urn:oda-fed:<role>:<name>`` states the role as well. Servers derive the caller's identity from the
certificate that TLS verified, never from a field the client fills in. The CN alone is not trusted:
the URI is what the CA checked when it signed, and the two must agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography import x509
from cryptography.x509.oid import NameOID

from oda_fed.errors import AuthError, ConfigError

Role = Literal["node", "coordinator", "operator"]
ROLES: tuple[Role, ...] = get_args(Role)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
URI_PREFIX = "urn:oda-fed:"


def shown(value: object, *, limit: int = 64) -> str:
    """Quote a value taken from a peer's certificate or file for an error message, cut to ``limit``.

    Peer-supplied text goes through ``repr`` so control characters cannot forge log lines, and is
    shortened so a hostile certificate cannot flood a log.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_valid_name(name: object) -> bool:
    """Return True if ``name`` is a valid partner, coordinator or operator name.

    Examples
    --------
    >>> is_valid_name("council"), is_valid_name("Council")
    (True, False)
    """
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: str) -> str:
    """Return ``name`` unchanged if valid, else raise :class:`ConfigError`.

    Examples
    --------
    >>> check_name("police")
    'police'
    """
    if not is_valid_name(name):
        raise ConfigError(
            f"name {shown(name)} is not valid: use 1-63 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit (e.g. 'council')"
        )
    return name


def check_role(role: str) -> Role:
    """Return ``role`` if it is one of :data:`ROLES`, else raise :class:`ConfigError`.

    Examples
    --------
    >>> check_role("node")
    'node'
    """
    if role not in ROLES:
        raise ConfigError(f"role {shown(role)} is not valid: use one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


@dataclass(frozen=True)
class Identity:
    """The holder of a partnership certificate.

    Examples
    --------
    >>> Identity(name="council", role="node").uri
    'urn:oda-fed:node:council'
    """

    name: str
    role: Role

    def __post_init__(self) -> None:
        check_name(self.name)
        check_role(self.role)

    @property
    def uri(self) -> str:
        """The SAN URI that carries this identity in a certificate."""
        return f"{URI_PREFIX}{self.role}:{self.name}"

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def parse_identity_uri(uri: str) -> Identity | None:
    """Parse ``urn:oda-fed:<role>:<name>``; return None if it is not a valid identity URI.

    Examples
    --------
    >>> parse_identity_uri("urn:oda-fed:operator:oda-staff")
    Identity(name='oda-staff', role='operator')
    >>> parse_identity_uri("urn:oda-fed:admin:eve") is None
    True
    """
    if not uri.startswith(URI_PREFIX):
        return None
    role, sep, name = uri[len(URI_PREFIX) :].partition(":")
    if not sep or role not in ROLES or not is_valid_name(name):
        return None
    return Identity(name=name, role=role)  # type: ignore[arg-type]


def common_name(subject: x509.Name) -> str | None:
    """Return the single CN of ``subject``, or None if there is none or more than one."""
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not isinstance(cns[0].value, str):
        return None
    return cns[0].value


def identity_from_cert(cert: x509.Certificate) -> Identity:
    """Derive the holder's identity from a certificate that TLS or :func:`verify_issued_by` checked.

    This checks the certificate's content, not its signature: call it only on a certificate whose
    chain has been verified against the partnership CA.

    Raises
    ------
    AuthError
        If the certificate has no single ``urn:oda-fed:`` SAN URI, the URI is malformed, or the
        subject CN disagrees with the name in the URI.

    Examples
    --------
    >>> identity_from_cert(cert)  # doctest: +SKIP
    Identity(name='council', role='node')
    """
    cn = common_name(cert.subject)
    where = f"certificate for {shown(cn)}" if cn is not None else "certificate"
    hint = "issue one with `oda-fed pki issue` or `oda-fed pki sign`"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise AuthError(
            f"{where} has no subjectAltName, so it names no oda-fed role; {hint}"
        ) from None
    except ValueError:
        raise AuthError(f"{where} has a malformed extension; {hint}") from None
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(URI_PREFIX)
    ]
    if len(uris) != 1:
        raise AuthError(
            f"{where} must carry exactly one '{URI_PREFIX}<role>:<name>' SAN URI, "
            f"found {len(uris)}; {hint}"
        )
    identity = parse_identity_uri(uris[0])
    if identity is None:
        raise AuthError(f"{where} has a malformed identity URI {shown(uris[0])}; {hint}")
    if cn != identity.name:
        raise AuthError(
            f"{where} disagrees with its identity URI {shown(uris[0])}: "
            f"the CN must equal the name; {hint}"
        )
    return identity


def identity_from_pem(pem: bytes | str) -> Identity:
    """Derive the holder's identity from a PEM certificate, e.g. the gRPC peer's.

    In a gRPC handler pass ``context.auth_context()["x509_pem_cert"][0]``: gRPC has already
    verified that certificate against the partnership CA during the mutual-TLS handshake.

    Raises
    ------
    AuthError
        If ``pem`` is not a PEM certificate or does not carry a valid identity
        (see :func:`identity_from_cert`).

    Examples
    --------
    >>> pem = context.auth_context()["x509_pem_cert"][0]  # doctest: +SKIP
    >>> identity_from_pem(pem)  # doctest: +SKIP
    Identity(name='council', role='node')
    """
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise AuthError("peer certificate is missing or is not a PEM certificate") from None
    return identity_from_cert(certs[0])
