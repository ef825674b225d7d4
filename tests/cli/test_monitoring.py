"""``--metrics`` and ``--log-format`` of the long-running commands, run as an operator would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oda_fed.cli import app

pytestmark = pytest.mark.grpc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_coordinator_serve_writes_json_lines_and_serves_metrics(federation, tmp_path) -> None:
    federation.stop_coordinator()
    port_file, metrics = tmp_path / "port", _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "oda_fed", "coordinator", "serve",
         "--config", str(federation.coordinator_config), "--port-file", str(port_file),
         "--metrics", f"127.0.0.1:{metrics}", "--log-format", "json"],
        stderr=subprocess.PIPE, text=True, env=os.environ,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert serve.poll() is None, serve.stderr.read()
            assert time.monotonic() < deadline, "the coordinator did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{metrics}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        assert "oda_fed_grpc_requests_total" in text and 'oda_fed_rounds{state="open"} 0.0' in text
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=60)
    assert serve.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "no log lines"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert line["time"].endswith("+00:00")
    started = [line for line in lines if "listening on port" in line["message"]]
    assert started and started[0]["port"] == int(Path(port_file).read_text())
    assert any(line.get("metrics_port") == metrics for line in lines)


@pytest.mark.parametrize("command", [["coordinator", "serve"], ["node", "run"]])
def test_a_bad_metrics_address_or_log_format_is_one_line(federation, command) -> None:
    config = (
        federation.coordinator_config
        if command[0] == "coordinator"
        else (federation.node_config("council"))
    )
    runner = CliRunner()
    bad = runner.invoke(app, [*command, "--config", str(config), "--metrics", "9464"])
    assert bad.exit_code != 0 and "is not HOST:PORT" in bad.output
    bad = runner.invoke(app, [*command, "--config", str(config), "--log-format", "xml"])
    assert bad.exit_code == 2 and "text or json" in bad.output
