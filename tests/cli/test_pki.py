"""`oda-fed pki`: a CA, a request signed by it, a one-step issue and a secret, as files."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from oda_fed.cli import app
from oda_fed.pki import identity_from_pem, load_ca_bundle, read_secret, verify_issued_by

runner = CliRunner(env={"COLUMNS": "200"})


def test_a_node_certificate_by_request_and_sign(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert runner.invoke(app, ["pki", "init", "--dir", str(ca)]).exit_code == 0
    node = tmp_path / "council"
    requested = runner.invoke(app, ["pki", "request", "council", "--out", str(node)])
    assert requested.exit_code == 0, requested.output
    assert "the key stays here" in requested.output
    signed = runner.invoke(
        app, ["pki", "sign", str(node / "council.csr"), "--ca-dir", str(ca), "--yes"]
    )
    assert signed.exit_code == 0, signed.output
    cert = (node / "council.crt").read_bytes()
    verify_issued_by(load_ca_bundle(ca / "ca.crt"), cert)
    assert (identity_from_pem(cert).role, identity_from_pem(cert).name) == ("node", "council")


def test_issue_and_secret(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    runner.invoke(app, ["pki", "init", "--dir", str(ca)])
    issued = runner.invoke(
        app,
        ["pki", "issue", "coordinator", "--role", "coordinator", "--ca-dir", str(ca)]
        + ["--out", str(tmp_path), "--host", "localhost"],
    )
    assert issued.exit_code == 0, issued.output
    assert "certificate:" in issued.output and "key:" in issued.output
    secret = runner.invoke(app, ["pki", "secret", "--out", str(tmp_path / "k")])
    assert secret.exit_code == 0 and "(mode 0600)" in secret.output
    assert len(read_secret(tmp_path / "k")) == 32
    again = runner.invoke(app, ["pki", "secret", "--out", str(tmp_path / "k")])
    assert again.exit_code == 2 and again.output.startswith("error:")


def test_signing_without_a_ca_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.csr").write_text("not a request")
    result = runner.invoke(app, ["pki", "sign", str(tmp_path / "x.csr"), "--ca-dir", str(tmp_path)])
    assert result.exit_code != 0 and result.output.startswith("error:")


def test_sign_shows_what_it_signs_and_asks_first(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    runner.invoke(app, ["pki", "init", "--dir", str(ca)])
    runner.invoke(app, ["pki", "request", "council", "--out", str(tmp_path / "a")])
    sign = ["pki", "sign", str(tmp_path / "a" / "council.csr"), "--ca-dir", str(ca)]
    refused = runner.invoke(app, sign, input="n\n")
    assert refused.exit_code == 1 and "not signed" in refused.output
    assert "asks for a node certificate for council" in refused.output
    assert not (tmp_path / "a" / "council.crt").exists()
    signed = runner.invoke(app, sign, input="y\n")
    assert signed.exit_code == 0, signed.output
    assert (tmp_path / "a" / "council.crt").exists()

    # A second request for the same name: the CA holder is warned that one is valid already.
    runner.invoke(app, ["pki", "request", "council", "--out", str(tmp_path / "b")])
    again = runner.invoke(
        app, ["pki", "sign", str(tmp_path / "b" / "council.csr"), "--ca-dir", str(ca)], input="n\n"
    )
    assert again.exit_code == 1
    assert "already issued a valid certificate for 'council'" in again.output


def test_list_and_revoke(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    runner.invoke(app, ["pki", "init", "--dir", str(ca)])
    for name in ("council", "police"):
        issued = runner.invoke(
            app, ["pki", "issue", name, "--ca-dir", str(ca), "--out", str(tmp_path / name)]
        )
        assert issued.exit_code == 0, issued.output
    revoked = runner.invoke(
        app, ["pki", "revoke", "police", "--reason", "key-compromise", "--ca-dir", str(ca)]
    )
    assert revoked.exit_code == 0, revoked.output
    assert "revoked certificate" in revoked.output and "ca.crl" in revoked.output
    listed = runner.invoke(app, ["pki", "list", "--ca-dir", str(ca)])
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[3].strip(): line for line in listed.output.splitlines()
            if line.count("│") > 5 and "serial" not in line}  # fmt: skip
    assert "valid" in rows["council"] and "revoked" not in rows["council"]
    assert "revoked" in rows["police"] and "key-compromise" in rows["police"]
    again = runner.invoke(
        app, ["pki", "revoke", "police", "--reason", "again", "--ca-dir", str(ca)]
    )
    assert again.exit_code != 0 and again.output.startswith("error:")
    crl = runner.invoke(app, ["pki", "crl", "--ca-dir", str(ca)])
    assert crl.exit_code == 0 and "ca.crl" in crl.output
