"""Agreeing the linkage secret among the nodes, through a relay (the coordinator) that never learns it.

- Each node has an X25519 **agreement key**. It publishes the public half signed with the key of
  its TLS certificate, over the project fingerprint and its partner id (:func:`sign_key`). Every
  node checks a peer's key with :func:`verify_key` against the partnership CA, so a relay that
  put in a key of its own would need a node certificate for that partner, which only the CA can
  issue.
- The project's dealer makes a secret and wraps it for each partner, itself included
  (:func:`wrap`): X25519 between its key and the partner's, HKDF-SHA256 with a fresh salt, then
  ChaCha20-Poly1305 with associated data binding the project, sender, recipient, key version and
  both public keys (:class:`WrapContext`). The relay sees ciphertext only; a blob moved to another
  partner, project or version does not open.

The private key lives in one file, mode 0600, on the node. Nothing here touches the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oda_fed.errors import AuthError, ConfigError
from oda_fed.pki.files import read_file, write_file
from oda_fed.pki.identity import identity_from_cert, shown
from oda_fed.pki.trust import load_certs, verify_issued_by

#: The agreement key's file in a node's keys folder.
AGREEMENT_KEY_FILE = "agreement.key"
PUBLIC_KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
_STATEMENT = b"oda-fed agreement key v1\0"
_WRAP = b"oda-fed secret wrap v1\0"


def agreement_key(path: Path, *, create: bool = True) -> X25519PrivateKey:
    """The node's X25519 agreement key in ``path``; made (mode 0600) if missing and ``create``.

    Raises
    ------
    ConfigError
        If the file is missing (and not ``create``), unreadable or not an X25519 key.

    Examples
    --------
    >>> key = agreement_key(Path("state/keys/agreement.key"))  # doctest: +SKIP
    """
    if not path.exists() and create:
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_file(path, pem, private=True, force=False)
        return key
    hint = "the node makes it on its first `oda-fed node run` or `oda-fed node keys agree`"
    data = read_file(path, what="agreement key", hint=hint)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"agreement key {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise ConfigError(f"agreement key {path} is not an X25519 key")
    return key


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32 bytes of ``key``'s public half, as published."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _statement(*, fingerprint: str, partner: str, public_key: bytes) -> bytes:
    return _STATEMENT + fingerprint.encode() + b"\0" + partner.encode() + b"\0" + public_key


def sign_key(
    tls_key: ec.EllipticCurvePrivateKey, *, fingerprint: str, partner: str, public_key: bytes
) -> bytes:
    """Sign ``partner``'s agreement key for the project with the node's TLS private key."""
    message = _statement(fingerprint=fingerprint, partner=partner, public_key=public_key)
    return tls_key.sign(message, ec.ECDSA(hashes.SHA256()))


def verify_key(
    *,
    ca: x509.Certificate | None,
    fingerprint: str,
    partner: str,
    public_key: bytes,
    certificate: bytes,
    signature: bytes,
) -> None:
    """Check that ``public_key`` is ``partner``'s agreement key for the project.

    The certificate must be issued by the partnership CA ``ca`` to the node ``partner`` and be
    valid now, and the signature must be its key's over the statement :func:`sign_key` signs.
    ``ca`` is None only where TLS has verified the certificate already (the coordinator, for the
    caller's own certificate).

    Raises
    ------
    AuthError
        If any of that fails: the key may have been put in by someone other than the partner.
    """
    where = f"the agreement key published for {shown(partner)}"
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise AuthError(f"{where} is {len(public_key)} bytes, not {PUBLIC_KEY_BYTES}")
    try:
        cert = load_certs(certificate, path=Path("(published)"), what="certificate")[0]
    except ConfigError:
        raise AuthError(f"{where} carries no PEM certificate") from None
    if ca is not None:
        verify_issued_by(ca, cert)
    holder = identity_from_cert(cert)
    if holder.role != "node" or holder.name != partner:
        raise AuthError(
            f"{where} is signed with the certificate of {holder}, not of node:{partner}; "
            "someone other than the partner put it there. Agree nothing: tell the partners and "
            "the coordinator's operator"
        )
    signer = cert.public_key()
    message = _statement(fingerprint=fingerprint, partner=partner, public_key=public_key)
    try:
        if not isinstance(signer, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        signer.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AuthError(
            f"{where} does not carry {partner}'s signature for this project; someone other than "
            "the partner put it there. Agree nothing: tell the partners and the coordinator's "
            "operator"
        ) from None


@dataclass(frozen=True)
class WrapContext:
    """What a wrapped secret is bound to: it opens only for this project, sender, recipient,
    key version and pair of public keys."""

    fingerprint: str
    version: int
    sender: str
    recipient: str
    sender_key: bytes
    recipient_key: bytes

    def associated_data(self) -> bytes:
        names = b"\0".join(s.encode() for s in (self.fingerprint, self.sender, self.recipient))
        return (
            _WRAP + names + b"\0" + self.version.to_bytes(4, "big")
            + self.sender_key + self.recipient_key
        )  # fmt: skip


@dataclass(frozen=True)
class Wrapped:
    salt: bytes
    nonce: bytes
    ciphertext: bytes


def _aead(
    own: X25519PrivateKey, peer: bytes, salt: bytes, context: WrapContext
) -> ChaCha20Poly1305:
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:
        raise AuthError("a published agreement key is not a usable X25519 key") from None
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=context.associated_data()
    ).derive(shared)
    return ChaCha20Poly1305(key)


def wrap(secret: bytes, *, own: X25519PrivateKey, context: WrapContext) -> Wrapped:
    """Wrap ``secret`` from the sender (``own`` is its key) for ``context.recipient``."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    aead = _aead(own, context.recipient_key, salt, context)
    return Wrapped(salt, nonce, aead.encrypt(nonce, secret, context.associated_data()))


def unwrap(wrapped: Wrapped, *, own: X25519PrivateKey, context: WrapContext) -> bytes:
    """Open a secret wrapped for the recipient (``own`` is its key).

    Raises
    ------
    AuthError
        If it does not open: made with other keys, for another partner, project or version, or
        altered on the way.
    """
    if len(wrapped.salt) != SALT_BYTES or len(wrapped.nonce) != NONCE_BYTES:
        raise AuthError("the wrapped secret is malformed (salt or nonce of the wrong length)")
    aead = _aead(own, context.sender_key, wrapped.salt, context)
    try:
        return aead.decrypt(wrapped.nonce, wrapped.ciphertext, context.associated_data())
    except InvalidTag:
        raise AuthError(
            f"the secret wrapped by {shown(context.sender)} for key version {context.version} "
            "does not open with this node's agreement key: it was made for another key, partner "
            "or project, or altered on the way"
        ) from None
