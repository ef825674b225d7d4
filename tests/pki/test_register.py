"""The CA's certificate register and revocation list: every certificate it signs is recorded,
revocation reaches a signed CRL, and only a CRL the partnership CA signed is believed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from oda_fed.errors import ConfigError
from oda_fed.pki import init_ca, issue, load_certificate
from oda_fed.pki.register import (
    CRL_FILE,
    RevocationList,
    cert_fingerprint,
    load_crl,
    read_register,
    revoke,
    serial_hex,
)


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca")
    return tmp_path / "ca"


def _ca_cert(ca: Path) -> x509.Certificate:
    return load_certificate(ca / "ca.crt")


def test_every_signed_certificate_is_in_the_register(ca: Path, tmp_path: Path) -> None:
    assert read_register(ca) == [] and load_crl(ca / CRL_FILE, ca=_ca_cert(ca)) == frozenset()
    council, _ = issue(ca_dir=ca, name="council", role="node", out_dir=tmp_path / "c")
    coord, _ = issue(ca_dir=ca, name="coordinator", role="coordinator", out_dir=tmp_path / "k")
    entries = read_register(ca)
    assert [(e.role, e.name, e.status()) for e in entries] == [
        ("node", "council", "valid"), ("coordinator", "coordinator", "valid")
    ]  # fmt: skip
    cert = load_certificate(council)
    assert entries[0].serial == serial_hex(cert.serial_number)
    assert entries[0].fingerprint == cert_fingerprint(cert)
    assert entries[0].not_after == cert.not_valid_after_utc.isoformat(timespec="seconds")
    assert entries[1].serial == serial_hex(load_certificate(coord).serial_number)


def test_revoking_a_name_with_two_valid_certificates_asks_for_the_serial(
    ca: Path, tmp_path: Path, second_certificate
) -> None:
    """The attack's case: two council certificates. Revoking 'council' could take the honest
    one; the CA holder must say which."""
    issue(ca_dir=ca, name="council", role="node", out_dir=tmp_path / "honest")
    rogue, _ = second_certificate(ca, "council", tmp_path / "rogue", registered=True)
    before = (ca / CRL_FILE).read_bytes()
    with pytest.raises(ConfigError, match="2 unrevoked certificates .*Revoke by serial"):
        revoke(ca, "council", reason="key-compromise")
    assert (ca / CRL_FILE).read_bytes() == before and not any(
        e.revoked_at for e in read_register(ca)
    )

    serial = load_certificate(rogue).serial_number
    done = revoke(ca, serial_hex(serial).upper(), reason="key-compromise")
    assert done.status() == "revoked" and done.reason == "key-compromise"
    assert load_crl(ca / CRL_FILE, ca=_ca_cert(ca)) == {serial}
    # Now one valid council certificate is left, and its name is enough.
    honest = revoke(ca, "council", reason="superseded")
    assert [e.status() for e in read_register(ca)] == ["revoked", "revoked"]
    with pytest.raises(ConfigError, match="revoked already"):
        revoke(ca, honest.serial, reason="again")


def test_revoking_by_certificate_file_and_refusing_nonsense(ca: Path, tmp_path: Path) -> None:
    police, _ = issue(ca_dir=ca, name="police", role="node", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="no certificate with serial or name"):
        revoke(ca, "fire", reason="gone")
    with pytest.raises(ConfigError, match="give a reason"):
        revoke(ca, str(police), reason="  ")
    revoked = revoke(ca, str(police), reason="cessation-of-operation")
    assert revoked.name == "police"
    other = tmp_path / "other"
    init_ca(other)
    foreign, _ = issue(ca_dir=other, name="police", role="node", out_dir=tmp_path / "f")
    with pytest.raises(ConfigError, match="not issued by the CA"):
        revoke(ca, str(foreign), reason="not ours")


def test_only_a_crl_signed_by_the_partnership_ca_is_believed(ca: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_ca(other)  # same name, another key: what an attacker would make
    with pytest.raises(ConfigError, match="not signed by the partnership CA"):
        load_crl(other / CRL_FILE, ca=_ca_cert(ca))
    (tmp_path / "junk.crl").write_text("junk")
    with pytest.raises(ConfigError, match="not an X.509 certificate revocation list"):
        load_crl(tmp_path / "junk.crl", ca=_ca_cert(ca))
    with pytest.raises(ConfigError, match="not found"):
        load_crl(tmp_path / "missing.crl", ca=_ca_cert(ca))


def test_the_list_is_read_again_when_it_changes_and_a_broken_copy_revokes_nothing_less(
    ca: Path, tmp_path: Path
) -> None:
    police, _ = issue(ca_dir=ca, name="police", role="node", out_dir=tmp_path)
    serial = load_certificate(police).serial_number
    copy = tmp_path / "coordinator.crl"
    copy.write_bytes((ca / CRL_FILE).read_bytes())
    revocations = RevocationList(copy, ca=_ca_cert(ca))
    assert not revocations.revoked(serial)
    revoke(ca, "police", reason="key-compromise")
    copy.write_bytes((ca / CRL_FILE).read_bytes())
    assert revocations.revoked(serial)
    copy.write_text("truncated by a bad copy")
    assert revocations.revoked(serial)
    copy.unlink()
    assert revocations.revoked(serial)


def test_each_crl_entry_carries_the_reason_code_its_register_reason_names(
    ca: Path, tmp_path: Path
) -> None:
    """A relying party reading the CRL with any X.509 library learns why each certificate was
    revoked (a compromised key is not a replaced one); a reason naming no code carries none,
    which RFC 5280 reads as unspecified."""
    reasons = {
        "council": ("key-compromise: laptop stolen", x509.ReasonFlags.key_compromise),
        "police": ("Superseded by a new certificate", x509.ReasonFlags.superseded),
        "fire": ("affiliation changed", x509.ReasonFlags.affiliation_changed),
        "housing": ("cessationOfOperation", x509.ReasonFlags.cessation_of_operation),
        "nhs": ("CA compromise", x509.ReasonFlags.ca_compromise),
        "probation": (
            "privilege_withdrawn: left the project",
            x509.ReasonFlags.privilege_withdrawn,
        ),
        "ambulance": ("lost interest", None),
        "library": ("keys compromised?", None),  # not the code's words: not guessed
    }
    serials = {}
    for name, (reason, _) in reasons.items():
        cert, _ = issue(ca_dir=ca, name=name, role="node", out_dir=tmp_path / name)
        serials[load_certificate(cert).serial_number] = name
        revoke(ca, name, reason=reason)

    crl = x509.load_pem_x509_crl((ca / CRL_FILE).read_bytes())
    assert crl.is_signature_valid(_ca_cert(ca).public_key())
    found = {}
    for entry in crl:
        try:
            code = entry.extensions.get_extension_for_class(x509.CRLReason)
        except x509.ExtensionNotFound:
            found[serials[entry.serial_number]] = None
        else:
            assert not code.critical
            found[serials[entry.serial_number]] = code.value.reason
    assert found == {name: code for name, (_, code) in reasons.items()}


def test_revoke_help_lists_every_reason_code_it_recognises() -> None:
    from typer.testing import CliRunner

    from oda_fed.cli import app
    from oda_fed.pki.register import REASON_CODES

    shown = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["pki", "revoke", "--help"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.replace("│", " ").split())
    assert all(code in text for code in REASON_CODES), text
