"""`oda-fed node check` on a real federation: each thing a partner's IT team can get wrong is
caught with what to do, in a table, with a non-zero exit and never a traceback."""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from typer.testing import CliRunner

from oda_fed.cli import app

pytestmark = pytest.mark.grpc

runner = CliRunner(env={"COLUMNS": "400"})


def check(federation, partner: str = "police", *extra: str):
    result = runner.invoke(
        app, ["node", "check", "--config", str(federation.node_config(partner)), *extra]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def rows(output: str) -> dict[str, tuple[str, str]]:
    """The table's rows: check -> (result, detail), wrapped lines joined."""
    found: dict[str, tuple[str, str]] = {}
    last = ""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 3 or cells[0] == "check":
            continue
        if cells[0]:
            last = cells[0]
            found[last] = (cells[1], cells[2])
        elif last:
            result, detail = found[last]
            found[last] = (result, f"{detail} {cells[2]}")
    return found


def reissue(federation, partner: str, *, days: tuple[int, int]) -> None:
    """Replace the partner's certificate with the same one valid between ``days`` from now, signed
    by the partnership CA (as a certificate issued long ago would be)."""
    node = federation.workdir / "nodes" / partner / "tls"
    cert = x509.load_pem_x509_certificate((node / f"{partner}.crt").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (federation.workdir / "ca" / "ca.key").read_bytes(), password=None
    )
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
    )
    for ext in cert.extensions:
        if not isinstance(ext.value, x509.AuthorityKeyIdentifier | x509.SubjectKeyIdentifier):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    new = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    (node / f"{partner}.crt").write_bytes(new.public_bytes(serialization.Encoding.PEM))


def test_a_well_set_up_node_passes_every_check(federation) -> None:
    result = check(federation)
    assert result.exit_code == 0, result.output
    found = rows(result.output)
    assert set(found) >= {"configuration", "project", "extract", "secret permissions",
                          "key permissions", "secret", "certificate", "coordinator"}  # fmt: skip
    assert {r for r, _ in found.values()} == {"ok"}, found
    assert "TLS handshake completed" in found["coordinator"][1]
    records = len(federation.extract("police"))
    assert f"{records} records" in found["extract"][1]


def _edit_toml(path: Path, edit: Callable[[dict], None]) -> None:
    doc = tomllib.loads(path.read_text())
    edit(doc)
    path.write_text(tomli_w.dumps(doc))


def _world_readable_secret(fed) -> None:
    os.chmod(fed.workdir / "nodes" / "police" / "linkage.secret", 0o644)


def _group_readable_key(fed) -> None:
    os.chmod(fed.workdir / "nodes" / "police" / "tls" / "police.key", 0o640)


def _missing_extract(fed) -> None:
    fed.edit_source("police", lambda source, _: source.update(path="gone.csv"))


def _missing_column(fed) -> None:
    csv = fed.workdir / "data" / "police.csv"
    fed.extract("police").drop(columns=["family_name"]).to_csv(csv, index=False)


def _header_only(fed) -> None:
    csv = fed.workdir / "data" / "police.csv"
    fed.extract("police").iloc[0:0].to_csv(csv, index=False)


def _missing_lookup(fed) -> None:
    fed.edit_source("police", lambda source, _: source.update(lookups={"wards": "wards.csv"}))


def _expired(fed) -> None:
    reissue(fed, "police", days=(-400, -1))


def _coordinator_down(fed) -> None:
    fed.stop_coordinator()


def _wrong_server_name(fed) -> None:
    def edit(doc: dict) -> None:
        doc["coordinator"]["server_name"] = "linkage.example.org"

    _edit_toml(fed.node_config("police"), edit)


@pytest.mark.parametrize(
    ("fault", "failed", "said"),
    [
        (
            _world_readable_secret,
            "secret permissions",
            "mode 0644); make it the node user's only: chmod 600",
        ),
        (
            _group_readable_key,
            "key permissions",
            "mode 0640); make it the node user's only: chmod 600",
        ),
        (_missing_extract, "extract", "gone.csv: file not found"),
        (_missing_column, "extract", "no column 'family_name'"),
        (_header_only, "extract", "the extract has a header but no records"),
        (_missing_lookup, "lookup table 'wards'", "wards.csv: file not found"),
        (_expired, "certificate", "expired on"),
        (_coordinator_down, "coordinator", "no TLS connection within 2s"),
        (_wrong_server_name, "coordinator", "server_name the name in its certificate"),
    ],  # fmt: skip
    ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "",
)
def test_each_fault_fails_its_check_with_what_to_do(federation, fault, failed, said) -> None:
    fault(federation)
    result = check(federation, "police", "--timeout", "2")
    assert result.exit_code == 1, result.output
    found = rows(result.output)
    assert found[failed][0] == "fail", found
    assert said in found[failed][1], found[failed]
    assert [name for name, (r, _) in found.items() if r == "fail"] == [failed]
    assert f"1 check(s) failed: {failed}" in result.output


def test_a_certificate_close_to_expiry_is_a_warning_not_a_failure(federation) -> None:
    reissue(federation, "police", days=(-800, 10))
    result = check(federation)
    assert result.exit_code == 0, result.output
    outcome, detail = rows(result.output)["certificate"]
    assert outcome == "warn"
    assert "in 9 day(s)" in detail or "in 10 day(s)" in detail
    assert "ask the partnership CA for a new certificate" in detail


def test_a_broken_configuration_is_one_failed_check(federation, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("partner = 'police'\n")
    result = runner.invoke(app, ["node", "check", "--config", str(config)])
    assert result.exit_code == 1, result.output
    found = rows(result.output)
    assert list(found) == ["configuration"]
    assert "required key is missing" in found["configuration"][1]


def test_an_agreed_secret_readable_by_others_fails_its_check(federation) -> None:
    """A node that agreed its secret through the coordinator has no secret file: the check
    looks at the agreed secrets in keys_dir instead."""
    config = federation.node_config("police")
    doc = tomllib.loads(config.read_text())
    secret = (config.parent / doc.pop("secret_file")).resolve()
    keys = config.parent / "keys"
    keys.mkdir(mode=0o700)
    agreed = keys / "linkage-0123456789abcdef-v1.secret"
    agreed.write_bytes(secret.read_bytes())
    agreed.chmod(0o644)
    doc["keys_dir"] = "keys"
    config.write_text(tomli_w.dumps(doc))
    found = rows(check(federation).output)
    result, detail = found[f"{agreed.name} permissions"]
    assert result == "fail" and f"chmod 600 {agreed}" in detail
    assert found["secret"][0] == "ok" and "1 agreed secret(s)" in found["secret"][1]
    agreed.chmod(0o600)
    assert check(federation).exit_code == 0
