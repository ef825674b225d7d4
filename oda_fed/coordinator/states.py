"""The round state machine as tables: which moves are allowed, and what a node is offered when.

::

    open ─▶ uploading ─▶ matching ─▶ analysing ─▶ awaiting_release ─▶ released ─▶ closed
      └──────────┴────────────┴───────────┴────────────────┴──▶ cancelled   (operator or deadline)
    any state not yet finished ─▶ failed                                    (a coordinator error)
    analysing ─▶ released directly when the project sets [rounds] auto_release

The states themselves are :class:`oda_fed.transport.protocol.RoundState`, shared with the nodes
and the operator's client. :class:`oda_fed.coordinator.lifecycle.Lifecycle` makes the moves.
"""

from __future__ import annotations

from collections.abc import Mapping

from oda_fed.coordinator.deliveries import DeliveryKind
from oda_fed.transport.protocol import RoundState

_S = RoundState

#: Every move a round may make.
TRANSITIONS: Mapping[RoundState, frozenset[RoundState]] = {
    _S.OPEN: frozenset({_S.UPLOADING, _S.MATCHING, _S.CANCELLED, _S.FAILED}),
    _S.UPLOADING: frozenset({_S.MATCHING, _S.CANCELLED, _S.FAILED}),
    _S.MATCHING: frozenset({_S.ANALYSING, _S.CANCELLED, _S.FAILED}),
    _S.ANALYSING: frozenset({_S.AWAITING_RELEASE, _S.RELEASED, _S.CANCELLED, _S.FAILED}),
    _S.AWAITING_RELEASE: frozenset({_S.RELEASED, _S.CANCELLED, _S.FAILED}),
    _S.RELEASED: frozenset({_S.CLOSED, _S.FAILED}),
    _S.CLOSED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.FAILED: frozenset(),
}


def sources_of(target: RoundState) -> frozenset[RoundState]:
    """The states a round may move to ``target`` from.

    Examples
    --------
    >>> sorted(sources_of(RoundState.RELEASED))
    [<RoundState.ANALYSING: 'analysing'>, <RoundState.AWAITING_RELEASE: 'awaiting_release'>]
    """
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


#: States an operator (or the deadline) can cancel a round in: any before its release.
CANCELLABLE = sources_of(RoundState.CANCELLED)

#: The states in which each kind of delivery is offered to its node. Nothing but the news that the
#: round has ended is offered once it is cancelled or failed: entity ids and attributes of a
#: cancelled round stay where they are.
OFFERED: Mapping[DeliveryKind, frozenset[RoundState]] = {
    DeliveryKind.ENCODE_AND_UPLOAD: frozenset({_S.OPEN, _S.UPLOADING}),
    DeliveryKind.ENTITIES_READY: frozenset({_S.ANALYSING, _S.AWAITING_RELEASE, _S.RELEASED}),
    DeliveryKind.SHARE_ATTRIBUTE: frozenset({_S.ANALYSING}),
    DeliveryKind.COMPUTE_TABLE: frozenset({_S.ANALYSING}),
    DeliveryKind.PRODUCT_RELEASE: frozenset({_S.RELEASED}),
    DeliveryKind.ROUND_CLOSED: frozenset({_S.CLOSED, _S.CANCELLED, _S.FAILED}),
}

#: States in which a node may still upload its CLKs, or an attribute, or fetch its entity ids.
ACCEPTS_CLKS = OFFERED[DeliveryKind.ENCODE_AND_UPLOAD]
ACCEPTS_ATTRIBUTES = OFFERED[DeliveryKind.SHARE_ATTRIBUTE]
SERVES_ENTITIES = OFFERED[DeliveryKind.ENTITIES_READY] | {_S.CLOSED}
