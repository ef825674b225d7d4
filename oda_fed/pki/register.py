"""The CA's certificate register and its revocation list.

Every certificate the partnership CA signs is recorded in ``register.json`` next to ``ca.key``:
serial, role, name, SHA-256 fingerprint, validity and status. :func:`revoke` marks one revoked
and rewrites ``ca.crl``, an X.509 CRL signed by the CA, which the coordinator names in its
configuration (``revocation_list``) and enforces on every call (:class:`RevocationList`).

The register holds certificates, never keys: it is public, like the certificates themselves.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from oda_fed.durable import write_atomic
from oda_fed.errors import ConfigError
from oda_fed.pki.identity import identity_from_cert, shown
from oda_fed.pki.trust import load_certificate

REGISTER_FILE = "register.json"
CRL_FILE = "ca.crl"
_SERIAL = re.compile(r"(?:0x)?([0-9a-f]{1,40})")
_REASON_MAX = 200
#: RFC 5280 reason codes, by the words a register reason starts with (``key-compromise``,
#: ``Key compromise: laptop stolen``, ``keyCompromise`` all name the first).
REASON_CODES: dict[str, x509.ReasonFlags] = {
    "key-compromise": x509.ReasonFlags.key_compromise,
    "ca-compromise": x509.ReasonFlags.ca_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "privilege-withdrawn": x509.ReasonFlags.privilege_withdrawn,
}

Status = Literal["valid", "expired", "revoked"]

log = logging.getLogger(__name__)


def serial_hex(serial: int) -> str:
    """A certificate serial as the register and ``pki list`` show it: lower-case hex."""
    return format(serial, "x")


def cert_fingerprint(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's DER encoding."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class Registered:
    """One certificate in the register."""

    serial: str
    role: str
    name: str
    fingerprint: str
    not_before: str
    not_after: str
    revoked_at: str = ""
    reason: str = ""

    def status(self, now: dt.datetime | None = None) -> Status:
        if self.revoked_at:
            return "revoked"
        if dt.datetime.fromisoformat(self.not_after) <= (now or dt.datetime.now(dt.UTC)):
            return "expired"
        return "valid"

    @classmethod
    def of(cls, cert: x509.Certificate) -> Registered:
        ident = identity_from_cert(cert)
        return cls(
            serial=serial_hex(cert.serial_number),
            role=ident.role,
            name=ident.name,
            fingerprint=cert_fingerprint(cert),
            not_before=cert.not_valid_before_utc.isoformat(timespec="seconds"),
            not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
        )


def read_register(ca_dir: Path) -> list[Registered]:
    """The certificates ``ca_dir``'s CA has signed, oldest first (none before it kept a register)."""
    path = ca_dir / REGISTER_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [Registered(**entry) for entry in doc["certificates"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a certificate register ({exc}); restore it from a backup of the CA"
        ) from None


def _write_register(ca_dir: Path, entries: Iterable[Registered]) -> None:
    doc = {"certificates": [asdict(e) for e in entries]}
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    write_atomic(ca_dir / REGISTER_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def start_register(ca_dir: Path) -> None:
    """An empty register, for a new CA."""
    _write_register(ca_dir, [])


def record(ca_dir: Path, cert: x509.Certificate) -> Registered:
    """Add a certificate the CA has just signed to its register."""
    entry = Registered.of(cert)
    entries = [e for e in read_register(ca_dir) if e.serial != entry.serial]
    _write_register(ca_dir, [*entries, entry])
    return entry


def _find(entries: list[Registered], which: str) -> Registered:
    """The one unrevoked entry ``which`` names (a serial in hex, or a name)."""
    wanted = which.strip().lower().replace(":", "")
    by_serial = [e for e in entries if (m := _SERIAL.fullmatch(wanted)) and e.serial == m[1]]
    if by_serial:
        return by_serial[0]
    by_name = [e for e in entries if e.name == which and not e.revoked_at]
    if len(by_name) == 1:
        return by_name[0]
    if not by_name:
        raise ConfigError(
            f"the register names no certificate with serial or name {shown(which)}; "
            "see `oda-fed pki list`, or pass the certificate file itself"
        )
    serials = ", ".join(f"{e.serial} ({e.role}, {e.status()})" for e in by_name)
    raise ConfigError(
        f"{len(by_name)} unrevoked certificates are issued to {shown(which)}: {serials}. "
        "Revoke by serial, so that the one in use by the honest party stays valid"
    )


def revoke(ca_dir: Path, which: str, *, reason: str, now: dt.datetime | None = None) -> Registered:
    """Mark a certificate revoked in the register and rewrite the CA's CRL.

    Parameters
    ----------
    ca_dir
        The CA folder (``ca.key``, ``ca.crt``, ``register.json``).
    which
        A serial (hex, as ``pki list`` shows it), the name of the one unrevoked certificate with
        that name, or the path of a certificate file the CA issued (one from before the register
        too).
    reason
        Why, for the register; not personal data. When it starts with one of
        :data:`REASON_CODES` (e.g. ``key-compromise: laptop stolen``), the CRL entry carries that
        RFC 5280 reason code.

    Returns
    -------
    Registered
        The revoked entry.

    Raises
    ------
    ConfigError
        If nothing or more than one certificate matches, it is revoked already, the reason is
        empty, or the CA cannot be read.
    """
    from oda_fed.pki.ca import load_ca

    reason = " ".join(reason.split())
    if not reason or len(reason) > _REASON_MAX or not reason.isprintable():
        raise ConfigError(
            f"give a reason for the revocation (1-{_REASON_MAX} printable characters)"
        )
    ca_cert, ca_key = load_ca(ca_dir)
    entries = read_register(ca_dir)
    path = Path(which)
    if path.suffix in (".crt", ".pem") and path.is_file():
        cert = load_certificate(path)
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigError(f"{path} was not issued by the CA in {ca_dir}") from None
        found = Registered.of(cert)
        known = {e.serial: e for e in entries}
        found = known.get(found.serial, found)
        if found.serial not in known:
            entries.append(found)
    else:
        found = _find(entries, which)
    if found.revoked_at:
        raise ConfigError(
            f"certificate {found.serial} ({found.role} '{found.name}') was revoked already, "
            f"on {found.revoked_at}"
        )
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    revoked = replace(found, revoked_at=when, reason=reason)
    entries = [revoked if e.serial == found.serial else e for e in entries]
    _write_register(ca_dir, entries)
    write_crl(ca_dir, ca_cert=ca_cert, ca_key=ca_key, entries=entries)
    return revoked


def reason_code(reason: str) -> x509.ReasonFlags:
    """The RFC 5280 reason code a register reason names by its first words, else
    ``unspecified``.

    Examples
    --------
    >>> reason_code("key compromise: laptop stolen"), reason_code("keyCompromise")
    (<ReasonFlags.key_compromise: 'keyCompromise'>, <ReasonFlags.key_compromise: 'keyCompromise'>)
    >>> reason_code("left the partnership")
    <ReasonFlags.unspecified: 'unspecified'>
    """
    words = re.findall(r"[a-z0-9]+", re.sub(r"(?<=[a-z])(?=[A-Z])", " ", reason).lower())
    for name, code in REASON_CODES.items():
        named = name.split("-")
        if words[: len(named)] == named:
            return code
    return x509.ReasonFlags.unspecified


def write_crl(
    ca_dir: Path,
    *,
    ca_cert: x509.Certificate | None = None,
    ca_key: ec.EllipticCurvePrivateKey | None = None,
    entries: list[Registered] | None = None,
) -> Path:
    """(Re)write ``ca_dir/ca.crl`` from the register: every revoked certificate, signed by the CA.

    Its next update is the CA certificate's expiry: a revocation is for good, so an old list is
    never less safe to enforce than none. Each entry carries the reason code its register reason
    names (:func:`reason_code`), so that a relying party can tell a compromised key from a
    replaced one; none when it names none, as RFC 5280 (5.3.1) asks instead of ``unspecified``.
    """
    if ca_cert is None or ca_key is None:
        from oda_fed.pki.ca import load_ca

        ca_cert, ca_key = load_ca(ca_dir)
    entries = read_register(ca_dir) if entries is None else entries
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(max(ca_cert.not_valid_after_utc, now + dt.timedelta(days=1)))
    )
    for e in entries:
        if not e.revoked_at:
            continue
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(e.serial, 16))
            .revocation_date(dt.datetime.fromisoformat(e.revoked_at))
        )
        if (code := reason_code(e.reason)) is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(code), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    crl = builder.sign(ca_key, hashes.SHA256())
    pem = crl.public_bytes(serialization.Encoding.PEM)
    return write_atomic(ca_dir / CRL_FILE, lambda tmp: tmp.write_bytes(pem))


def load_crl(path: Path, *, ca: x509.Certificate) -> frozenset[int]:
    """The serials a CRL file revokes, once it is shown to be signed by the partnership CA.

    Raises
    ------
    ConfigError
        If the file is missing, not a CRL, or not signed by ``ca``.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: revocation list not found; copy ca.crl from the CA folder (`oda-fed pki "
            "init` writes it, `oda-fed pki revoke` and `oda-fed pki crl` rewrite it)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the revocation list ({exc.strerror})") from None
    try:
        crl = (
            x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        )
    except ValueError:
        raise ConfigError(f"{path}: not an X.509 certificate revocation list") from None
    public = ca.public_key()
    if crl.issuer != ca.subject or not (
        isinstance(public, ec.EllipticCurvePublicKey) and crl.is_signature_valid(public)
    ):
        raise ConfigError(
            f"{path}: the revocation list is not signed by the partnership CA "
            f"({ca.subject.rfc4514_string()}); copy ca.crl from that CA's folder"
        )
    return frozenset(r.serial_number for r in crl)


class RevocationList:
    """The serials the partnership CA has revoked, read from its CRL and read again when the
    file changes (:meth:`refresh`), so a revocation takes effect without a restart.

    A changed file that cannot be read or fails its signature check leaves the list as it was,
    with an error logged: a broken copy never un-revokes anything.
    """

    def __init__(self, path: Path, *, ca: x509.Certificate) -> None:
        self.path = path
        self._ca = ca
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self._serials = load_crl(path, ca=ca)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def refresh(self, *, force: bool = False) -> None:
        """Read the file again if it changed since it was last read (or ``force``)."""
        stamp = self._stamp()
        with self._lock:
            if stamp == self._seen and not force:
                return
            self._seen = stamp
            try:
                serials = load_crl(self.path, ca=self._ca)
            except ConfigError as exc:
                log.error("revocation list not reloaded, the last one stays in force: %s", exc)
                return
            added = serials - self._serials
            self._serials = self._serials | serials
        if added:
            log.warning("revocation list reloaded: %d more certificate(s) revoked", len(added))

    @property
    def serials(self) -> frozenset[int]:
        """Every revoked serial, as of the file now."""
        self.refresh()
        return self._serials

    def revoked(self, serial: int) -> bool:
        """Whether the certificate with ``serial`` is revoked, as of the file now."""
        return serial in self.serials


def watch(
    revocations: RevocationList,
    on_revoked: Callable[[frozenset[int]], None],
    *,
    stop: threading.Event,
    every: float = 2.0,
) -> threading.Thread:
    """Poll the CRL every ``every`` seconds and call ``on_revoked`` with newly revoked serials,
    so a live session of a revoked certificate ends without waiting for its next call."""

    def loop() -> None:
        seen = revocations.serials
        while not stop.wait(every):
            now = revocations.serials
            if now != seen:
                on_revoked(now - seen)
                seen = now

    thread = threading.Thread(target=loop, name="revocations", daemon=True)
    thread.start()
    return thread
