"""`oda-fed coordinator start-round`, `status`, `release` and `cancel-round` against a real
coordinator over mutual TLS."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w
from typer.testing import CliRunner

from oda_fed.cli import app

pytestmark = pytest.mark.grpc

runner = CliRunner(env={"COLUMNS": "200"})


def _operator_config(federation):
    """coordinator.toml pointing at the port the fixture's coordinator serves on (the operator
    commands read the address from the file)."""
    config = federation.coordinator_config
    doc = tomllib.loads(config.read_text())
    doc["listen"] = f"127.0.0.1:{federation.port}"
    config.write_text(tomli_w.dumps(doc))
    return config


def coordinator(*args: str):
    return runner.invoke(app, ["coordinator", *args])


def test_start_a_round_then_ask_for_its_status(federation) -> None:
    config = _operator_config(federation)

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


def test_review_then_release_a_round_from_the_command_line(federation) -> None:
    federation.amend_project(lambda doc: doc["rounds"].update(auto_release=False))
    config = _operator_config(federation)
    nodes = [federation.run_node(p) for p in federation.partners]
    started = coordinator("start-round", "--config", str(config))
    assert started.exit_code == 0, started.output
    round_id = started.output.splitlines()[0].removeprefix("started round ")
    # start-round follows the round until it needs the operator, and says what to do.
    assert f"round {round_id}: awaiting_release" in started.output
    assert f"oda-fed coordinator release {round_id}" in started.output
    assert "known_to_services_by_ward" in started.output and "report: " in started.output
    assert "unless released by then" in started.output

    released = coordinator("release", round_id, "--config", str(config))
    assert released.exit_code == 0, released.output
    assert f"round {round_id}: closed" in released.output
    assert "released by operator:operator" in released.output
    for thread, errors in nodes:
        thread.join(timeout=60)
        assert not errors, errors

    again = coordinator("release", round_id, "--config", str(config))
    assert again.exit_code == 1
    assert "only a round awaiting_release can be released" in again.output


def test_cancel_a_round_from_the_command_line(federation) -> None:
    config = _operator_config(federation)
    round_id = coordinator("start-round", "--config", str(config), "--no-wait").output
    round_id = round_id.splitlines()[0].removeprefix("started round ")
    refused = coordinator("start-round", "--config", str(config), "--no-wait")
    assert refused.exit_code == 1 and f"cancel-round {round_id}" in refused.output

    missing = coordinator("cancel-round", round_id, "--config", str(config))
    assert missing.exit_code == 2 and "--reason" in missing.output
    cancelled = coordinator(
        "cancel-round", round_id, "--reason", "extract re-run", "--config", str(config)
    )
    assert cancelled.exit_code == 0, cancelled.output
    assert f"round {round_id}: cancelled" in cancelled.output
    assert "cancelled by operator 'operator': extract re-run" in cancelled.output
    unknown = coordinator("cancel-round", "r-none", "--reason", "x", "--config", str(config))
    assert unknown.exit_code == 1 and "no round 'r-none'" in unknown.output
