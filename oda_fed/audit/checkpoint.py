"""Signed checkpoints of an audit log, and their cosignatures by the other parties.

A checkpoint is a tree head (size and Merkle root, :mod:`oda_fed.audit.merkle`) of one party's
log, signed by that party with the private key of its partnership certificate (ECDSA P-256).
At each round's end the parties witness each other: a node cosigns the coordinator's checkpoint
and the coordinator cosigns the node's, after checking that it extends the last one they
witnessed. Each keeps the other's cosigned checkpoint in its own checkpoint file
(``<log>.checkpoints.jsonl``), so a party that later truncates, deletes or rewrites its log, even
consistently, is caught by a checkpoint it signed and cannot take back.

Each signature carries the signer's certificate, so a DPO can check every checkpoint offline;
``oda-fed audit verify --ca ca.crt`` also checks that each certificate was issued by the
partnership's CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from oda_fed.audit.entry import canonical_json, utc_now
from oda_fed.durable import fsync_dir
from oda_fed.errors import AuditError, AuthError
from oda_fed.pki.identity import NAME_PATTERN, identity_from_cert

__all__ = [
    "Checkpoint",
    "CheckpointFile",
    "Signature",
    "SignedCheckpoint",
    "Signer",
    "checkpoint_path",
    "read_checkpoints",
]

CHECKPOINT_VERSION = 1
# Domain separation: a checkpoint signature can never be replayed as a signature on anything else.
_CONTEXT = b"oda-fed audit checkpoint v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PROJECT = re.compile(r"sha256:[0-9a-f]{64}")
_SUFFIX = ".checkpoints.jsonl"
MAX_PEM = 8192


def checkpoint_path(log_path: Path) -> Path:
    """Where a log's checkpoints are kept: ``council.jsonl`` → ``council.checkpoints.jsonl``."""
    return log_path.with_name(log_path.stem + _SUFFIX)


def is_checkpoint_file(path: Path) -> bool:
    """Whether ``path`` holds checkpoints rather than log entries."""
    return path.name.endswith(_SUFFIX)


@dataclass(frozen=True)
class Checkpoint:
    """A tree head of one party's log: its first ``size`` entries have Merkle root ``root``.

    Examples
    --------
    >>> Checkpoint(party="council", project="sha256:" + "0" * 64, size=0,
    ...            root=EMPTY_ROOT.hex(), time=utc_now()).size  # doctest: +SKIP
    0
    """

    party: str
    project: str
    size: int
    root: str
    time: str
    round: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": CHECKPOINT_VERSION,
            "party": self.party,
            "project": self.project,
            "size": self.size,
            "root": self.root,
            "time": self.time,
            "round": self.round,
        }

    def signed_bytes(self) -> bytes:
        """What every signature on this checkpoint signs."""
        return _CONTEXT + canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: object) -> Checkpoint:
        if not isinstance(obj, Mapping) or obj.get("v") != CHECKPOINT_VERSION:
            raise AuditError("not a version-1 checkpoint")
        party, project, size, root = (
            obj.get("party"),
            obj.get("project"),
            obj.get("size"),
            obj.get("root"),
        )
        time, round_id = obj.get("time"), obj.get("round")
        if not (isinstance(party, str) and NAME_PATTERN.fullmatch(party)):
            raise AuditError("checkpoint 'party' is not a party name")
        if not (isinstance(project, str) and _PROJECT.fullmatch(project)):
            raise AuditError("checkpoint 'project' is not a fingerprint")
        if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
            raise AuditError("checkpoint 'size' is not a non-negative integer")
        if not (isinstance(root, str) and _HEX64.fullmatch(root)):
            raise AuditError("checkpoint 'root' is not 64 hex digits")
        if not isinstance(time, str) or len(time) > 40:
            raise AuditError("checkpoint 'time' is not a time")
        if round_id is not None and (not isinstance(round_id, str) or len(round_id) > 128):
            raise AuditError("checkpoint 'round' is not a round id")
        return cls(party, project, size, root, time, round_id)


@dataclass(frozen=True)
class Signature:
    """One party's signature on a checkpoint, with the certificate that checks it."""

    signer: str
    certificate: str  # PEM
    signature: str  # base64 of the DER ECDSA signature

    def to_json(self) -> dict[str, str]:
        return {"signer": self.signer, "certificate": self.certificate, "signature": self.signature}

    @classmethod
    def from_json(cls, obj: object) -> Signature:
        if not isinstance(obj, Mapping):
            raise AuditError("a signature must be an object")
        signer, cert, sig = obj.get("signer"), obj.get("certificate"), obj.get("signature")
        if not (isinstance(signer, str) and NAME_PATTERN.fullmatch(signer)):
            raise AuditError("signature 'signer' is not a party name")
        if (
            not isinstance(cert, str)
            or len(cert) > MAX_PEM
            or not isinstance(sig, str)
            or len(sig) > 256
        ):
            raise AuditError("signature has no usable certificate or signature")
        return cls(signer, cert, sig)

    def problem(self, checkpoint: Checkpoint, *, ca: x509.Certificate | None = None) -> str | None:
        """Why this signature does not hold for ``checkpoint``, or None if it does.

        Checks that the certificate names the signer (with the coordinator role for
        ``coordinator`` and the node role for a partner), that the signature verifies, that the
        checkpoint's time lies within the certificate's validity and, with ``ca``, that the
        partnership CA issued the certificate.
        """
        who = f"{self.signer}'s signature"
        try:
            cert = x509.load_pem_x509_certificate(self.certificate.encode("ascii"))
            identity = identity_from_cert(cert)
        except (ValueError, UnicodeEncodeError, AuthError):
            return f"{who} carries no usable partnership certificate"
        if identity.name != self.signer or identity.role not in _roles_for(self.signer):
            return (
                f"{who} comes with a {identity.role} certificate for {identity.name!r}, not "
                f"{self.signer!r}'s"
            )
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return f"{who} is made with a key that is not an EC key"
        try:
            key.verify(base64.b64decode(self.signature, validate=True), checkpoint.signed_bytes(),
                       ec.ECDSA(hashes.SHA256()))  # fmt: skip
        except (InvalidSignature, ValueError):
            return f"{who} does not verify: the checkpoint was altered after it was signed"
        when = _parse_time(checkpoint.time)
        if when is None or not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return f"{who} is dated {checkpoint.time[:40]}, outside its certificate's validity"
        if ca is not None:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                return f"{who} is made with a certificate the partnership CA did not issue"
        return None


def _roles_for(name: str) -> tuple[str, ...]:
    return ("coordinator",) if name == "coordinator" else ("node",)


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint and the signatures on it: its owner's, then any witnesses'."""

    checkpoint: Checkpoint
    signatures: tuple[Signature, ...] = field(default_factory=tuple)

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(s.signer for s in self.signatures)

    def with_signature(self, signature: Signature) -> SignedCheckpoint:
        """This checkpoint with one more signature (one per signer)."""
        if signature.signer in self.signers:
            return self
        return replace(self, signatures=(*self.signatures, signature))

    def problems(self, *, ca: x509.Certificate | None = None) -> list[str]:
        """What is wrong with the signatures; empty when the owner's and every other one hold."""
        problems = [p for s in self.signatures if (p := s.problem(self.checkpoint, ca=ca))]
        if self.checkpoint.party not in self.signers:
            problems.append(f"{self.checkpoint.party}'s checkpoint lacks its own signature")
        return problems

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.to_json(),
            "signatures": [s.to_json() for s in self.signatures],
        }

    def line(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: object) -> SignedCheckpoint:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("signatures"), list):
            raise AuditError("not a signed checkpoint")
        signatures = obj["signatures"]
        if len(signatures) > 16:
            raise AuditError("a checkpoint carries at most 16 signatures")
        return cls(
            Checkpoint.from_json(obj.get("checkpoint")),
            tuple(Signature.from_json(s) for s in signatures),
        )


class Signer:
    """A party's partnership key and certificate, for signing checkpoints.

    Examples
    --------
    >>> signer = Signer.from_files(Path("council.crt"), Path("council.key"))  # doctest: +SKIP
    >>> signer.sign(checkpoint).signer  # doctest: +SKIP
    'council'
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate_pem: str) -> None:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
        self.name = identity_from_cert(cert).name
        self._key = key
        self._pem = certificate_pem

    @classmethod
    def from_files(cls, cert: Path, key: Path) -> Signer:
        from oda_fed.pki.trust import load_certificate, load_private_key

        certificate = load_certificate(cert)
        private, _ = load_private_key(key, what="private key")
        from cryptography.hazmat.primitives import serialization

        pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return cls(private, pem)

    def sign(self, checkpoint: Checkpoint) -> Signature:
        der = self._key.sign(checkpoint.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        return Signature(self.name, self._pem, base64.b64encode(der).decode("ascii"))


def read_checkpoints(path: Path) -> tuple[list[SignedCheckpoint], list[str]]:
    """Every signed checkpoint in a checkpoint file, and a problem per line that is not one.

    A missing file holds none.
    """
    found: list[SignedCheckpoint] = []
    problems: list[str] = []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return found, problems
    except OSError as exc:
        return found, [f"{path}: cannot read: {exc.strerror or exc}"]
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                found.append(SignedCheckpoint.from_json(json.loads(raw)))
            except (ValueError, AuditError, RecursionError) as exc:
                problems.append(f"{path} line {number}: not a signed checkpoint ({exc})")
    return found, problems


class CheckpointFile:
    """One party's checkpoint file: its own cosigned checkpoints and those it witnessed.

    Read once, then kept in memory as it is appended to (one writer per file, like the log).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._held: list[SignedCheckpoint] | None = None

    def _all(self) -> list[SignedCheckpoint]:
        if self._held is None:
            self._held = read_checkpoints(self.path)[0]
        return self._held

    def append(self, signed: SignedCheckpoint) -> None:
        """Add one signed checkpoint, durably."""
        line = signed.line() + b"\n"
        with self._lock:
            held = self._all()
            existed = self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if not existed:
                fsync_dir(self.path.parent)
            held.append(signed)

    def __iter__(self) -> Iterator[SignedCheckpoint]:
        with self._lock:
            return iter(list(self._all()))

    def last(self, *, party: str, cosigned_by: str | None = None) -> SignedCheckpoint | None:
        """The largest checkpoint of ``party`` held here (with ``cosigned_by``'s signature on it)."""
        mine = [
            c
            for c in self
            if c.checkpoint.party == party and (cosigned_by is None or cosigned_by in c.signers)
        ]
        return max(mine, key=lambda c: c.checkpoint.size, default=None)

    def for_round(self, *, party: str, round_id: str) -> SignedCheckpoint | None:
        """``party``'s checkpoint for a round, as its owner signed it, if one was made."""
        for c in self:
            if c.checkpoint.party == party and c.checkpoint.round == round_id:
                own = tuple(s for s in c.signatures if s.signer == party)
                return SignedCheckpoint(c.checkpoint, own)
        return None


def new_checkpoint(
    *, party: str, project: str, size: int, root: bytes, round_id: str | None
) -> Checkpoint:
    """A checkpoint of a log as it stands now."""
    return Checkpoint(party=party, project=project, size=size, root=root.hex(), time=utc_now(),
                      round=round_id)  # fmt: skip
