"""Faults a round must survive, on a real federation: a partner's extract with no records wedges
nothing, and the operator sees which partner failed and why."""

from __future__ import annotations

import shutil
import tomllib

import pandas as pd
import pytest
import tomli_w
from typer.testing import CliRunner

from oda_fed.cli import app
from oda_fed.node.sources import EmptyExtractError

pytestmark = pytest.mark.grpc


def test_a_header_only_extract_is_reported_and_the_round_can_be_cancelled_and_rerun(
    federation,
) -> None:
    csv = federation.workdir / "data" / "police.csv"
    backup = csv.with_suffix(".bak")
    shutil.copyfile(csv, backup)
    pd.read_csv(csv, dtype=str, keep_default_na=False).iloc[0:0].to_csv(csv, index=False)
    admin = federation.admin()
    try:
        round_id = admin.start_round().round_id
        agent = federation.agent("police")
        with pytest.raises(EmptyExtractError, match="header but no records"):
            agent.run(rounds=1, give_up_after=5)
        agent.close()

        # The operator is told which partner failed and why, in the round and per partner.
        status = admin.get_round(round_id)
        reason = "EmptyExtractError on the node: the extract has a header but no records"
        assert status.state == "open"
        assert f"police could not do 'encode_and_upload': {reason}" in status.message
        errors = {p.partner: p.last_error for p in status.partners}
        assert errors == {
            "council": "",
            "police": f"encode_and_upload: {reason}; see the node's log",
            "social_care": "",
        }
        # The operator's CLI reads the address from coordinator.toml: the port the fixture bound.
        doc = tomllib.loads(federation.coordinator_config.read_text())
        federation.coordinator_config.write_text(
            tomli_w.dumps({**doc, "listen": f"127.0.0.1:{federation.port}"})
        )
        shown = CliRunner(env={"COLUMNS": "250"}).invoke(
            app,
            ["coordinator", "status", "--config", str(federation.coordinator_config),
             "--round", round_id],
        )  # fmt: skip
        assert shown.exit_code == 0, shown.output
        assert "last error" in shown.output and "EmptyExtractError" in shown.output

        # Nothing wedged: the round is cancelled and the next one runs to its end.
        assert admin.cancel_round(round_id, reason="empty extract").state == "cancelled"
        shutil.copyfile(backup, csv)
        # Each node first hears that the cancelled round ended, then takes part in the new one.
        nodes = [federation.run_node(p, rounds=2) for p in federation.partners]
        status = admin.wait(admin.start_round().round_id, timeout=120)
    finally:
        admin.close()
    for thread, errors in nodes:
        thread.join(timeout=60)
        assert not errors, errors
    assert status.state == "closed", status.message
    assert all(p.records > 0 and not p.last_error for p in status.partners)
