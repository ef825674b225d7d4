"""Small audit logs to verify and to attack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oda_fed.audit import AuditLog

PROJECT = "sha256:" + "3f" * 32


def _write_log(path: Path, n: int, *, party: str = "council") -> Path:
    """A log of ``n`` crossings between ``party`` and the coordinator, alternating direction."""
    other = "coordinator" if party != "coordinator" else "council"
    with AuditLog(path, party=party) as log:
        for i in range(n):
            sender, recipient = (party, other) if i % 2 == 0 else (other, party)
            log.append(
                sender=sender,
                recipient=recipient,
                kind="clk_chunk" if i % 2 == 0 else "instruction:encode",
                project=PROJECT,
                payload=f"payload {i}".encode(),
                records=10 * i,
                round_id="r1",
                detail={"chunk": i},
            )
    return path


@pytest.fixture(scope="session")
def project() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def write_log() -> Callable[..., Path]:
    # A fixture rather than an import: with --import-mode=importlib a test cannot import conftest.
    return _write_log
