"""Certificate pins in the coordinator's database: set at first use, kept across restarts, moved
only from a revoked or expired certificate, and conflicts remembered for the release gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import URL

from oda_fed.coordinator.db import Database
from oda_fed.coordinator.pins import NotPinned, Pins
from oda_fed.coordinator.postgres import database_url

SOON = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def where(tmp_path: Path, backend: str | None) -> Path | URL:
    """The coordinator's SQLite file, or its PostgreSQL database: every test here runs on both."""
    return database_url(backend) if backend else tmp_path / "c.sqlite"


def _cert(letter: str, *, not_after: datetime = SOON) -> dict:
    return {"fingerprint": "sha256:" + letter * 64, "serial": letter * 4, "not_after": not_after}


def _never(_serial: str) -> bool:
    return False


def test_the_first_certificate_is_pinned_and_kept_across_a_restart(where: Path | URL) -> None:
    db = Database(where)
    pins = Pins(db)
    # A call that only reads pins nothing.
    assert pins.check("council", **_cert("a"), revoked=_never, pin=False) is None
    assert pins.get("council") is None
    moved = pins.check("council", **_cert("a"), revoked=_never)
    assert moved is not None and moved.previous is None and moved.pin.serial == "aaaa"
    assert pins.check("council", **_cert("a"), revoked=_never) is None  # already pinned
    db.close()

    db = Database(where)
    pins = Pins(db)
    with pytest.raises(NotPinned) as info:
        pins.check("council", **_cert("b"), revoked=_never)
    assert info.value.pin.serial == "aaaa"
    assert pins.get("council").serial == "aaaa"  # type: ignore[union-attr]
    db.close()


def test_a_refused_certificate_is_remembered_for_the_rounds_made_since(where: Path | URL) -> None:
    db = Database(where)
    pins = Pins(db)
    pins.check("council", **_cert("a"), revoked=_never)
    before = (datetime.now(UTC) - timedelta(seconds=5)).isoformat(timespec="seconds")
    with pytest.raises(NotPinned):
        pins.check("council", **_cert("b"), revoked=_never, pin=False)
    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat(timespec="seconds")
    assert [p.conflict_serial for p in pins.conflicts_since(before)] == ["bbbb"]
    assert pins.conflicts_since(later) == []
    db.close()
    assert [p.conflict_serial for p in Pins(Database(where)).conflicts_since(
        before)] == ["bbbb"]  # fmt: skip


def test_a_pin_moves_only_from_a_revoked_or_expired_certificate(where: Path | URL) -> None:
    pins = Pins(Database(where))
    pins.check("council", **_cert("a"), revoked=_never)
    moved = pins.check("council", **_cert("b"), revoked=lambda serial: serial == "aaaa")
    assert moved is not None and (moved.previous.serial, moved.why) == ("aaaa", "revoked")  # type: ignore[union-attr]

    pins.check("police", **_cert("c", not_after=datetime(2020, 1, 1, tzinfo=UTC)),
               revoked=_never)  # fmt: skip
    moved = pins.check("police", **_cert("d"), revoked=_never)
    assert moved is not None and moved.why == "expired"
    # A revoked certificate that was never pinned moves nothing: the pin stays.
    with pytest.raises(NotPinned):
        pins.check("police", **_cert("e"), revoked=lambda serial: serial == "eeee")
