"""The key relay: agreement keys and wrapped secrets the coordinator stores and hands on, and the
key check of every node's Hello.

The coordinator never holds the linkage secret: it keeps the nodes' signed X25519 public keys and
each key version's secrets wrapped for each partner, which it cannot open
(:mod:`oda_fed.pki.agreement`). What it can check it does, so a mistake is refused where it is
made, but the nodes check again: a relay that put in a key of its own is caught by them.

The key check (:func:`check_hello`): every node's Hello carries a key-check value of the secret it
holds (:func:`oda_fed.pki.secret.key_check`). For an agreed secret the reference is the dealer's
value, published with the wrapped secrets, so even the first node to connect is checked. For a
secret file (version 0) there is no dealer: the first value the coordinator sees for the project
is pinned, and a later node whose value differs is refused, naming the partner it differs from.
"""

from __future__ import annotations

import logging
import re

from cryptography import x509

from oda_fed.coordinator.state import CoordinatorState, Refusal, Status
from oda_fed.errors import AuthError
from oda_fed.pki.agreement import NONCE_BYTES, SALT_BYTES, verify_key
from oda_fed.transport.messages import (
    AgreementKey,
    Hello,
    KeyDirectory,
    KeysRequest,
    Received,
    SecretRequest,
    WrappedSecret,
    WrappedSecrets,
)
from oda_fed.transport.protocol import COORDINATOR, AuditKind

log = logging.getLogger(__name__)

_KEY_CHECK = re.compile(r"[0-9a-f]{32}")
#: A wrapped secret is 32 bytes and a 16-byte tag; anything much longer is not one.
_MAX_CIPHERTEXT = 256


def _refuse(reason: str, status: Status = Status.INVALID_ARGUMENT) -> Refusal:
    return Refusal(status, reason, kind=AuditKind.REFUSED_KEYS)


def _check_project(state: CoordinatorState, fingerprint: str) -> None:
    if fingerprint != state.fingerprint:
        raise _refuse(
            f"project fingerprint mismatch: the request names {fingerprint[:80] or '(none)'}, "
            f"this coordinator runs {state.fingerprint}",
            Status.FAILED_PRECONDITION,
        )


def directory(state: CoordinatorState) -> KeyDirectory:
    """The project's published agreement keys and latest agreed key version."""
    table = state.store.keys
    return KeyDirectory(keys=tuple(table.keys(state.fingerprint)), key_version=_agreed(state))


def _agreed(state: CoordinatorState) -> int:
    """The latest agreed key version; 0 when there is none (a pinned secret file is not one)."""
    latest = state.store.keys.latest(state.fingerprint)
    return latest.version if latest is not None else 0


def get_keys(state: CoordinatorState, request: KeysRequest) -> KeyDirectory:
    _check_project(state, request.project_fingerprint)
    return directory(state)


def publish_key(
    state: CoordinatorState, partner: str, item: Received[AgreementKey], *, peer_certificate: bytes
) -> KeyDirectory:
    """Keep the caller's agreement key, once it is shown to be signed with the very certificate
    the caller connected with."""
    key = item.message
    _check_project(state, key.project_fingerprint)
    if key.partner_id != partner:
        raise _refuse(
            f"'{partner}' may publish only its own agreement key, not one for "
            f"'{key.partner_id[:64]}'",
            Status.PERMISSION_DENIED,
        )
    if not _same_certificate(key.certificate, peer_certificate):
        raise _refuse(
            "the agreement key must be signed with the certificate this node connects with",
            Status.PERMISSION_DENIED,
        )
    try:
        verify_key(
            ca=None,  # the caller's certificate, which TLS verified against the partnership CA
            fingerprint=state.fingerprint,
            partner=partner,
            public_key=key.public_key,
            certificate=key.certificate,
            signature=key.signature,
        )
    except AuthError as exc:
        raise _refuse(str(exc), Status.PERMISSION_DENIED) from None
    state.crossings.record(
        sender=partner, recipient=COORDINATOR, kind=AuditKind.AGREEMENT_KEY, payload=item.payload
    )
    state.store.keys.publish(state.fingerprint, key)
    log.info("node %s published its agreement key", partner)
    return directory(state)


def _same_certificate(a: bytes, b: bytes) -> bool:
    try:
        return x509.load_pem_x509_certificates(a)[0] == x509.load_pem_x509_certificates(b)[0]
    except ValueError:
        return False


def publish_secret(
    state: CoordinatorState, partner: str, item: Received[WrappedSecrets]
) -> KeyDirectory:
    """Keep the dealer's new key version, then end every node's session so that each comes back
    with the new secret. Refused while a round is under way: the secret changes between rounds."""
    new = item.message
    project = state.project
    _check_project(state, new.project_fingerprint)
    if partner != project.dealer:
        raise _refuse(
            f"only '{project.dealer}', the project's first partner, makes the linkage secret; "
            f"'{partner}' may not",
            Status.PERMISSION_DENIED,
        )
    agreed = _agreed(state)
    if new.key_version != agreed + 1:
        raise _refuse(
            f"key version {new.key_version} is not the next one: version {agreed} is the "
            "latest. Fetch the latest and try again",
            Status.FAILED_PRECONDITION,
        )
    if agreed >= 1 and project.linkage.stable_entity_ids:
        raise _refuse(
            f"project '{project.name}' keeps entity ids stable, and a new secret would change "
            "every record key and CLK, so every entity id; amend and sign the project again "
            "instead (a new project starts a new linked index and a new secret)",
            Status.FAILED_PRECONDITION,
        )
    # A first secret replaces none, so it may come mid-round; a new one waits for the round's end.
    active = state.store.rounds.active()
    if active and state.store.keys.latest(state.fingerprint) is not None:
        raise _refuse(
            f"round {active[0].round_id} is {active[0].state}; the secret changes only between "
            "rounds. Rotate once it has closed (or cancel it)",
            Status.FAILED_PRECONDITION,
        )
    published = {k.partner_id: k for k in state.store.keys.keys(state.fingerprint)}
    problem = _wrapped_problem(new, dealer=partner, published=published, partners=state.partners)
    if problem:
        raise _refuse(problem)
    state.crossings.record(
        sender=partner,
        recipient=COORDINATOR,
        kind=AuditKind.WRAPPED_SECRETS,
        payload=item.payload,
        records=len(new.secrets),
        detail={"key_version": new.key_version},
    )
    if not state.store.keys.add_version(state.fingerprint, new, sender=published[partner]):
        raise _refuse(
            f"key version {new.key_version} was published meanwhile", Status.FAILED_PRECONDITION
        )
    log.info("key version %d agreed; ending sessions so nodes take it up", new.key_version)
    for connected in state.sessions.connected():
        state.sessions.end(connected)
    return directory(state)


def _wrapped_problem(
    new: WrappedSecrets, *, dealer: str, published: dict[str, AgreementKey], partners: list[str]
) -> str:
    """Why these wrapped secrets cannot be kept, or ''."""
    if not _KEY_CHECK.fullmatch(new.key_check):
        return "the key-check value must be 32 lower-case hex digits"
    missing = [p for p in partners if p not in published]
    if missing:
        return f"partners {', '.join(missing)} have published no agreement key yet"
    recipients = [w.recipient for w in new.secrets]
    if sorted(recipients) != sorted(partners):
        return "there must be exactly one wrapped secret for each partner of the project"
    for w in new.secrets:
        where = f"the secret wrapped for '{w.recipient}'"
        if (w.project_fingerprint, w.key_version, w.sender) != (
            new.project_fingerprint, new.key_version, dealer
        ):  # fmt: skip
            return f"{where} names another project, key version or sender"
        if w.sender_key != published[dealer].public_key:
            return f"{where} was not made with the dealer's published agreement key"
        if w.recipient_key != published[w.recipient].public_key:
            return f"{where} was not made for its published agreement key; fetch the keys again"
        if len(w.salt) != SALT_BYTES or len(w.nonce) != NONCE_BYTES:
            return f"{where} has a salt or nonce of the wrong length"
        if not 0 < len(w.ciphertext) <= _MAX_CIPHERTEXT or w.sender_signed_key is not None:
            return f"{where} is malformed"
    return ""


def fetch_secret(state: CoordinatorState, partner: str, request: SecretRequest) -> WrappedSecret:
    """The caller's own wrapped secret of a key version; no other partner's."""
    _check_project(state, request.project_fingerprint)
    wrapped = state.store.keys.wrapped(
        state.fingerprint, version=request.key_version, partner=partner
    )
    if wrapped is None:
        raise _refuse(
            f"there is no secret of key version {request.key_version} wrapped for '{partner}'",
            Status.NOT_FOUND,
        )
    return wrapped


# --- the key check of a Hello ---------------------------------------------------------------------


def _refuse_hello(partner: str, reason: str, *, version: int) -> Refusal:
    return Refusal(
        Status.PERMISSION_DENIED,
        f"node '{partner}' refused before anything was sent: {reason}",
        kind=AuditKind.REFUSED_KEY_CHECK,
        detail={"key_version": str(version)},
    )


def check_hello(state: CoordinatorState, partner: str, hello: Hello) -> None:
    """Refuse a node whose linkage secret differs from the partners', or is superseded."""
    version = hello.key_version
    if not _KEY_CHECK.fullmatch(hello.key_check):
        raise _refuse_hello(
            partner,
            "its Hello carries no key-check value, so it cannot be shown to hold the partners' "
            "linkage secret; upgrade its oda-fed to the coordinator's version",
            version=version,
        )
    table = state.store.keys
    latest = table.latest(state.fingerprint)
    agreed = _agreed(state)
    if version == 0 and agreed:
        raise _refuse_hello(
            partner,
            f"it uses a secret file, but the partners agreed key version {agreed} through the "
            "coordinator. Remove secret_file from its node.toml so it fetches the agreed secret",
            version=version,
        )
    if version == 0:
        expected = table.pin(
            state.fingerprint, version=0, key_check=hello.key_check, partner=partner
        )
    elif latest is None or version > latest.version:
        raise _refuse_hello(
            partner,
            f"it holds key version {version}, which the partners never agreed (latest: {agreed})",
            version=version,
        )
    elif version < latest.version:
        raise _refuse_hello(
            partner,
            f"it holds key version {version}, which version {latest.version} superseded on "
            f"{latest.created}. Restart the node: it fetches the new secret first",
            version=version,
        )
    else:
        expected = latest
    if hello.key_check != expected.key_check:
        where = (
            f"the first node to say hello ('{expected.pinned_from}', {expected.created})"
            if version == 0
            else f"the dealer '{expected.pinned_from}'"
        )
        fix = (
            "Check that its secret_file is the one the partners exchanged (compare `oda-fed "
            "node keys check` on each node), or let the nodes agree a secret instead"
            if version == 0
            else "Its secret file was changed or damaged: move it aside and restart the node "
            "to fetch the agreed secret again"
        )
        raise _refuse_hello(
            partner,
            f"its linkage secret (key version {version}) differs from the one held by {where}: "
            f"its CLKs would not match anyone's. Nothing of it is accepted. {fix}",
            version=version,
        )
