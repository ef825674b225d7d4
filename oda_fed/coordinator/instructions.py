"""What a connected node is sent: each delivery it is owed, as an instruction, when its round's
state says so (:data:`oda_fed.coordinator.states.OFFERED`)."""

from __future__ import annotations

from oda_fed.coordinator import release
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.coordinator.states import OFFERED
from oda_fed.coordinator.store import Round
from oda_fed.transport import witness as witnessing
from oda_fed.transport.messages import (
    Body,
    ComputeTable,
    EncodeAndUpload,
    EntitiesReady,
    Instruction,
    RoundClosed,
    ShareAttribute,
)
from oda_fed.transport.protocol import RoundState


def push(state: CoordinatorState, partner: str) -> None:
    """Offer a connected partner every instruction its rounds' states allow and it has not
    acknowledged yet (a session offers each instruction once)."""
    if partner not in state.sessions.connected():
        return
    for delivery, round_state in state.store.deliveries.pending(partner=partner):
        if round_state in OFFERED[delivery.kind]:
            state.sessions.offer(partner, instruction_for(state, delivery))


def instruction_for(state: CoordinatorState, delivery: Delivery) -> Instruction:
    """The instruction that makes ``delivery``."""
    return Instruction(
        instruction_id=delivery.instruction_id,
        project_fingerprint=state.fingerprint,
        round_id=delivery.round_id,
        body=_body(state, delivery),
    )


def _body(state: CoordinatorState, delivery: Delivery) -> Body:
    kind = delivery.kind
    if kind is DeliveryKind.ENCODE_AND_UPLOAD:
        return EncodeAndUpload(
            chunk_records=state.chunk_records, clk_bits=state.project.linkage.wire_bits
        )
    if kind is DeliveryKind.SHARE_ATTRIBUTE:
        return ShareAttribute(product_id=delivery.product_id, attribute=delivery.attribute)
    if kind is DeliveryKind.COMPUTE_TABLE:
        return ComputeTable(product_id=delivery.product_id)
    if kind is DeliveryKind.ENTITIES_READY:
        return EntitiesReady()
    r = state.store.rounds.get(delivery.round_id)
    assert r is not None  # deliveries are only owed for rounds that exist
    if kind is DeliveryKind.PRODUCT_RELEASE:
        return release.product_release(
            state,
            round_id=delivery.round_id,
            product_id=delivery.product_id,
            released_by=r.released_by,
        )
    # The coordinator's checkpoint of its audit log, for the node to check and cosign.
    offer = witnessing.coordinator_offer(
        state.crossings, round_id=delivery.round_id, peer=delivery.partner
    )
    return RoundClosed(status=r.state.value, message=told_partners(r), witness=offer)


def told_partners(r: Round) -> str:
    """What every partner is told when a round ends. Never the coordinator's own figures (entity
    counts, what an index update changed): with stable entity ids a partner that adds one record
    would read off whether it joined an entity. Only released products carry figures."""
    if r.state is RoundState.CANCELLED:
        return r.message  # who cancelled and why, or the deadline and what it was waiting for
    if r.state is RoundState.FAILED:
        return "failed at the coordinator; the ODA's operator has the details"
    return "closed: every delivery acknowledged"
