"""Shared fixtures for the coordinator's tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def serve_refused() -> Callable[[Path], object]:
    """`oda-fed coordinator serve --config CONFIG`, which must refuse to start: the CLI's result
    (run in a thread, so a coordinator that starts instead fails the test after 60 s)."""
    from typer.testing import CliRunner

    from oda_fed.cli import app

    def serve(config: Path) -> object:
        result: list = []
        args = ["coordinator", "serve", "--config", str(config)]
        thread = threading.Thread(target=lambda: result.append(CliRunner().invoke(app, args)),
                                  daemon=True)  # fmt: skip
        thread.start()
        thread.join(timeout=60)
        assert result, "the coordinator started instead of refusing"
        return result[0]

    return serve
