"""Handlers of the nodes' calls: the control stream, uploads, and entity ids.

Each handler works over plain values and the :class:`~oda_fed.coordinator.state.CoordinatorState`,
after the servicer has taken the caller's partner id from its certificate and checked, with
:func:`bound`, that the certificate holds the partner's live session. Every check that fails
raises a :class:`~oda_fed.coordinator.state.Refusal` before anything is stored or logged as
received; the servicer writes the refusal to the audit log and answers with its status.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from oda_fed.config import LOCAL
from oda_fed.coordinator import instructions, keys
from oda_fed.coordinator.chunks import Chunk, UploadState
from oda_fed.coordinator.db import stamp
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.pins import NotPinned
from oda_fed.coordinator.release import attribute_upload, table_upload
from oda_fed.coordinator.sessions import Holder, SessionTaken
from oda_fed.coordinator.state import CoordinatorState, Refusal, Status
from oda_fed.coordinator.states import ACCEPTS_ATTRIBUTES, ACCEPTS_CLKS, SERVES_ENTITIES
from oda_fed.coordinator.uploads import (
    clk_chunk_problem,
    evidence_problem,
    record_key_problem,
    token_blob,
    token_problem,
)
from oda_fed.encoding.evidence import linkage_layout
from oda_fed.errors import ProtocolError
from oda_fed.products.crosstab import ProductError
from oda_fed.transport import witness as witnessing
from oda_fed.transport.messages import (
    CLKS,
    AttributeChunk,
    ClkChunk,
    EntityChunk,
    FetchEntitiesRequest,
    Hello,
    Instruction,
    InstructionResult,
    LocalTable,
    Received,
    Upload,
    UploadReceipt,
    UploadStatusRequest,
    Witness,
    evidence_blob,
)
from oda_fed.transport.protocol import (
    CHUNK_RECORDS,
    COORDINATOR,
    MAX_VALUE_CHARS,
    UPLOAD_SLOT_WAIT,
    AuditKind,
    RoundState,
    chunks,
    cut,
)

log = logging.getLogger(__name__)
M = TypeVar("M")


def check_partner(state: CoordinatorState, name: str, *, kind: AuditKind) -> str:
    """``name`` (from the caller's certificate) if it is a partner of the project."""
    if name not in state.partners:
        raise Refusal(
            Status.PERMISSION_DENIED,
            f"'{name}' is not a partner in project '{state.project.name}'",
            kind=kind,
        )
    return name


def bound(state: CoordinatorState, partner: str, caller: Holder, *, kind: AuditKind) -> None:
    """Refuse a call for ``partner`` unless ``caller``'s certificate holds its live session.

    Uploads, their status and entity ids are served only within a live session; the key relay's
    calls come before the node says hello, so they are refused only while the session is live
    under another certificate. Either way, another certificate naming the same partner is never
    taken for the partner while its node is connected.
    """
    live = state.sessions.holder(partner)
    detail = {"certificate": caller.serial}
    if live is None:
        if kind is AuditKind.REFUSED_KEYS:
            return
        raise Refusal(
            Status.FAILED_PRECONDITION,
            f"'{partner}' has no live session at this coordinator: it uploads and fetches only "
            "from the node that holds its control stream. Run the node (`oda-fed node run`); it "
            "acts when the coordinator tells it to",
            kind=kind,
            detail=detail,
        )
    if live.fingerprint != caller.fingerprint:
        raise _taken(partner, live, caller, kind=kind)


def pinned(
    state: CoordinatorState, partner: str, caller: Holder, *, kind: AuditKind, pin: bool = False
) -> None:
    """Refuse a call for ``partner`` unless ``caller``'s certificate is the one pinned for it
    (:mod:`oda_fed.coordinator.pins`). With ``pin`` (an accepted Hello or agreement key) the
    certificate is pinned if none is, or if the pinned one was revoked or has expired; either
    is written to the audit log."""
    try:
        moved = state.store.pins.check(
            partner,
            fingerprint=caller.fingerprint,
            serial=caller.serial,
            not_after=caller.not_after,
            revoked=state.revoked,
            pin=pin,
        )
    except NotPinned as refused:
        pin = refused.pin
        raise Refusal(
            Status.PERMISSION_DENIED,
            f"'{partner}' is pinned to another certificate (serial {pin.serial}, pinned "
            f"{pin.pinned}, valid until {stamp(pin.not_after)}); this certificate (serial "
            f"{caller.serial}) may not act for '{partner}'. If it replaces that one, the CA "
            "revokes the old one (`oda-fed pki sign --replace`, or `oda-fed pki revoke`) and "
            "the coordinator's revocation_list is updated; if no one expected a second "
            f"certificate for '{partner}', tell the CA holder and the partners' DPOs",
            kind=kind,
            detail={"certificate": caller.serial, "pinned_certificate": pin.serial},
        ) from None
    if moved is None:
        return
    detail = {"certificate": moved.pin.serial, "fingerprint": moved.pin.fingerprint}
    if moved.previous is not None:
        detail |= {"previous_certificate": moved.previous.serial, "previous_was": moved.why}
        log.warning("%s's certificate pin moved from %s (%s) to %s", partner,
                    moved.previous.serial, moved.why, moved.pin.serial)  # fmt: skip
    state.crossings.record(
        sender=partner, recipient=COORDINATOR, kind=AuditKind.CERTIFICATE_PINNED, detail=detail
    )


def _taken(partner: str, live: Holder, caller: Holder, *, kind: AuditKind) -> Refusal:
    return Refusal(
        Status.PERMISSION_DENIED,
        f"the session of '{partner}' is live under another certificate (serial {live.serial}, "
        f"connected since {live.since}); this certificate (serial {caller.serial}) may not act "
        f"for '{partner}' meanwhile. If it replaces that one, stop the old node or revoke its "
        "certificate (`oda-fed pki revoke`); if no one expected a second certificate for "
        f"'{partner}', tell the CA holder and the partners' DPOs",
        kind=kind,
        detail={"certificate": caller.serial, "live_certificate": live.serial},
    )


def _check_project(
    state: CoordinatorState, fingerprint: str, *, kind: AuditKind, round_id: str | None = None
) -> None:
    if fingerprint != state.fingerprint:
        raise Refusal(
            Status.FAILED_PRECONDITION,
            f"project fingerprint mismatch: the request names {fingerprint or '(none)'}, this "
            f"coordinator runs {state.fingerprint}. Both sides must use the project file the "
            "partners signed.",
            kind=kind,
            round_id=round_id,
        )


def _check_round(
    state: CoordinatorState, round_id: str, *, kind: AuditKind, states: frozenset[RoundState]
) -> None:
    r = state.store.rounds.get(round_id)
    if r is None or r.state not in states:
        allowed = " or ".join(sorted(s.value for s in states))
        raise Refusal(
            Status.FAILED_PRECONDITION,
            f"round '{round_id}' is {'unknown' if r is None else r.state}; "
            f"{kind.removeprefix('refused:')} is only accepted while it is {allowed}",
            kind=kind,
            round_id=round_id,
        )


# --- the control stream ---------------------------------------------------------------------------


def connect(
    state: CoordinatorState,
    partner: str,
    events: Iterator[Received[Hello | InstructionResult] | None],
    *,
    caller: Holder,
    opened: Callable[[], None] = lambda: None,
) -> Iterator[Instruction]:
    """A node's session: check its Hello, open the partner's session for the caller's
    certificate (``opened`` is then called), and send it its instructions until it goes.

    The node's results arrive on the same stream; a reader thread hands each to the lifecycle.
    """
    first = next(events, None)
    if first is None or not isinstance(first.message, Hello):
        raise Refusal(
            Status.INVALID_ARGUMENT,
            "the first message on Connect must be a Hello",
            kind=AuditKind.REFUSED_HELLO,
        )
    hello = first.message
    state.crossings.record(
        sender=partner, recipient=COORDINATOR, kind=AuditKind.HELLO, payload=first.payload
    )
    if hello.partner_id != partner:
        raise Refusal(
            Status.PERMISSION_DENIED,
            f"the node claims partner id '{hello.partner_id}' but its certificate is issued to "
            f"'{partner}'; a node may only act as the partner named in its certificate",
            kind=AuditKind.REFUSED_HELLO,
        )
    _check_project(state, hello.project_fingerprint, kind=AuditKind.REFUSED_HELLO)
    keys.check_hello(state, partner, hello)
    pinned(state, partner, caller, kind=AuditKind.REFUSED_HELLO, pin=True)
    try:
        q = state.sessions.open(partner, caller)
    except SessionTaken as taken:
        raise _taken(partner, taken.holder, caller, kind=AuditKind.REFUSED_HELLO) from None
    opened()
    log.info("node %s connected (oda-fed %s)", partner, hello.software_version or "?",
             extra={"partner": partner})  # fmt: skip
    reader = threading.Thread(
        target=_read_results,
        args=(state, partner, events, q),
        name=f"results-{partner}",
        daemon=True,
    )
    reader.start()
    instructions.push(state, partner)
    try:
        while (instruction := q.get()) is not None:
            yield instruction
    finally:
        state.sessions.close(partner, q)
        log.info("node %s disconnected", partner, extra={"partner": partner})


def _read_results(
    state: CoordinatorState,
    partner: str,
    events: Iterator[Received[Hello | InstructionResult] | None],
    q: queue.Queue,
) -> None:
    try:
        for event in events:
            if event is None or not isinstance(event.message, InstructionResult):
                continue
            result = event.message
            # Looked up, never parsed: an id the coordinator did not issue to this partner
            # touches nothing.
            delivery = state.store.deliveries.find(
                partner=partner, instruction_id=result.instruction_id
            )
            if delivery is not None:
                state.crossings.confirm(f"{partner}/{result.instruction_id}")
            state.crossings.record(
                sender=partner,
                recipient=COORDINATOR,
                kind=AuditKind.INSTRUCTION_RESULT,
                payload=event.payload,
                round_id=None if delivery is None else delivery.round_id,
                records=result.records,
            )
            if delivery is None:
                log.warning("node %s answered an instruction it was not sent", partner)
                continue
            if result.witness is not None and delivery.kind is DeliveryKind.ROUND_CLOSED:
                _accept_witness(state, partner, delivery.round_id, result.witness)
            _record_result(state, delivery, result)
    except ProtocolError as exc:  # a message over its bounds, say: the session ends, audited
        state.log_refusal(
            Refusal(Status.INVALID_ARGUMENT, cut(str(exc)), kind=AuditKind.REFUSED_INSTRUCTION),
            who=partner,
        )
        log.warning("ended the session of %s: %s", partner, cut(str(exc)))
    except Exception:  # the stream ended or broke; the session's generator cleans up
        log.debug("result stream of %s ended", partner, exc_info=True)
    finally:
        q.put(None)


def _accept_witness(state: CoordinatorState, partner: str, round_id: str, answer: Witness) -> None:
    """Keep a node's cosignature of the round's checkpoint and cosign the node's own; a
    checkpoint that fails its checks is refused, for the DPO and the operator."""
    try:
        witnessing.coordinator_accept(state.crossings, answer, round_id=round_id, peer=partner)
    except witnessing.WitnessProblem as exc:
        reason = cut(str(exc))
        log.error("round %s: %s's audit checkpoint was not cosigned: %s", round_id, partner, reason)
        state.crossings.record(
            sender=partner,
            recipient=COORDINATOR,
            kind=AuditKind.REFUSED_WITNESS,
            round_id=round_id,
            detail={"reason": reason},
        )
        state.store.rounds.note(
            round_id, f"{partner}'s audit checkpoint was not cosigned: {reason}"
        )


def _record_result(state: CoordinatorState, delivery: Delivery, result: InstructionResult) -> None:
    """A node answered an instruction: done, or what went wrong on its side (a short reason
    with no personal data); either way the round may move on. An answer to an instruction
    already answered, or of a round that has ended, changes nothing: a node cannot rewrite a
    closed round's status by answering again."""
    r = state.store.rounds.get(delivery.round_id)
    ended = r is None or r.state.finished
    if delivery.done or (ended and delivery.kind is not DeliveryKind.ROUND_CLOSED):
        log.warning("node %s answered '%s' of round %s again, or after the round ended; ignored",
                    delivery.partner, delivery.kind, delivery.round_id)  # fmt: skip
        return
    if ended:  # the answer to round_closed: done, and the ended round's status untouched
        error = cut(result.error)
        state.store.deliveries.mark(delivery)
        if error:
            log.warning("node %s on the end of round %s: %s", delivery.partner, delivery.round_id,
                        error)  # fmt: skip
        return
    if result.ok:
        state.store.deliveries.mark(delivery)
    else:
        error = cut(result.error) or "no reason given"
        state.store.deliveries.mark(delivery, error=error)
        discarded = (
            "; what was held in its name for it was discarded" if _disown(state, delivery) else ""
        )
        state.store.rounds.note(
            delivery.round_id,
            f"{delivery.partner} could not do '{delivery.kind}': {error}{discarded}",
        )
        log.warning("node %s could not do %s: %s", delivery.partner, delivery.kind, error)
    state.lifecycle.schedule(delivery.round_id)


def _disown(state: CoordinatorState, delivery: Delivery) -> bool:
    """Forget what is held in the partner's name for an instruction its node could not do, so it
    is never linked or analysed: the node may have found that the coordinator holds other chunks
    than it sent (something else uploaded in its name). The node uploads again when it is next
    told to. Whether anything was discarded."""
    if delivery.kind is DeliveryKind.ENCODE_AND_UPLOAD:
        upload, accepts = CLKS, ACCEPTS_CLKS
    elif delivery.kind is DeliveryKind.SHARE_ATTRIBUTE:
        upload = attribute_upload(delivery.product_id, delivery.attribute)
        accepts = ACCEPTS_ATTRIBUTES
    else:
        return False
    r = state.store.rounds.get(delivery.round_id)
    held = state.store.uploads.state(round_id=delivery.round_id, partner=delivery.partner,
                                     upload=upload)  # fmt: skip
    if r is None or r.state not in accepts or held is None:
        return False  # nothing held, or already used: nothing may change under a later step
    state.store.uploads.discard(
        round_id=r.round_id, partner=delivery.partner, upload=upload, complete_too=True
    )
    log.warning("round %s: discarded %s's %s upload", r.round_id, delivery.partner, upload.name)
    return True


# --- uploads --------------------------------------------------------------------------------------


@contextmanager
def upload_slots(state: CoordinatorState, messages: Iterable[M]) -> Iterator[Iterator[M]]:
    """An upload's messages, each handed on while it holds one of the coordinator's few upload
    slots, however many partners send, so its memory stays bounded.

    A message holds its slot from when it has arrived until the next one is asked for (it is
    checked and stored meanwhile); waiting for a message holds none, so a partner that opens
    uploads and sends nothing holds up no one else's. A message that finds no slot free in time
    is refused (RESOURCE_EXHAUSTED: the node retries). The slot is given back however the
    upload ends.
    """

    def each() -> Iterator[M]:
        for message in messages:
            with _upload_slot(state):
                yield message

    gated = each()
    try:
        yield gated
    finally:
        gated.close()


@contextmanager
def _upload_slot(state: CoordinatorState) -> Iterator[None]:
    if not state.upload_slots.acquire(timeout=UPLOAD_SLOT_WAIT):
        raise Refusal(
            Status.RESOURCE_EXHAUSTED,
            "the coordinator is busy with other uploads; the node retries by itself",
            kind=None,
        )
    try:
        yield
    finally:
        state.upload_slots.release()


def receive_clks(
    state: CoordinatorState, partner: str, stream: Iterable[Received[ClkChunk]]
) -> UploadReceipt:
    """Check and store a stream of CLK chunks; schedule the round when the upload completes."""
    linkage = state.project.linkage
    keyed = frozenset(f.name for f in linkage.fields if f.keyed_token)
    stable = linkage.stable_entity_ids
    layout = linkage_layout(linkage)
    partner_max = state.project.partner(partner).max_records
    upload_state, round_id = None, ""
    for item in stream:
        chunk = item.message
        round_id = chunk.round_id
        kind = AuditKind.REFUSED_CLK_UPLOAD
        _check_project(state, chunk.project_fingerprint, kind=kind, round_id=round_id)
        _check_round(state, round_id, kind=kind, states=ACCEPTS_CLKS)
        problem = (
            clk_chunk_problem(chunk, linkage.wire_bits, max_records=partner_max)
            or token_problem(chunk, keyed)
            or record_key_problem(chunk, stable=stable)
            or evidence_problem(chunk, layout)
        )
        if problem:
            raise Refusal(Status.INVALID_ARGUMENT, problem, kind=kind, round_id=round_id)
        state.crossings.record(
            sender=partner,
            recipient=COORDINATOR,
            kind=AuditKind.CLK_CHUNK,
            payload=item.payload,
            records=chunk.records,
            round_id=round_id,
            detail=chunk.audit_detail(),
        )
        upload_state = _store(
            state,
            partner,
            CLKS,
            chunk,
            data=chunk.clks,
            records=chunk.records,
            tokens=token_blob(chunk),
            record_keys=b"".join(chunk.record_keys) if stable else None,
            evidence=evidence_blob(chunk.evidence),
        )
    return _finish_upload(state, partner, round_id, upload_state, kind=AuditKind.REFUSED_CLK_UPLOAD)


def receive_attribute(
    state: CoordinatorState, partner: str, stream: Iterable[Received[AttributeChunk]]
) -> UploadReceipt:
    """Check and store a stream of attribute chunks the project lets ``partner`` share."""
    upload_state, round_id = None, ""
    kind = AuditKind.REFUSED_ATTRIBUTE_UPLOAD
    for item in stream:
        chunk = item.message
        round_id = chunk.round_id
        _check_project(state, chunk.project_fingerprint, kind=kind, round_id=round_id)
        if not state.project.attribute_allowed(
            partner=partner, product_id=chunk.product_id, attribute=chunk.attribute
        ):
            raise Refusal(
                Status.PERMISSION_DENIED,
                f"the project does not let '{partner}' share attribute '{chunk.attribute}' for "
                f"product '{chunk.product_id}'",
                kind=kind,
                round_id=round_id,
            )
        long = sum(len(v) > MAX_VALUE_CHARS for v in chunk.values)
        if long:  # checked before anything else is looked at: a 2 MiB "area" costs nothing
            raise Refusal(
                Status.INVALID_ARGUMENT,
                f"{long} value(s) are longer than {MAX_VALUE_CHARS} characters, longer than any "
                "code or band: a mis-mapped column?",
                kind=kind,
                round_id=round_id,
            )
        _check_round(state, round_id, kind=kind, states=ACCEPTS_ATTRIBUTES)
        clks = state.store.uploads.state(round_id=round_id, partner=partner)
        if clks is None or chunk.total_records != clks.total_records:
            raise Refusal(
                Status.INVALID_ARGUMENT,
                "attribute upload must have one value per uploaded CLK "
                f"({clks.total_records if clks else 0}), got {chunk.total_records}",
                kind=kind,
                round_id=round_id,
            )
        problem = _values_problem(state, partner, chunk)
        if problem:
            raise Refusal(Status.INVALID_ARGUMENT, problem, kind=kind, round_id=round_id)
        state.crossings.record(
            sender=partner,
            recipient=COORDINATOR,
            kind=AuditKind.ATTRIBUTE_CHUNK,
            payload=item.payload,
            records=len(chunk.values),
            round_id=round_id,
            detail={
                "product": chunk.product_id,
                "attribute": chunk.attribute,
                "chunk": chunk.chunk_index,
            },
        )
        upload = attribute_upload(chunk.product_id, chunk.attribute)
        upload_state = _store(
            state, partner, upload, chunk, data=chunk.stored_data(), records=len(chunk.values)
        )
    return _finish_upload(state, partner, round_id, upload_state, kind=kind)


def receive_table(
    state: CoordinatorState, partner: str, item: Received[LocalTable]
) -> UploadReceipt:
    """Check and keep a ``local`` product's table from the partner that owns it. The node
    controlled it; the coordinator checks that it looks controlled before it keeps it."""
    from oda_fed.products.local import received_table

    table = item.message
    round_id, kind = table.round_id, AuditKind.REFUSED_TABLE_UPLOAD
    _check_project(state, table.project_fingerprint, kind=kind, round_id=round_id)
    prod = next((p for p in state.project.products if p.id == table.product_id), None)
    if prod is None or prod.kind != LOCAL or prod.owner != partner:
        raise Refusal(
            Status.PERMISSION_DENIED,
            f"the project has no local product '{table.product_id}' that '{partner}' computes",
            kind=kind,
            round_id=round_id,
        )
    _check_round(state, round_id, kind=kind, states=ACCEPTS_ATTRIBUTES)
    cells = [(c.coordinates, None if c.suppressed else c.count) for c in table.cells]
    try:
        received_table(state.project, prod, cells)
    except ProductError as exc:
        raise Refusal(
            Status.INVALID_ARGUMENT,
            f"the table of '{prod.id}' is not one to release: {exc}; nothing of it was kept",
            kind=kind,
            round_id=round_id,
        ) from None
    state.crossings.record(
        sender=partner,
        recipient=COORDINATOR,
        kind=AuditKind.LOCAL_TABLE,
        payload=item.payload,
        records=len(cells),
        round_id=round_id,
        detail={"product": prod.id},
    )
    data = json.dumps([[list(c), n] for c, n in cells], ensure_ascii=False).encode("utf-8")
    stored = Chunk(
        chunk_index=0,
        total_chunks=1,
        first_ref=0,
        records=len(cells),
        total_records=len(cells),
        data=data,
    )
    try:
        upload_state = state.store.uploads.store(
            round_id=round_id, partner=partner, upload=table_upload(prod.id), chunk=stored
        )
    except ProtocolError as exc:
        raise Refusal(Status.INVALID_ARGUMENT, str(exc), kind=kind, round_id=round_id) from None
    return _finish_upload(state, partner, round_id, upload_state, kind=kind)


def _values_problem(state: CoordinatorState, partner: str, chunk: AttributeChunk) -> str:
    """Why the chunk's values may not be taken: outside the attribute's declared domain, checked
    here again whatever the node did; with the last chunk, over the whole upload (so a made-up
    code per record cannot pass max_distinct one chunk at a time)."""
    attribute = state.project.attribute(partner=partner, name=chunk.attribute)
    values = list(chunk.values)
    upload = attribute_upload(chunk.product_id, chunk.attribute)
    held = state.store.uploads.state(round_id=chunk.round_id, partner=partner, upload=upload)
    if held is not None and len(set(held.stored_chunks) | {chunk.chunk_index}) == held.total_chunks:
        stored = state.store.uploads.values(round_id=chunk.round_id, partner=partner, upload=upload)
        values = stored + values
    problem = attribute.problem(values)
    if problem:
        state.store.uploads.discard(round_id=chunk.round_id, partner=partner, upload=upload)
        return f"{problem}; nothing of this upload was kept"
    return ""


def _store(
    state: CoordinatorState,
    partner: str,
    upload: Upload,
    chunk: ClkChunk | AttributeChunk,
    *,
    data: bytes,
    records: int,
    tokens: bytes | None = None,
    record_keys: bytes | None = None,
    evidence: bytes | None = None,
) -> UploadState:
    stored = Chunk(
        chunk_index=chunk.chunk_index,
        total_chunks=chunk.total_chunks,
        first_ref=chunk.first_ref,
        records=records,
        total_records=chunk.total_records,
        data=data,
        tokens=tokens,
        record_keys=record_keys,
        evidence=evidence,
    )
    try:
        return state.store.uploads.store(
            round_id=chunk.round_id, partner=partner, upload=upload, chunk=stored
        )
    except ProtocolError as exc:
        kind = (
            AuditKind.REFUSED_CLK_UPLOAD if upload.is_clks else AuditKind.REFUSED_ATTRIBUTE_UPLOAD
        )
        raise Refusal(
            Status.INVALID_ARGUMENT, str(exc), kind=kind, round_id=chunk.round_id
        ) from None


def _finish_upload(
    state: CoordinatorState,
    partner: str,
    round_id: str,
    upload_state: UploadState | None,
    *,
    kind: AuditKind,
) -> UploadReceipt:
    if upload_state is None:
        raise Refusal(Status.INVALID_ARGUMENT, "the upload carried no chunks", kind=kind)
    state.lifecycle.schedule(round_id)
    if upload_state.complete:
        log.info("round %s: %s completed an upload", round_id, partner,
                 extra={"round_id": round_id, "partner": partner})  # fmt: skip
    return receipt(round_id, upload_state)


def upload_status(
    state: CoordinatorState, partner: str, request: UploadStatusRequest
) -> UploadReceipt:
    """Where one of the caller's uploads stands, so it can resume."""
    _check_project(state, request.project_fingerprint, kind=AuditKind.REFUSED_UPLOAD_STATUS)
    found = state.store.uploads.state(
        round_id=request.round_id, partner=partner, upload=request.upload
    )
    return receipt(request.round_id, found)


def receipt(round_id: str, found: UploadState | None) -> UploadReceipt:
    if found is None:
        return UploadReceipt(round_id=round_id)
    return UploadReceipt(
        round_id=round_id,
        chunks_stored=len(found.stored_chunks),
        records_stored=found.records_stored,
        complete=found.complete,
        stored_chunks=found.stored_chunks,
        sha256=found.sha256,
    )


# --- entity ids -----------------------------------------------------------------------------------


def entity_chunks(
    state: CoordinatorState, partner: str, request: FetchEntitiesRequest
) -> Iterator[EntityChunk]:
    """The entity ids of the caller's own refs, in chunks; no other partner's."""
    kind = AuditKind.REFUSED_FETCH_ENTITIES
    _check_project(state, request.project_fingerprint, kind=kind, round_id=request.round_id)
    _check_round(state, request.round_id, kind=kind, states=SERVES_ENTITIES)
    rows = state.store.results.entity_ids(round_id=request.round_id, partner=partner)
    if not rows:
        return
    # Each partner gets its own pseudonyms, so no two partners can join their files on them.
    mask = state.pseudonyms.mask
    for _, start, stop in chunks(len(rows), CHUNK_RECORDS):
        part = rows[start:stop]
        yield EntityChunk(first_ref=part[0][0], entity_ids=tuple(mask(partner, e) for _, e in part))
