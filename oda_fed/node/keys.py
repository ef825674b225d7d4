"""The node's side of agreeing the linkage secret through the coordinator's key relay.

A node publishes its agreement key, signed with its certificate's key. The project's dealer (its
first partner) waits until every partner has published one, checks each against the partnership
CA, makes a secret and wraps it for every partner, itself included. Each node then fetches its own
wrapped secret, checks that it comes from the dealer's certified key, opens it, and keeps it
owner-only in its keys folder, one file per key version: ``linkage-<project>-v<N>.secret``.

What crosses is logged on both sides: ``agreement_key`` and ``wrapped_secrets`` out,
``wrapped_secret`` in. A relayed key or wrapped secret the node refuses is logged as
``refused:agreement``. The directory of public keys is a status answer and is not logged, as an
upload receipt is not.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import grpc

from oda_fed.config import LoadedProject, NodeConfig
from oda_fed.durable import private_dir
from oda_fed.errors import AuthError, ConfigError, ProtocolError
from oda_fed.pki.agreement import (
    AGREEMENT_KEY_FILE,
    WrapContext,
    Wrapped,
    agreement_key,
    public_bytes,
    sign_key,
    unwrap,
    verify_key,
    wrap,
)
from oda_fed.pki.secret import SECRET_BYTES, key_check, read_secret, write_secret
from oda_fed.pki.trust import load_certificate, load_private_key
from oda_fed.transport import serde
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.messages import (
    AgreementKey,
    KeyDirectory,
    KeysRequest,
    SecretRequest,
    WrappedSecret,
    WrappedSecrets,
)
from oda_fed.transport.protocol import COORDINATOR, AuditKind, cut

log = logging.getLogger(__name__)

_SECRET_FILE = re.compile(r"linkage-([0-9a-f]{16})-v([0-9]+)\.secret")


class KeysPending(Exception):
    """The secret cannot be agreed yet (a partner has not published its key, or the dealer has
    not wrapped the secret): not an error; the node waits and asks again."""


@dataclass
class NodeKeys:
    """A node's agreement key, the agreed secrets it holds, and its calls to the key relay."""

    config: NodeConfig
    loaded: LoadedProject
    crossings: Crossings

    @property
    def partner(self) -> str:
        return self.config.partner

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint

    @property
    def dealer(self) -> str:
        return self.loaded.project.dealer

    def secret_path(self, version: int) -> Path:
        """Where key ``version`` of this project's secret is kept."""
        project = self.fingerprint.rpartition(":")[2][:16]
        return self.config.keys_dir / f"linkage-{project}-v{version}.secret"

    def held(self) -> tuple[int, bytes] | None:
        """The latest key version of this project this node holds, and its secret; None if none."""
        project = self.fingerprint.rpartition(":")[2][:16]
        versions = [
            int(m.group(2))
            for p in (self.config.keys_dir.glob("linkage-*.secret"))
            if (m := _SECRET_FILE.fullmatch(p.name)) and m.group(1) == project
        ]
        if not versions:
            return None
        version = max(versions)
        return version, read_secret(self.secret_path(version))

    @cached_property
    def _own(self) -> Any:
        # The folder too is owner-only: its listing says which key versions this node holds.
        return agreement_key(private_dir(self.config.keys_dir) / AGREEMENT_KEY_FILE)

    @cached_property
    def _ca(self) -> Any:
        return load_certificate(self.config.tls.ca, what="CA certificate")

    def _signed_key(self) -> AgreementKey:
        tls_key, _ = load_private_key(self.config.tls.key, what="private key")
        public = public_bytes(self._own)
        return AgreementKey(
            project_fingerprint=self.fingerprint,
            partner_id=self.partner,
            public_key=public,
            certificate=self.config.tls.cert.read_bytes(),
            signature=sign_key(
                tls_key, fingerprint=self.fingerprint, partner=self.partner, public_key=public
            ),
        )

    # --- the steps ------------------------------------------------------------------------------

    def agree(self, stub: Any) -> tuple[int, bytes]:
        """The latest agreed key version and its secret: publish this node's key if the relay
        lacks it, have the dealer wrap a first secret, fetch and keep this node's.

        Raises
        ------
        KeysPending
            While a partner's key or the dealer's secret is missing: ask again later.
        AuthError
            If a relayed key or wrapped secret fails its checks (logged as ``refused:agreement``).
        """
        directory = self._directory(stub)
        published = directory.key_of(self.partner)
        if published is None or (published.public_key, published.certificate) != (
            public_bytes(self._own), self.config.tls.cert.read_bytes()
        ):  # fmt: skip
            directory = self._publish(stub, self._signed_key())
        version = directory.key_version
        if version == 0:
            if self.partner != self.dealer:
                raise KeysPending(
                    f"waiting for '{self.dealer}', the project's first partner, to make and wrap "
                    "the linkage secret"
                )
            self.deal(stub, directory, version=1)
            version = 1
        return version, self._take(stub, version)

    def rotate(self, stub: Any) -> int:
        """Make, wrap and publish the next key version (the dealer only); its number.

        Raises
        ------
        ConfigError
            If this node is not the dealer, the project keeps entity ids stable, or no secret
            has been agreed yet.
        """
        project = self.loaded.project
        if self.partner != self.dealer:
            raise ConfigError(
                f"only '{self.dealer}', the project's first partner, rotates the linkage secret"
            )
        if project.linkage.stable_entity_ids:
            raise ConfigError(
                f"project '{project.name}' keeps entity ids stable: a new secret would change "
                "every entity id. Amend and sign the project again instead (a new project "
                "starts a new linked index and a new secret)"
            )
        directory = self._directory(stub)
        if directory.key_version == 0:
            raise ConfigError("no secret has been agreed yet: run `oda-fed node keys agree` first")
        version = directory.key_version + 1
        self.deal(stub, directory, version=version)
        self._take(stub, version)
        return version

    def deal(self, stub: Any, directory: KeyDirectory, *, version: int) -> None:
        """Make a new secret and publish it wrapped for every partner (the dealer's part)."""
        partners = self.loaded.project.partner_ids
        missing = [p for p in partners if directory.key_of(p) is None]
        if missing:
            raise KeysPending(
                f"waiting for {', '.join(missing)} to publish their agreement keys (their nodes "
                "publish one when they first run)"
            )
        keys = {p: self._checked(directory.key_of(p)) for p in partners}  # type: ignore[arg-type]
        secret = secrets.token_bytes(SECRET_BYTES)
        own = public_bytes(self._own)
        wrapped = [
            _wrapped(secret, own=self._own, context=self._context(
                version, partner, sender_key=own, recipient_key=keys[partner]))
            for partner in partners
        ]  # fmt: skip
        new = WrappedSecrets(
            project_fingerprint=self.fingerprint,
            key_version=version,
            key_check=key_check(secret, fingerprint=self.fingerprint, version=version),
            secrets=tuple(wrapped),
        )
        message, payload = serde.encode(new)
        _call(stub.PublishSecret, message)
        self.crossings.record(
            sender=self.partner,
            recipient=COORDINATOR,
            kind=AuditKind.WRAPPED_SECRETS,
            payload=payload,
            records=len(wrapped),
            detail={"key_version": version},
        )
        log.info("made key version %d and published it wrapped for %s", version, partners)

    def _take(self, stub: Any, version: int) -> bytes:
        """Key ``version``'s secret: from this node's keys folder, or fetched, opened and kept."""
        path = self.secret_path(version)
        if path.exists():
            return read_secret(path)
        request = serde.to_proto(SecretRequest(self.fingerprint, version))
        got = serde.received(_call(stub.FetchSecret, request))
        wrapped: WrappedSecret = got.message
        self.crossings.record(
            sender=COORDINATOR,
            recipient=self.partner,
            kind=AuditKind.WRAPPED_SECRET,
            payload=got.payload,
            records=1,
            detail={"key_version": version},
        )
        secret = self._open(wrapped, version)
        write_secret(path, secret)
        log.info("holds key version %d of the linkage secret (%s)", version, path)
        return secret

    def _open(self, w: WrappedSecret, version: int) -> bytes:
        def refuse(reason: str) -> AuthError:
            self.crossings.record(
                sender=COORDINATOR,
                recipient=self.partner,
                kind=AuditKind.REFUSED_AGREEMENT,
                detail={"key_version": version, "reason": cut(reason)},
            )
            return AuthError(f"refused the wrapped secret of key version {version}: {reason}")

        signed = w.sender_signed_key
        if (w.sender, w.recipient, w.key_version, w.project_fingerprint) != (
            self.dealer, self.partner, version, self.fingerprint
        ):  # fmt: skip
            raise refuse(
                f"it names sender '{w.sender[:64]}', recipient '{w.recipient[:64]}', version "
                f"{w.key_version}; expected '{self.dealer}', '{self.partner}', {version}"
            )
        if signed is None or signed.public_key != w.sender_key:
            raise refuse("it comes without the dealer's signed agreement key")
        self._checked(signed, refuse=refuse)
        if w.recipient_key != public_bytes(self._own):
            raise refuse(
                "it was wrapped for an earlier agreement key of this node; ask "
                f"'{self.dealer}' to rotate the secret (`oda-fed node keys rotate`)"
            )
        context = self._context(
            version, self.partner, sender_key=w.sender_key, recipient_key=w.recipient_key
        )
        try:
            return unwrap(Wrapped(w.salt, w.nonce, w.ciphertext), own=self._own, context=context)
        except AuthError as exc:
            raise refuse(str(exc)) from None

    def _checked(self, key: AgreementKey, *, refuse: Any = None) -> bytes:
        """``key``'s public key, once it is shown to be its partner's for this project."""
        try:
            _verify(key, ca=self._ca, fingerprint=self.fingerprint)
        except AuthError as exc:
            if refuse is not None:
                raise refuse(str(exc)) from None
            self.crossings.record(
                sender=COORDINATOR,
                recipient=self.partner,
                kind=AuditKind.REFUSED_AGREEMENT,
                detail={"partner": key.partner_id[:64], "reason": cut(str(exc))},
            )
            raise
        return key.public_key

    def _context(
        self, version: int, recipient: str, *, sender_key: bytes, recipient_key: bytes
    ) -> WrapContext:
        """How a secret from the dealer to ``recipient`` is bound."""
        return WrapContext(
            fingerprint=self.fingerprint,
            version=version,
            sender=self.dealer,
            recipient=recipient,
            sender_key=sender_key,
            recipient_key=recipient_key,
        )

    def _directory(self, stub: Any) -> KeyDirectory:
        return serde.from_proto(_call(stub.GetKeys, serde.to_proto(KeysRequest(self.fingerprint))))

    def _publish(self, stub: Any, mine: AgreementKey) -> KeyDirectory:
        message, payload = serde.encode(mine)
        directory = serde.from_proto(_call(stub.PublishKey, message))
        self.crossings.record(
            sender=self.partner,
            recipient=COORDINATOR,
            kind=AuditKind.AGREEMENT_KEY,
            payload=payload,
        )
        log.info("published this node's agreement key")
        return directory


def _verify(key: AgreementKey, *, ca: Any, fingerprint: str) -> None:
    if key.project_fingerprint != fingerprint:
        raise AuthError(f"the agreement key of '{key.partner_id[:64]}' is for another project")
    verify_key(
        ca=ca,
        fingerprint=fingerprint,
        partner=key.partner_id,
        public_key=key.public_key,
        certificate=key.certificate,
        signature=key.signature,
    )


def _wrapped(secret: bytes, *, own: Any, context: WrapContext) -> WrappedSecret:
    """``secret`` wrapped as ``context`` says, as it goes on the wire."""
    w = wrap(secret, own=own, context=context)
    return WrappedSecret(
        project_fingerprint=context.fingerprint,
        key_version=context.version,
        sender=context.sender,
        recipient=context.recipient,
        sender_key=context.sender_key,
        recipient_key=context.recipient_key,
        salt=w.salt,
        nonce=w.nonce,
        ciphertext=w.ciphertext,
    )


def _call(method: Any, request: Any) -> Any:
    """One call to the key relay; a refusal becomes an error that says what the relay said."""
    try:
        return method(request)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise
        details = (exc.details() or "refused") if hasattr(exc, "details") else "refused"
        if code is grpc.StatusCode.PERMISSION_DENIED:
            raise AuthError(f"the coordinator's key relay refused: {details}") from None
        raise ProtocolError(f"the coordinator's key relay refused: {details}") from None
