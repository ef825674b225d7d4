"""Agreement keys bound to certificates, secrets wrapped for one partner only, and key checks:
the relay in the middle can neither put in a key of its own nor open or move a wrapped secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oda_fed.errors import AuthError
from oda_fed.pki import init_ca, issue, load_certificate, secret_fingerprints
from oda_fed.pki.agreement import (
    WrapContext,
    Wrapped,
    agreement_key,
    public_bytes,
    sign_key,
    unwrap,
    verify_key,
    wrap,
)
from oda_fed.pki.secret import forbidden_forms, key_check
from oda_fed.pki.trust import load_private_key

FP = "sha256:" + "ab" * 32


@pytest.fixture
def pki(tmp_path: Path):
    init_ca(tmp_path / "ca", name="partnership")
    made = {
        name: issue(ca_dir=tmp_path / "ca", name=name, role=role, out_dir=tmp_path / name)
        for name, role in (("council", "node"), ("police", "node"), ("coordinator", "coordinator"))
    }
    return tmp_path, load_certificate(tmp_path / "ca" / "ca.crt"), made


def _signed(made, name: str, public: bytes, *, signer: str | None = None):
    cert, key = made[signer or name]
    tls_key, _ = load_private_key(key, what="key")
    return cert.read_bytes(), sign_key(tls_key, fingerprint=FP, partner=name, public_key=public)


def test_a_key_signed_by_its_partner_verifies(pki) -> None:
    tmp, ca, made = pki
    public = public_bytes(agreement_key(tmp / "police.agreement"))
    cert, sig = _signed(made, "police", public)
    verify_key(ca=ca, fingerprint=FP, partner="police", public_key=public, certificate=cert,
               signature=sig)  # fmt: skip
    assert (tmp / "police.agreement").stat().st_mode & 0o777 == 0o600


def test_the_relay_cannot_put_in_a_key_of_its_own(pki, tmp_path: Path) -> None:
    tmp, ca, made = pki
    theirs = public_bytes(agreement_key(tmp / "police.agreement"))
    mine = public_bytes(agreement_key(tmp / "relay.agreement"))
    cert, sig = _signed(made, "police", theirs)
    # Police's certificate and signature, with the relay's key swapped in.
    with pytest.raises(AuthError, match="does not carry police's signature"):
        verify_key(ca=ca, fingerprint=FP, partner="police", public_key=mine, certificate=cert,
                   signature=sig)  # fmt: skip
    # The relay's key signed with the coordinator's own certificate.
    cert, sig = _signed(made, "police", mine, signer="coordinator")
    with pytest.raises(AuthError, match="coordinator:coordinator, not of node:police"):
        verify_key(ca=ca, fingerprint=FP, partner="police", public_key=mine, certificate=cert,
                   signature=sig)  # fmt: skip
    # Signed by another partner, or for another project.
    cert, sig = _signed(made, "police", mine, signer="council")
    with pytest.raises(AuthError, match="node:council, not of node:police"):
        verify_key(ca=ca, fingerprint=FP, partner="police", public_key=mine, certificate=cert,
                   signature=sig)  # fmt: skip
    cert, sig = _signed(made, "police", theirs)
    with pytest.raises(AuthError, match="signature"):
        verify_key(ca=ca, fingerprint="sha256:" + "cd" * 32, partner="police", public_key=theirs,
                   certificate=cert, signature=sig)  # fmt: skip
    # A certificate for 'police' from a CA of the relay's own making.
    init_ca(tmp_path / "rogue", name="rogue")
    rogue_cert, rogue_key = issue(ca_dir=tmp_path / "rogue", name="police", role="node",
                                  out_dir=tmp_path / "rogue-police")  # fmt: skip
    cert, sig = _signed({"police": (rogue_cert, rogue_key)}, "police", mine)
    with pytest.raises(AuthError, match="not issued by this partnership's CA"):
        verify_key(ca=ca, fingerprint=FP, partner="police", public_key=mine, certificate=cert,
                   signature=sig)  # fmt: skip


def _context(dealer, police, **changes) -> WrapContext:
    values = dict(fingerprint=FP, version=1, sender="council", recipient="police",
                  sender_key=public_bytes(dealer), recipient_key=public_bytes(police))  # fmt: skip
    return WrapContext(**{**values, **changes})


def test_a_wrapped_secret_opens_only_for_its_recipient_project_and_version(tmp_path: Path) -> None:
    dealer, police = agreement_key(tmp_path / "d"), agreement_key(tmp_path / "p")
    social = agreement_key(tmp_path / "s")
    secret = os.urandom(32)
    w = wrap(secret, own=dealer, context=_context(dealer, police))
    assert secret not in w.ciphertext
    assert unwrap(w, own=police, context=_context(dealer, police)) == secret
    # The dealer can open what it wrapped for itself.
    mine = wrap(secret, own=dealer, context=_context(dealer, dealer, recipient="council"))
    assert unwrap(mine, own=dealer, context=_context(dealer, dealer, recipient="council")) == secret
    for moved in (
        dict(version=2),
        dict(fingerprint="sha256:" + "cd" * 32),
        dict(recipient="social_care"),
        dict(sender="police"),
    ):
        with pytest.raises(AuthError, match="does not open"):
            unwrap(w, own=police, context=_context(dealer, police, **moved))
    with pytest.raises(AuthError, match="does not open"):  # another partner's key
        unwrap(w, own=social, context=_context(dealer, social))
    altered = Wrapped(w.salt, w.nonce, bytes([w.ciphertext[0] ^ 1]) + w.ciphertext[1:])
    with pytest.raises(AuthError, match="does not open"):
        unwrap(altered, own=police, context=_context(dealer, police))


def test_the_key_check_tells_secrets_apart_and_reveals_none_of_them() -> None:
    secret, other = os.urandom(32), os.urandom(32)
    value = key_check(secret, fingerprint=FP, version=1)
    assert len(value) == 32 and int(value, 16) >= 0
    assert value == key_check(secret, fingerprint=FP, version=1)
    assert value != key_check(other, fingerprint=FP, version=1)
    assert value != key_check(secret, fingerprint=FP, version=2)
    assert value != key_check(secret, fingerprint="sha256:" + "cd" * 32, version=1)
    assert not [f for f in secret_fingerprints(secret) if f in value.encode()]
    # The audit log refuses the secret and the key of the key check, never the check itself.
    forms = forbidden_forms(secret)
    assert set(secret_fingerprints(secret)) < set(forms)
    assert value.encode() not in forms
