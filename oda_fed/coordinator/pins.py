"""Each partner's node certificate, pinned at first use.

The partnership CA may have signed more than one certificate naming a partner: a renewal, a
mistake, or a copy of the CA used where it should not have been. The live-session rule
(:mod:`oda_fed.coordinator.sessions`) keeps a second certificate out only while the partner's
node is connected. A pin keeps it out for good: the first certificate that acts for a partner is
recorded in the coordinator's database when its node says hello or publishes its agreement key,
and every later call for that partner must come with the same certificate, whether or not its
node is connected, across restarts.

A pin moves to another certificate only when the pinned one can no longer be used: it has
expired, or the CA has revoked it (the coordinator's ``revocation_list``). Replacing a node's
certificate is therefore ``oda-fed pki sign --replace`` (which revokes the old one) and the new
CRL handed to the coordinator. Every pin and move is written to the audit log with both
certificates' serials.

The CA refuses to sign a second valid certificate for a name unless told it replaces the first
(:func:`oda_fed.pki.ca.sign_request`), which covers the time before a partner's first
connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from oda_fed.coordinator.db import Database, now, parse_stamp, stamp


@dataclass(frozen=True)
class Pin:
    """The certificate a partner's calls must come with."""

    partner: str
    fingerprint: str
    serial: str
    not_after: datetime
    pinned: str
    #: The last other certificate refused for the partner (serial), and when; "" when none.
    conflict_serial: str = ""
    conflict_at: str = ""


@dataclass(frozen=True)
class Moved:
    """A pin that was set or moved by a call: what the audit log records."""

    pin: Pin
    #: The certificate pinned before, and why it could no longer be used; None at first use.
    previous: Pin | None = None
    why: str = ""


class NotPinned(Exception):
    """The caller's certificate is not the one pinned for the partner it names."""

    def __init__(self, pin: Pin) -> None:
        super().__init__(f"pinned to certificate {pin.serial}")
        self.pin = pin


class Pins:
    """The ``certificate_pins`` table, read once and then kept in memory (it is checked on
    every call of every node)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        rows = db.query(
            "SELECT partner, fingerprint, serial, not_after, pinned, conflict FROM certificate_pins"
        )
        self._pins = {
            p: Pin(p, fp, serial, parse_stamp(after), pinned, *_conflict(conflict))
            for p, fp, serial, after, pinned, conflict in rows
        }

    def get(self, partner: str) -> Pin | None:
        with self._lock:
            return self._pins.get(partner)

    def all(self) -> list[Pin]:
        with self._lock:
            return sorted(self._pins.values(), key=lambda p: p.partner)

    def check(
        self,
        partner: str,
        *,
        fingerprint: str,
        serial: str,
        not_after: datetime,
        revoked: Callable[[str], bool],
        pin: bool = True,
        when: datetime | None = None,
    ) -> Moved | None:
        """Let a call with this certificate act for ``partner``, pinning it if none is usable
        and ``pin`` (a call that only reads leaves the partner unpinned).

        Returns
        -------
        Moved | None
            The pin this call set (first use) or moved (the old certificate expired or was
            revoked), for the audit log; None when the certificate was pinned already, or the
            call did not pin.

        Raises
        ------
        NotPinned
            Another certificate, still usable, is pinned for ``partner``.
        """
        with self._lock:
            old = self._pins.get(partner)
            if old is not None and old.fingerprint == fingerprint:
                return None
            why = ""
            if old is not None:
                why = _unusable(old, revoked=revoked, when=when or datetime.now(UTC))
                if not why:
                    raise NotPinned(self._conflict(old, serial))
            if not pin:
                return None
            new = Pin(partner, fingerprint, serial, not_after, now())
            with self._db.tx() as db:
                # A new pin has no conflict yet, whatever the certificate before it had.
                db.execute(
                    "INSERT INTO certificate_pins (partner, fingerprint, serial, not_after, "
                    "pinned, conflict) VALUES (:partner, :fingerprint, :serial, :not_after, "
                    ":pinned, '') ON CONFLICT (partner) DO UPDATE SET "
                    "fingerprint = excluded.fingerprint, serial = excluded.serial, "
                    "not_after = excluded.not_after, pinned = excluded.pinned, conflict = ''",
                    partner=partner,
                    fingerprint=fingerprint,
                    serial=serial,
                    not_after=stamp(not_after),
                    pinned=new.pinned,
                )
            self._pins[partner] = new
            return Moved(new, previous=old, why=why)

    def _conflict(self, pin: Pin, serial: str) -> Pin:
        """Record that certificate ``serial`` was refused for ``pin``'s partner (the lock is
        held); the pin as it was before."""
        when = now()
        with self._db.tx() as db:
            db.execute(
                "UPDATE certificate_pins SET conflict = :conflict WHERE partner = :partner",
                conflict=f"{serial} at {when}",
                partner=pin.partner,
            )
        self._pins[pin.partner] = replace(pin, conflict_serial=serial, conflict_at=when)
        return pin

    def conflicts_since(self, when: str) -> list[Pin]:
        """The pins another certificate tried to get past at or after ``when`` (a stamp)."""
        after = parse_stamp(when)
        with self._lock:
            return [
                p
                for p in sorted(self._pins.values(), key=lambda p: p.partner)
                if p.conflict_at and parse_stamp(p.conflict_at) >= after
            ]


def _conflict(text: str) -> tuple[str, str]:
    serial, _, at = text.partition(" at ")
    return serial, at


def _unusable(pin: Pin, *, revoked: Callable[[str], bool], when: datetime) -> str:
    """Why the pinned certificate can no longer be used ("" while it can)."""
    if revoked(pin.serial):
        return "revoked"
    if pin.not_after <= when:
        return "expired"
    return ""
