"""Handlers of the operator's calls: start a round, see where it stands, release it, cancel it.

The operator's name comes from the certificate the call was made with, and goes into the audit
log with every act that changes a round.
"""

from __future__ import annotations

from oda_fed.coordinator.deliveries import DeliveryKind
from oda_fed.coordinator.state import CoordinatorState, Refusal, Status
from oda_fed.coordinator.store import Round
from oda_fed.transport.messages import PartnerProgress, ProductSummary, RoundStatus
from oda_fed.transport.protocol import AuditKind


def start_round(state: CoordinatorState, *, operator: str, fingerprint: str) -> RoundStatus:
    """Open a round for every partner (refused while another is under way)."""
    if fingerprint and fingerprint != state.fingerprint:
        raise Refusal(
            Status.FAILED_PRECONDITION,
            f"this coordinator runs project {state.fingerprint}, not {fingerprint}",
            kind=AuditKind.REFUSED_CALL,
            detail={"method": "StartRound"},
        )
    return status(state, state.lifecycle.start_round(operator=operator))


def get_round(state: CoordinatorState, round_id: str) -> RoundStatus:
    """A round's status (the latest round when ``round_id`` is empty)."""
    r = state.store.rounds.get(round_id or None)
    if r is None:
        raise Refusal(Status.NOT_FOUND, f"no round {round_id or 'yet'}", kind=None)
    return status(state, r)


def release_round(state: CoordinatorState, *, operator: str, round_id: str) -> RoundStatus:
    """Release the products of a round that is awaiting release."""
    return status(state, state.lifecycle.release(round_id, operator=operator))


def cancel_round(
    state: CoordinatorState, *, operator: str, round_id: str, reason: str
) -> RoundStatus:
    """Cancel a round that is not yet released; ``reason`` is shown to every partner."""
    if not reason.strip():
        raise Refusal(
            Status.INVALID_ARGUMENT,
            "say why the round is cancelled (--reason): every partner is told",
            kind=AuditKind.REFUSED_CALL,
            round_id=round_id,
            detail={"method": "CancelRound"},
        )
    return status(state, state.lifecycle.cancel(round_id, reason=reason, operator=operator))


def status(state: CoordinatorState, r: Round) -> RoundStatus:
    """What the operator is shown of a round."""
    store = state.store
    connected = state.sessions.connected()
    owed = store.deliveries.of_round(r.round_id)
    delivered = {d.partner for d in owed if d.kind is DeliveryKind.ENTITIES_READY and d.done}
    # Oldest first, so the last one a partner could not do wins.
    errors = {d.partner: f"{d.kind}: {d.error}" for d in owed if d.error}
    partners = []
    for partner in state.partners:
        up = store.uploads.state(round_id=r.round_id, partner=partner)
        partners.append(
            PartnerProgress(
                partner=partner,
                connected=partner in connected,
                records=up.total_records if up else 0,
                uploaded=bool(up and up.complete),
                entities_delivered=partner in delivered,
                last_error=errors.get(partner, ""),
            )
        )
    recipients = {p.id: tuple(p.recipients) for p in state.project.products}
    return RoundStatus(
        round_id=r.round_id,
        state=r.state,
        message=r.message,
        entities=r.entities,
        linked_entities=r.linked_entities,
        partners=tuple(partners),
        product_files=tuple(path for *_, path in store.results.product_files(round_id=r.round_id)),
        report_path=r.report,
        deadline=r.deadline,
        quality_report_path=r.quality_report,
        products=tuple(
            ProductSummary(
                product_id=product_id,
                title=title,
                recipients=recipients.get(product_id, ()),
                cells=cells,
                suppressed=suppressed,
            )
            for product_id, title, cells, suppressed in store.results.product_tables(
                round_id=r.round_id
            )
        ),
        released_by=r.released_by,
    )
