"""The partnership CA: make it, request certificates and sign them.

The flow keeps every private key where it is used: a node runs :func:`create_request` and sends
only the ``.csr`` to the CA holder, who runs :func:`sign_request` and sends back the ``.crt``.
:func:`issue` does both in one place, for the demo and for tests. Checking certificates at run
time is in :mod:`oda_fed.pki.trust`.

Certificates follow one profile (EC P-256, ECDSA-SHA256):

- CA: ``basicConstraints CA:TRUE, pathlen:0`` and ``keyUsage keyCertSign, cRLSign``, both critical.
- Leaf: subject ``CN=<name>``; SAN ``URI:urn:oda-fed:<role>:<name>``; coordinators also carry
  ``DNS``/``IP`` SANs for their hosts; ``extendedKeyUsage`` serverAuth+clientAuth for the
  coordinator, clientAuth for a node or operator.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from oda_fed.errors import AuthError, ConfigError
from oda_fed.pki.files import read_file, refuse_existing, write_file
from oda_fed.pki.identity import (
    URI_PREFIX,
    Identity,
    Role,
    check_name,
    check_role,
    common_name,
    parse_identity_uri,
    shown,
)
from oda_fed.pki.register import (
    Registered,
    read_register,
    record,
    revoke,
    start_register,
    write_crl,
)
from oda_fed.pki.trust import load_certificate, load_private_key, same_key

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
DEFAULT_COORDINATOR_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")
# Certificates start a little in the past so a peer whose clock lags does not reject a fresh one.
_BACKDATE = dt.timedelta(minutes=5)
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

HostName = x509.DNSName | x509.IPAddress


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _check_days(days: int) -> None:
    if not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be a whole number of days, at least 1 (got {shown(days)})")


def _parse_host(host: str) -> HostName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
        raise ConfigError(
            f"host {shown(host)} is neither an IP address nor a DNS name "
            "(letters, digits, '-' and '.')"
        )
    return x509.DNSName(name)


def _host_names(role: Role, hosts: Sequence[str]) -> list[HostName]:
    if isinstance(hosts, str):
        raise ConfigError("hosts must be a list of host names, not a single string")
    if role != "coordinator":
        if hosts:
            raise ConfigError(
                f"hosts apply only to the coordinator; a {role} never accepts connections, "
                "so its certificate must not name hosts"
            )
        return []
    return [_parse_host(h) for h in (hosts or DEFAULT_COORDINATOR_HOSTS)]


def _ekus(role: Role) -> x509.ExtendedKeyUsage:
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "coordinator":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    return x509.ExtendedKeyUsage(usages)


def _check_key(key: object, *, where: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AuthError(
            f"{where} does not use an EC P-256 key; make the request with `oda-fed pki request`"
        )
    return key


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in ``ca_dir``, checked to belong together."""
    cert = load_certificate(ca_dir / CA_CERT_FILE, what="CA certificate")
    key, _ = load_private_key(ca_dir / CA_KEY_FILE, what="CA key")
    if not same_key(cert.public_key(), key.public_key()):
        raise ConfigError(f"{ca_dir / CA_KEY_FILE} is not the key of {ca_dir / CA_CERT_FILE}")
    return cert, key


def init_ca(
    directory: Path,
    *,
    name: str = "oda-fed partnership CA",
    days: int = 3650,
    force: bool = False,
) -> Path:
    """Create the partnership CA: ``ca.key`` (mode 0600) and ``ca.crt`` in ``directory``.

    Parameters
    ----------
    directory
        Folder for the CA; created if missing. Keep it offline: whoever holds ``ca.key`` can mint
        any identity in the partnership.
    name
        The CA certificate's CN.
    days
        Validity of the CA certificate.
    force
        Replace an existing CA. Every certificate it issued stops being trusted.

    Returns
    -------
    Path
        The CA certificate, ``directory / "ca.crt"``: the trust anchor to hand to every party.

    Raises
    ------
    ConfigError
        If the CA files exist and ``force`` is False, or the arguments are invalid.

    Examples
    --------
    >>> init_ca(Path("pki"))  # doctest: +SKIP
    PosixPath('pki/ca.crt')
    """
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable():
        raise ConfigError("CA name must be 1-64 printable characters")
    _check_days(days)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    refuse_existing([key_path, cert_path], force=force)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), private=True, force=force)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False, force=force)
    # A new CA starts with an empty register and revocation list, so the coordinator can name
    # the list from day one.
    start_register(directory)
    write_crl(directory, ca_cert=cert, ca_key=key, entries=[])
    return cert_path


def create_request(
    *,
    name: str,
    role: Role,
    out_dir: Path,
    hosts: Sequence[str] = (),
    force: bool = False,
) -> Path:
    """Make a key pair and a certificate signing request, on the machine that will use the key.

    Writes ``<name>.key`` (mode 0600; it never leaves this machine) and ``<name>.csr`` (send it to
    the CA holder) in ``out_dir``.

    Parameters
    ----------
    name
        Partner id, coordinator or operator name: ``[a-z0-9][a-z0-9_-]{0,62}``.
    role
        ``"node"``, ``"coordinator"`` or ``"operator"``.
    out_dir
        Folder for the two files; created if missing.
    hosts
        Coordinator only: DNS names and IP addresses nodes dial; default ``localhost`` and
        ``127.0.0.1``.
    force
        Replace an existing ``<name>.key``.

    Returns
    -------
    Path
        The CSR file.

    Raises
    ------
    ConfigError
        If the name, role or hosts are invalid, or the key exists and ``force`` is False.

    Examples
    --------
    >>> create_request(name="council", role="node", out_dir=Path("keys"))  # doctest: +SKIP
    PosixPath('keys/council.csr')
    """
    identity = Identity(name=check_name(name), role=check_role(role))
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    names += _host_names(identity.role, hosts)
    key_path, csr_path = out_dir / f"{name}.key", out_dir / f"{name}.csr"
    refuse_existing([key_path], force=force)
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), private=True, force=force)
    write_file(csr_path, csr.public_bytes(serialization.Encoding.PEM), private=False, force=True)
    return csr_path


def _requested_identity(
    csr: x509.CertificateSigningRequest, *, where: str
) -> tuple[Identity, list[HostName]]:
    """Check a CSR against the profile; return the identity and host names it may be issued."""
    if not csr.is_signature_valid:
        raise AuthError(
            f"{where} has an invalid signature; it was corrupted or altered after signing"
        )
    _check_key(csr.public_key(), where=where)
    cn = common_name(csr.subject)
    if cn is None:
        raise AuthError(f"{where} must have exactly one subject CN")
    where = f"{where} (CN {shown(cn)})"
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise AuthError(
            f"{where} has no subjectAltName with an '{URI_PREFIX}<role>:<name>' URI"
        ) from None
    except ValueError:  # cryptography >= 51 will not parse an empty or garbled SAN
        raise AuthError(
            f"{where} has a malformed subjectAltName; make a new one with `oda-fed pki request`"
        ) from None
    identities, hosts = [], []
    for general_name in san:
        if isinstance(general_name, x509.UniformResourceIdentifier):
            identity = parse_identity_uri(general_name.value)
            if identity is None:
                raise AuthError(
                    f"{where} asks for an unknown or malformed URI {shown(general_name.value)}"
                )
            identities.append(identity)
        elif isinstance(general_name, x509.DNSName | x509.IPAddress):
            hosts.append(general_name)
        else:
            raise AuthError(
                f"{where} asks for a {type(general_name).__name__} SAN, which is not allowed"
            )
    if len(identities) != 1:
        raise AuthError(f"{where} must ask for exactly one identity URI, found {len(identities)}")
    identity = identities[0]
    if identity.name != cn:
        raise AuthError(
            f"{where} asks for identity {identity} but its CN differs; the CN must equal the name "
            "in the URI. Make a new request with `oda-fed pki request`"
        )
    if hosts and identity.role != "coordinator":
        raise AuthError(
            f"{where} is for a {identity.role} but names hosts; only the coordinator may"
        )
    return identity, hosts


def _read_request(
    csr_path: Path,
) -> tuple[x509.CertificateSigningRequest, Identity, list[HostName]]:
    where = f"request {csr_path}"
    data = read_file(
        csr_path, what="certificate request", hint="make one with `oda-fed pki request`"
    )
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise ConfigError(f"{where} is not a PEM certificate signing request") from None
    identity, hosts = _requested_identity(csr, where=where)
    return csr, identity, hosts


def read_request(csr_path: Path) -> tuple[Identity, list[str]]:
    """The identity and host names a certificate request asks for, once it passes every check
    :func:`sign_request` makes of it: what the CA holder is asked to confirm before signing.

    Raises
    ------
    AuthError
        If the request fails a check.
    ConfigError
        If it cannot be read.
    """
    _, identity, hosts = _read_request(csr_path)
    return identity, [str(h.value) for h in hosts]


def sign_request(
    *,
    ca_dir: Path,
    csr_path: Path,
    out_path: Path | None = None,
    days: int = 825,
    replace: bool = False,
) -> Path:
    """Sign a certificate request with the partnership CA, after checking it.

    The certificate is recorded in the CA's register (:mod:`oda_fed.pki.register`). The CSR must
    be validly self-signed with an EC P-256 key, carry exactly one
    ``urn:oda-fed:<role>:<name>`` SAN URI whose name equals the subject CN, and name hosts only
    for a coordinator. The certificate is rebuilt from those checked values; nothing else the CSR
    asks for is copied. It never outlives the CA certificate.

    Parameters
    ----------
    ca_dir
        Folder holding ``ca.key`` and ``ca.crt``.
    csr_path
        The request from :func:`create_request`.
    out_path
        Where to write the certificate; default ``<name>.crt`` next to the CSR. An existing
        certificate there is replaced (certificates are public; renewal is routine).
    days
        Validity of the certificate.
    replace
        A node certificate replaces the valid one(s) this CA issued for the same partner: they
        are revoked (``superseded``) once it is signed. Without it, a second valid node
        certificate for a partner is refused: either could act for that partner.

    Returns
    -------
    Path
        The certificate file.

    Raises
    ------
    AuthError
        If the request fails any check.
    ConfigError
        If the CA or the request cannot be read, or the CA has a valid node certificate for the
        same partner and ``replace`` is False.

    Examples
    --------
    >>> sign_request(ca_dir=Path("pki"), csr_path=Path("incoming/police.csr"))  # doctest: +SKIP
    PosixPath('incoming/police.crt')
    """
    _check_days(days)
    ca_cert, ca_key = load_ca(ca_dir)
    csr, identity, hosts = _read_request(csr_path)
    replaced = _valid_for(ca_dir, identity)
    if replaced and not replace:
        serials = ", ".join(e.serial for e in replaced)
        raise ConfigError(
            f"this CA has already issued a valid {identity.role} certificate for "
            f"'{identity.name}' (serial {serials}); a second one could act for it too. If the "
            "new one replaces it, sign with --replace (the old one is then revoked as "
            "superseded; give the coordinator the new CRL)"
        )
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise ConfigError(
            f"the CA certificate in {ca_dir} has expired; make a new CA with `oda-fed pki init`"
        )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - _BACKDATE, ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ekus(identity.role), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri), *hosts]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = out_path if out_path is not None else csr_path.with_name(f"{identity.name}.crt")
    # Recorded before it is handed out, so no certificate of this CA is missing from the register.
    record(ca_dir, cert)
    for old in replaced:
        revoke(ca_dir, old.serial, reason="superseded")
    return write_file(out, cert.public_bytes(serialization.Encoding.PEM), private=False, force=True)


def _valid_for(ca_dir: Path, identity: Identity) -> list[Registered]:
    """The valid node certificates in ``ca_dir``'s register for ``identity``'s partner name.

    Only a node's certificate acts as a partner (its uploads, its products), so only nodes are
    held to one valid certificate each; operators and the coordinator may hold several."""
    if identity.role != "node":
        return []
    return [
        e
        for e in read_register(ca_dir)
        if e.role == identity.role and e.name == identity.name and e.status() == "valid"
    ]


def issue(
    *,
    ca_dir: Path,
    name: str,
    role: Role,
    out_dir: Path,
    hosts: Sequence[str] = (),
    days: int = 825,
    force: bool = False,
    replace: bool = False,
) -> tuple[Path, Path]:
    """Make a key and a signed certificate in one step (for the demo, tests and the CA's own host).

    Equivalent to :func:`create_request` followed by :func:`sign_request`; the intermediate CSR is
    removed. In a real partnership prefer the two-step flow so the key never leaves its machine.

    Returns
    -------
    tuple[Path, Path]
        ``(out_dir / "<name>.crt", out_dir / "<name>.key")``.

    Raises
    ------
    ConfigError
        As for :func:`create_request` and :func:`sign_request`; also if ``<name>.crt`` exists and
        ``force`` is False.

    Examples
    --------
    >>> issue(ca_dir=Path("ca"), name="council", role="node", out_dir=Path("pki"))  # doctest: +SKIP
    (PosixPath('pki/council.crt'), PosixPath('pki/council.key'))
    """
    _check_days(days)
    cert_path = out_dir / f"{check_name(name)}.crt"
    refuse_existing([cert_path], force=force)
    load_ca(ca_dir)  # fail on a missing CA before making a key that could not be signed
    csr_path = create_request(name=name, role=role, out_dir=out_dir, hosts=hosts, force=force)
    try:
        sign_request(
            ca_dir=ca_dir, csr_path=csr_path, out_path=cert_path, days=days, replace=replace
        )
    finally:
        csr_path.unlink(missing_ok=True)
    return cert_path, out_dir / f"{name}.key"
