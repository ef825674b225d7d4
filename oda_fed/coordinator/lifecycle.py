"""The round lifecycle: moves each round through the state machine of :mod:`.states`.

Each step's work is done by its own module: :mod:`.linking` matches and gives entity ids,
:mod:`.release` makes the products and the round report, :mod:`.reports` publishes the dashboard
once a round is released, :mod:`.retention` deletes CLKs. The lifecycle decides when, records the
state (only by a checked move, so an operator's cancellation and a step finishing at the same
moment cannot both win), owes the nodes their deliveries, tells the connected ones, and writes
the operator's and its own acts to the audit log.

Steps run on one worker thread (:mod:`.worker`), one round at a time. A step looks only at the
stored state, so it is safe to run again: a restarted coordinator resumes every round by
scheduling it. The worker also wakes at the next round's deadline and cancels a round not released
by then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from oda_fed.coordinator import (
    analysis,
    deadlines,
    instructions,
    linking,
    release,
    reports,
    retention,
)
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.pins import Pin
from oda_fed.coordinator.state import CoordinatorState, Refusal, Status
from oda_fed.coordinator.states import CANCELLABLE, sources_of
from oda_fed.coordinator.store import Round
from oda_fed.coordinator.worker import RoundWorker
from oda_fed.transport.messages import CLKS
from oda_fed.transport.protocol import COORDINATOR, AuditKind, RoundState, cut, new_round_id

log = logging.getLogger(__name__)

_S = RoundState


def _on(round_id: str) -> dict[str, dict[str, str]]:
    """A log call's fields about a round (JSON logs show them apart from the message)."""
    return {"extra": {"round_id": round_id}}


#: An act for the audit log: its kind, who did it, and its detail.
Act = tuple[AuditKind, str, dict[str, str]]


class Lifecycle:
    """Starts, advances, releases, cancels and expires rounds."""

    def __init__(self, state: CoordinatorState) -> None:
        self.state = state
        self._lock = threading.Lock()  # one step at a time
        self._starting = threading.Lock()  # two operators starting rounds at once open one
        self._worker = RoundWorker(
            advance=self.advance, expire=self.expire, nap=lambda: deadlines.nap(state)
        )
        self._steps: dict[RoundState, Callable[[Round], bool]] = {
            _S.OPEN: self._collect_clks,
            _S.UPLOADING: self._collect_clks,
            _S.MATCHING: self._match,
            _S.ANALYSING: self._analyse,
            _S.RELEASED: self._close_when_delivered,
        }

    def start(self) -> None:
        """Delete what retention says must go, pick up rounds under way, start the worker."""
        retention.enforce(self.state)
        for r in self.state.store.rounds.active():
            log.info("resuming round %s (%s)", r.round_id, r.state, **_on(r.round_id))
            self.schedule(r.round_id)
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def schedule(self, round_id: str) -> None:
        """Advance the round on the worker thread, as soon as it is free."""
        self._worker.schedule(round_id)

    # --- the operator's acts ----------------------------------------------------------------------

    def start_round(self, *, operator: str) -> Round:
        """Open a round for every partner; refused while another round is under way."""
        with self._starting:
            r = self._open_round(operator)
        self._notify()
        return r

    def _open_round(self, operator: str) -> Round:
        rounds = self.state.store.rounds
        active = rounds.active()
        if active:
            busy = active[0]
            raise Refusal(
                Status.FAILED_PRECONDITION,
                f"round {busy.round_id} is still {busy.state}; wait for it to finish (it is "
                f"cancelled at its deadline, {busy.deadline}), or cancel it with "
                f"`oda-fed coordinator cancel-round {busy.round_id} --reason ...`",
                kind=AuditKind.REFUSED_CALL,
                detail={"method": "StartRound"},
            )
        hours = self.state.project.rounds.deadline_hours
        r = rounds.create(
            round_id=new_round_id(),
            project=self.state.fingerprint,
            partners=self.state.partners,
            deadline=datetime.now(UTC) + timedelta(hours=hours),
        )
        self._log(r.round_id, (AuditKind.START_ROUND, operator, {"deadline": r.deadline}))
        log.info("round %s opened for %d partners", r.round_id, len(self.state.partners),
                 **_on(r.round_id))  # fmt: skip
        return r

    def release(self, round_id: str, *, operator: str) -> Round:
        """Release a round's products to their recipients, once an operator has reviewed them."""
        r = self._get(round_id)
        act = (AuditKind.RELEASE_ROUND, operator, {})
        if r.state is not _S.AWAITING_RELEASE or not self._release(r, act=act):
            auto = (
                " (the project sets auto_release)" if self.state.project.rounds.auto_release else ""
            )
            raise self._refusal(round_id, "only a round awaiting_release can be released" + auto,
                                method="ReleaseRound")  # fmt: skip
        return self._get(round_id)

    def cancel(self, round_id: str, *, reason: str, operator: str) -> Round:
        """Cancel a round that is not yet released: nothing more is matched, shared or released."""
        r = self._get(round_id)
        message = f"cancelled by operator '{operator}': {cut(reason)}"
        act = (AuditKind.CANCEL_ROUND, operator, {"reason": cut(reason)})
        if r.state not in CANCELLABLE or not self._cancel(r, message, act=act):
            raise self._refusal(round_id, "only a round not yet released can be cancelled",
                                method="CancelRound")  # fmt: skip
        return self._get(round_id)

    def expire(self, now: datetime | None = None) -> list[str]:
        """Cancel every round whose deadline has passed before it was released."""
        cancelled = []
        for r, waiting in deadlines.overdue(self.state, now=now or datetime.now(UTC)):
            message = f"cancelled: its deadline {r.deadline} passed while {waiting}"
            act = (
                AuditKind.DEADLINE_PASSED,
                COORDINATOR,
                {"deadline": r.deadline, "waiting": cut(waiting)},
            )
            if self._cancel(r, message, act=act):
                log.warning("round %s %s", r.round_id, message, **_on(r.round_id))
                cancelled.append(r.round_id)
        return cancelled

    # --- stepping ---------------------------------------------------------------------------------

    def advance(self, round_id: str) -> None:
        """Take every step the round's stored state allows now."""
        with self._lock:
            try:
                while (r := self.state.store.rounds.get(round_id)) is not None:
                    step = self._steps.get(r.state)
                    if step is None or not step(r):
                        return
            except Exception as exc:  # a bug or broken data must not leave the round hanging
                log.exception("round %s failed", round_id, **_on(round_id))
                unfinished = [s for s in _S if not s.finished]
                if self.state.store.rounds.move(round_id, to=_S.FAILED, allowed_from=unfinished,
                                                message=f"coordinator error: {cut(str(exc))}"):  # fmt: skip
                    self._finish(round_id)

    def _collect_clks(self, r: Round) -> bool:
        rounds, uploads = self.state.store.rounds, self.state.store.uploads
        if r.state is _S.OPEN and uploads.started(round_id=r.round_id):
            return rounds.move(r.round_id, to=_S.UPLOADING, allowed_from=[_S.OPEN])
        confirmed = _confirmed_uploads(self.state, r.round_id)
        if all(
            p in confirmed and uploads.complete(round_id=r.round_id, partner=p, upload=CLKS)
            for p in self.state.partners
        ):
            return rounds.move(r.round_id, to=_S.MATCHING, allowed_from=sources_of(_S.MATCHING))
        return False

    def _match(self, r: Round) -> bool:
        matched = linking.match_round(self.state, r.round_id)
        if matched is None:  # its cluster failed: it stays in matching, to be matched again
            return False
        moved = self.state.store.rounds.move(
            r.round_id,
            to=_S.ANALYSING,
            allowed_from=[_S.MATCHING],
            message=matched.message,
            entities=matched.entities,
            linked_entities=matched.linked,
            linkage=matched.message,
            quality_report=str(matched.quality_report or ""),
            degenerate="\n".join(matched.degenerate),
        )
        log.info("round %s: %d entities (%d linked)", r.round_id, matched.entities, matched.linked,
                 **_on(r.round_id))  # fmt: skip
        return moved

    def _analyse(self, r: Round) -> bool:
        self._owe(release.analysis_deliveries(self.state, r.round_id))
        if release.missing_uploads(self.state, r.round_id):
            return False
        made = analysis.make_products(self.state, r.round_id)
        # A certificate refused for a partner during this round may mean the pinned one is not
        # the partner's own node: an operator decides before anything is released.
        conflicts = self.state.store.pins.conflicts_since(r.created)
        # So does a linkage that cannot be trusted (a degenerate fit).
        trusted = not r.degenerate
        if self.state.project.rounds.auto_release and not made.held and not conflicts and trusted:
            return self._release(
                r, act=(AuditKind.AUTO_RELEASE, COORDINATOR, {}), report=str(made.report)
            )
        return self.state.store.rounds.move(
            r.round_id,
            to=_S.AWAITING_RELEASE,
            allowed_from=[_S.ANALYSING],
            report=str(made.report),
            message=_held_for_release(r.round_id, made, conflicts, r.degenerate),
        )

    def _release(self, r: Round, *, act: Act, **fields: str) -> bool:
        kind, who, _ = act
        by = "auto_release" if kind is AuditKind.AUTO_RELEASE else f"operator:{who}"
        moved = self.state.store.rounds.move(
            r.round_id,
            to=_S.RELEASED,
            allowed_from=sources_of(_S.RELEASED),
            released_by=by,
            message=self._with_linkage(r, f"products released by {by}"),
            **fields,
        )
        if moved:
            self._log(r.round_id, act)  # the approval is logged before anything is sent
            self.state.releases.record(r.round_id)
            reports.publish(self.state, r.round_id)
            self._owe(release.product_deliveries(self.state, r.round_id))
            log.info("round %s: products released by %s", r.round_id, by, **_on(r.round_id))
        return moved

    def _close_when_delivered(self, r: Round) -> bool:
        self._owe(release.product_deliveries(self.state, r.round_id))
        owed = self.state.store.deliveries.of_round(r.round_id)
        if any(not d.done for d in owed if d.kind is not DeliveryKind.ROUND_CLOSED):
            return False
        message = self._with_linkage(r, "all deliveries acknowledged")
        if not self.state.store.rounds.move(
            r.round_id, to=_S.CLOSED, allowed_from=[_S.RELEASED], message=message
        ):
            return False
        log.info("round %s closed", r.round_id, **_on(r.round_id))
        self._finish(r.round_id)
        return True

    def _cancel(self, r: Round, message: str, *, act: Act) -> bool:
        if not self.state.store.rounds.move(
            r.round_id, to=_S.CANCELLED, allowed_from=CANCELLABLE, message=message
        ):
            return False
        self._log(r.round_id, act)
        self._finish(r.round_id)
        return True

    def _finish(self, round_id: str) -> None:
        """Tell every partner the round has ended, then apply retention."""
        self._owe([Delivery(round_id, p, DeliveryKind.ROUND_CLOSED) for p in self.state.partners])
        self.state.releases.drop(round_id)  # a released round's cells are in the ledger by now
        retention.enforce(self.state)

    # --- helpers ----------------------------------------------------------------------------------

    def _owe(self, items: list[Delivery]) -> None:
        if items:
            self.state.store.deliveries.add(items)
        self._notify()

    def _notify(self) -> None:
        for partner in self.state.partners:
            instructions.push(self.state, partner)

    def _get(self, round_id: str) -> Round:
        r = self.state.store.rounds.get(round_id)
        if r is None:
            raise Refusal(Status.NOT_FOUND, f"no round {round_id!r}", kind=None)
        return r

    def _with_linkage(self, r: Round, message: str) -> str:
        """``message``, followed for a project with stable entity ids by how matching went: for
        the operator only (partners are told :func:`.instructions.told_partners`)."""
        if not self.state.project.linkage.stable_entity_ids or not r.linkage:
            return message
        return f"{message}; {r.linkage}"

    def _log(self, round_id: str, act: Act) -> None:
        kind, sender, detail = act
        self.state.crossings.record(
            sender=sender, recipient=COORDINATOR, kind=kind, round_id=round_id, detail=detail
        )

    def _refusal(self, round_id: str, rule: str, *, method: str) -> Refusal:
        return Refusal(
            Status.FAILED_PRECONDITION,
            f"round {round_id} is {self._get(round_id).state}; {rule}",
            kind=AuditKind.REFUSED_CALL,
            round_id=round_id,
            detail={"method": method},
        )


def _held_for_release(
    round_id: str, made: analysis.Made, conflicts: list[Pin], degenerate: str = ""
) -> str:
    """The status of a round whose products wait for an operator: what held them, if anything
    but the project's choice, and what to do."""
    held = (
        f"the release ledger held {len(made.held)} cell(s), which stay suppressed: "
        + "; ".join(made.held)
        + ". "
        if made.held
        else ""
    )
    held += "".join(
        f"a second certificate (serial {p.conflict_serial}) tried to act for "
        f"'{p.partner}' at {p.conflict_at}, while certificate {p.serial} is pinned for it: "
        "make sure the pinned one is the partner's own node before releasing. "
        for p in conflicts
    )
    if degenerate:
        held += (
            "matching found a degenerate fit ("
            + "; ".join(degenerate.splitlines())
            + "): find the cause, and release only if the entities are right. "
        )
    return (
        f"products made and checked, held for release: {held}review {made.report.name} and the "
        f"quality report, then run `oda-fed coordinator release {round_id}`"
    )


def _confirmed_uploads(state: CoordinatorState, round_id: str) -> set[str]:
    """The partners whose nodes have said their CLK upload is done. A round is matched only once
    every node has: one that finds something else uploaded in its name says so instead, and what
    was held is discarded (:mod:`oda_fed.coordinator.nodes`)."""
    return {
        d.partner
        for d in state.store.deliveries.of_round(round_id)
        if d.kind is DeliveryKind.ENCODE_AND_UPLOAD and d.done
    }
