"""`oda-fed coordinator start-round` and `status` against a real coordinator over mutual TLS."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w
from typer.testing import CliRunner

from oda_fed.cli import app

pytestmark = pytest.mark.grpc

runner = CliRunner(env={"COLUMNS": "200"})


def test_start_a_round_then_ask_for_its_status(federation) -> None:
    # The fixture serves on a free port; the operator commands read the address from the file.
    config = federation.coordinator_config
    doc = tomllib.loads(config.read_text())
    doc["listen"] = f"127.0.0.1:{federation.port}"
    config.write_text(tomli_w.dumps(doc))

    started = runner.invoke(
        app, ["coordinator", "start-round", "--config", str(config), "--no-wait"]
    )
    assert started.exit_code == 0, started.output
    round_id = started.output.splitlines()[0].removeprefix("started round ")
    assert f"round {round_id}:" in started.output

    status = runner.invoke(
        app, ["coordinator", "status", "--config", str(config), "--round", round_id]
    )
    assert status.exit_code == 0, status.output
    rows = [line.split("│")[1].strip() for line in status.output.splitlines() if "│" in line]
    assert rows == federation.partners  # one row per partner


def test_a_coordinator_without_an_operator_section_is_a_configuration_error(
    federation,
) -> None:
    config = federation.coordinator_config
    doc = tomllib.loads(config.read_text())
    del doc["operator"]
    config.write_text(tomli_w.dumps(doc))
    result = runner.invoke(app, ["coordinator", "status", "--config", str(config)])
    assert result.exit_code == 2 and "[operator]" in result.output
