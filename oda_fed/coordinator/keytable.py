"""The key relay's tables: the nodes' signed agreement keys, each key version's key-check value,
and the secrets wrapped for each partner (ciphertext the coordinator cannot open)."""

from __future__ import annotations

from dataclasses import dataclass

from oda_fed.coordinator.db import Database, now
from oda_fed.transport.messages import AgreementKey, WrappedSecret, WrappedSecrets


@dataclass(frozen=True)
class KeyVersion:
    """A key version of a project: the key-check value its nodes must present, and whose it is
    (the dealer, or for version 0 the first node that said hello)."""

    version: int
    key_check: str
    pinned_from: str
    created: str


class KeyTable:
    """The ``agreement_keys``, ``key_versions`` and ``wrapped_secrets`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def publish(self, project: str, key: AgreementKey) -> None:
        """Keep ``key`` as its partner's agreement key (a newer one replaces it)."""
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO agreement_keys (project, partner, public_key, certificate, signature, "
                "published) VALUES (:project, :partner, :public_key, :certificate, :signature, "
                ":published) ON CONFLICT (project, partner) DO UPDATE SET "
                "public_key = excluded.public_key, certificate = excluded.certificate, "
                "signature = excluded.signature, published = excluded.published",
                project=project,
                partner=key.partner_id,
                public_key=key.public_key,
                certificate=key.certificate,
                signature=key.signature,
                published=now(),
            )

    def keys(self, project: str) -> list[AgreementKey]:
        rows = self._db.query(
            "SELECT partner, public_key, certificate, signature FROM agreement_keys "
            "WHERE project = :project ORDER BY partner",
            project=project,
        )
        return [AgreementKey(project, p, bytes(k), bytes(c), bytes(s)) for p, k, c, s in rows]

    def latest(self, project: str) -> KeyVersion | None:
        """The project's latest key version (an agreed one wins over a pinned secret file)."""
        rows = self._db.query(
            "SELECT version, key_check, pinned_from, created FROM key_versions "
            "WHERE project = :project ORDER BY version DESC LIMIT 1",
            project=project,
        )
        return KeyVersion(*rows[0]) if rows else None

    def pin(self, project: str, *, version: int, key_check: str, partner: str) -> KeyVersion:
        """The key-check value pinned for ``version``: ``key_check`` if none was yet."""
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO key_versions (project, version, key_check, pinned_from, created) "
                "VALUES (:project, :version, :key_check, :partner, :created) "
                "ON CONFLICT DO NOTHING",
                project=project,
                version=version,
                key_check=key_check,
                partner=partner,
                created=now(),
            )
            row = db.execute(
                "SELECT version, key_check, pinned_from, created FROM key_versions "
                "WHERE project = :project AND version = :version",
                project=project,
                version=version,
            ).one()
        return KeyVersion(*row)

    def add_version(self, project: str, new: WrappedSecrets, *, sender: AgreementKey) -> bool:
        """Keep a new key version and its wrapped secrets; False if the version exists."""
        with self._db.tx() as db:
            taken = db.execute(
                "SELECT 1 FROM key_versions WHERE project = :project AND version = :version",
                project=project,
                version=new.key_version,
            ).first()
            if taken:
                return False
            db.execute(
                "INSERT INTO key_versions (project, version, key_check, pinned_from, created) "
                "VALUES (:project, :version, :key_check, :pinned_from, :created)",
                project=project,
                version=new.key_version,
                key_check=new.key_check,
                pinned_from=sender.partner_id,
                created=now(),
            )
            db.executemany(
                "INSERT INTO wrapped_secrets (project, version, partner, sender, sender_key, "
                "recipient_key, salt, nonce, ciphertext, sender_certificate, sender_signature) "
                "VALUES (:project, :version, :partner, :sender, :sender_key, :recipient_key, "
                ":salt, :nonce, :ciphertext, :sender_certificate, :sender_signature)",
                [
                    {"project": project, "version": new.key_version, "partner": w.recipient,
                     "sender": w.sender, "sender_key": w.sender_key,
                     "recipient_key": w.recipient_key, "salt": w.salt, "nonce": w.nonce,
                     "ciphertext": w.ciphertext, "sender_certificate": sender.certificate,
                     "sender_signature": sender.signature}
                    for w in new.secrets
                ],
            )  # fmt: skip
        return True

    def wrapped(self, project: str, *, version: int, partner: str) -> WrappedSecret | None:
        rows = self._db.query(
            "SELECT sender, sender_key, recipient_key, salt, nonce, ciphertext, "
            "sender_certificate, sender_signature FROM wrapped_secrets "
            "WHERE project = :project AND version = :version AND partner = :partner",
            project=project,
            version=version,
            partner=partner,
        )
        if not rows:
            return None
        sender, sender_key, recipient_key, salt, nonce, ciphertext, cert, signature = rows[0]
        signed = AgreementKey(project, sender, bytes(sender_key), bytes(cert), bytes(signature))
        return WrappedSecret(
            project_fingerprint=project,
            key_version=version,
            sender=sender,
            recipient=partner,
            sender_key=bytes(sender_key),
            recipient_key=bytes(recipient_key),
            salt=bytes(salt),
            nonce=bytes(nonce),
            ciphertext=bytes(ciphertext),
            sender_signed_key=signed,
        )
