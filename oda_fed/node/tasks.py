"""The partner's part of a round, one function per instruction.

:func:`handle` checks the instruction against the pinned project (:mod:`oda_fed.node.policy`),
does the work, and returns the result to send back. Record ids stay here: the coordinator sees only
per-round random refs, and the mapping between the two lives in the round's folder
(:mod:`oda_fed.node.rounds`). When the project sets ``[linkage] stable_entity_ids``, each CLK also
goes with its record key, a keyed pseudonym of the record id
(:func:`oda_fed.encoding.exact.record_keys`) that is the same every round, so the coordinator can
keep the record's entity id; it cannot reverse it without the linkage secret.
"""

from __future__ import annotations

import logging
import secrets
import shutil

import numpy as np

from oda_fed import __version__
from oda_fed.config import LOCAL
from oda_fed.durable import private_dir, write_atomic
from oda_fed.encoding.exact import record_keys
from oda_fed.encoding.rounds import RoundTransform
from oda_fed.errors import OdaFedError
from oda_fed.node import lists, policy
from oda_fed.node.client import CoordinatorClient, RoundMovedOn
from oda_fed.node.derive import derive_all
from oda_fed.node.encode import encode_file
from oda_fed.node.policy import Refused
from oda_fed.node.rounds import RoundFiles
from oda_fed.node.sources import EmptyExtractError, extract_path, require_records
from oda_fed.node.state import NodeState
from oda_fed.transport import witness as witnessing
from oda_fed.transport.messages import (
    ComputeTable,
    EncodeAndUpload,
    EntitiesReady,
    Instruction,
    InstructionResult,
    LocalCell,
    LocalTable,
    ProductRelease,
    RoundClosed,
    ShareAttribute,
    Witness,
)
from oda_fed.transport.protocol import (
    CHUNK_RECORDS,
    COORDINATOR,
    INSTRUCTION_KINDS,
    AuditKind,
    cut,
)

log = logging.getLogger(__name__)


def handle(
    state: NodeState, client: CoordinatorClient | None, instruction: Instruction
) -> tuple[InstructionResult, OdaFedError | None]:
    """Carry out one instruction; return the result to send, and an error that should stop the
    node (bad input data, say: a retry cannot fix it)."""
    records, error, failure, witness = 0, "", None, None
    body = instruction.body
    metrics = state.metrics
    if not isinstance(body, RoundClosed):  # the round's clock starts with its first instruction
        metrics.round_seen(instruction.round_id)
    try:
        policy.check_project(state.loaded, instruction)
        files = state.round_files(instruction.round_id)
        if isinstance(body, EncodeAndUpload):
            records = _encode_and_upload(state, client, instruction.round_id, body, files)
        elif isinstance(body, ShareAttribute):
            records = _share_attribute(state, client, instruction.round_id, body, files)
        elif isinstance(body, EntitiesReady):
            records = _fetch_entities(state, client, instruction.round_id, files)
        elif isinstance(body, ComputeTable):
            records = _compute_table(state, client, instruction.round_id, body, files)
        elif isinstance(body, ProductRelease):
            records = _receive_product(state, instruction.round_id, body, files)
        elif isinstance(body, RoundClosed):
            state.rounds_closed += 1
            metrics.round_closed(instruction.round_id)
            log.info("round %s ended: %s %s", instruction.round_id, body.status, body.message,
                     extra={"round_id": instruction.round_id})  # fmt: skip
            witness, error = _witness(state, instruction.round_id, body)
        else:
            raise Refused(f"unknown instruction; this node runs oda-fed {__version__}")
    except Refused as exc:
        error = cut(str(exc))
        metrics.error("refused_instruction")
        log.warning("refused %s for round %s: %s", instruction.body_name, instruction.round_id, exc,
                    extra={"round_id": instruction.round_id,
                           "instruction": instruction.body_name})  # fmt: skip
        name = instruction.body_name
        state.crossings.record(
            sender=COORDINATOR,
            recipient=state.partner,
            kind=AuditKind.REFUSED_INSTRUCTION if name is None else INSTRUCTION_KINDS[name][1],
            round_id=instruction.round_id,
            detail={"reason": error},
        )
    except RoundMovedOn as exc:
        error = cut(f"the coordinator refused: {exc}")
        metrics.error("round_moved_on")
        log.info("round %s moved on: %s", instruction.round_id, exc,
                 extra={"round_id": instruction.round_id})  # fmt: skip
    except OdaFedError as exc:
        # The full message stays in this node's log; the coordinator only learns the kind (and,
        # for an empty extract, the reason, which names nothing of the data).
        said = f": {exc.reason}" if isinstance(exc, EmptyExtractError) else ""
        metrics.error(type(exc).__name__)
        error, failure = f"{type(exc).__name__} on the node{said}; see the node's log", exc
    result = InstructionResult(
        instruction_id=instruction.instruction_id,
        ok=not error,
        error=error,
        records=records,
        witness=witness,
    )
    return result, failure


def _witness(state: NodeState, round_id: str, body: RoundClosed) -> tuple[Witness | None, str]:
    """Check and cosign the coordinator's checkpoint, and answer with this node's own. A
    checkpoint that fails is not cosigned: refused, for the DPO, and the operator is told."""
    crossings = state.crossings
    if body.witness is None or crossings.signer is None:
        return None, ""
    try:
        answer = witnessing.node_answer(
            crossings, body.witness, round_id=round_id, coordinator=COORDINATOR
        )
        return answer, ""
    except witnessing.WitnessProblem as exc:
        reason = cut(str(exc))
        log.error(
            "round %s: the coordinator's audit checkpoint was not cosigned: %s", round_id, reason
        )
        crossings.record(
            sender=COORDINATOR,
            recipient=state.partner,
            kind=AuditKind.REFUSED_WITNESS,
            round_id=round_id,
            detail={"reason": reason},
        )
        return None, cut(f"audit checkpoint not cosigned: {reason}")


def _encode_and_upload(
    state: NodeState,
    client: CoordinatorClient,
    round_id: str,
    request: EncodeAndUpload,
    files: RoundFiles,
) -> int:
    policy.check_clk_bits(state.loaded, request.clk_bits)
    if not files.prepared:
        _prepare(state, round_id, files)
    clks = files.clks()
    keys = None
    if state.record_key is not None:
        # Recomputed from the saved refs, so a resumed upload sends the same keys.
        keys = record_keys([str(r) for r in files.record_ids()], key=state.record_key)
    client.upload_clks(
        round_id,
        clks,
        tokens=files.tokens(),
        keys=keys,
        evidence=files.evidence(),
        chunk_records=min(state.config.chunk_records, request.chunk_records or CHUNK_RECORDS),
    )
    return len(clks)


def _prepare(state: NodeState, round_id: str, files: RoundFiles) -> None:
    """Encode the partner's extract for this round, under random refs, and save it."""
    source = encode_file(
        extract_path(state.config.source),
        project=state.project,
        layout=state.layout,
        secret=state.secret,
        progress=lambda done, total: log.debug("encoded %d of %d records", done, total),
    )
    # Nothing to upload would leave the round waiting for this partner: say so instead.
    require_records(extract_path(state.config.source), len(source))
    state.metrics.encoded.inc(len(source))
    # Derived and checked before anything is saved: a value outside its domain stops here.
    asked = [
        state.project.attribute(partner=state.partner, name=name)
        for name in sorted(policy.shareable_attributes(state.loaded, state.partner))
    ]
    derived = derive_all(
        asked,
        record_ids=source.record_ids,
        columns=source.attributes,
        date_format=state.layout.date_format,
        lookups=state.config.source.lookups,
        events=state.config.source.events,
        on_invalid=state.config.source.on_invalid,
    )
    # Random per-round refs: ref i is the record at order[i], so refs say nothing of file order.
    order = np.random.default_rng(secrets.randbits(128)).permutation(len(source))
    clks = np.ascontiguousarray(source.clks[order])
    tokens = {f: [v[i] for i in order] for f, v in source.tokens.items()}
    evidence = None if source.evidence is None else source.evidence.take(order)
    if not state.project.linkage.stable_entity_ids:
        # Unless the project agreed that the coordinator may follow records from round to round,
        # this round's CLKs and tokens are keyed to it, so they match no other round's.
        moved = RoundTransform(state.secret, context=state.project.name, round_id=round_id,
                               bits=clks.shape[1] * 64)  # fmt: skip
        clks, tokens = moved.clks(clks), moved.tokens(tokens)
        evidence = None if evidence is None else moved.evidence(evidence)
    files.save(
        record_ids=source.record_ids[order],
        clks=clks,
        attributes={name: [values[i] for i in order] for name, values in derived.items()},
        tokens=tokens,
        evidence=evidence,
    )
    log.info(
        "round %s: encoded %d records (missing: %s; invalid: %s)",
        round_id,
        len(source),
        source.missing,
        source.invalid,
    )


def _share_attribute(
    state: NodeState,
    client: CoordinatorClient,
    round_id: str,
    request: ShareAttribute,
    files: RoundFiles,
) -> int:
    policy.check_share(
        state.loaded,
        partner=state.partner,
        product_id=request.product_id,
        attribute=request.attribute,
    )
    values = files.attribute(request.attribute)
    client.upload_attribute(
        round_id, product_id=request.product_id, attribute=request.attribute, values=values
    )
    return len(values)


def _compute_table(
    state: NodeState,
    client: CoordinatorClient,
    round_id: str,
    request: ComputeTable,
    files: RoundFiles,
) -> int:
    """Tabulate a local product from this partner's records prepared for the round, control it
    here, and send only the controlled table. Returns the number of cells sent."""
    from oda_fed.products.local import build_local, table_cells

    prod = policy.check_local(state.loaded, partner=state.partner, product_id=request.product_id)
    if not files.prepared:
        raise Refused(f"round {round_id} has no records prepared here to compute a table from")
    names = {
        ref.name
        for p in state.project.products
        if p.kind == LOCAL and p.owner == state.partner
        for ref in p.attributes()
    }
    # Every local product of this partner is controlled together; only the one asked for leaves.
    built = build_local(
        state.project,
        state.partner,
        record_ids=[str(r) for r in range(len(files.record_ids()))],
        values={name: files.attribute(name) for name in names},
        releases=state.releases,
        release_id=round_id,
        report_dir=private_dir(state.workdir / "local" / round_id),  # true counts
    )[prod.id]
    for line in built.held:
        log.warning("round %s: the release ledger held %s", round_id, line)
    cells = tuple(
        LocalCell(coordinates=coordinates, suppressed=count is None, count=count or 0)
        for coordinates, count in table_cells(built.product)
    )
    table = LocalTable(
        round_id=round_id, project_fingerprint=state.fingerprint, product_id=prod.id, cells=cells
    )
    try:
        client.upload_table(table)
    except BaseException:
        state.releases.drop(round_id)
        raise
    # Sent: the coordinator holds it now, so later tables are checked against it.
    state.releases.record(round_id)
    return len(cells)


def _fetch_entities(
    state: NodeState, client: CoordinatorClient, round_id: str, files: RoundFiles
) -> int:
    entity_ids = client.fetch_entities(round_id)
    path = files.write_entities(entity_ids)
    write_atomic(state.workdir / "entities.csv", lambda tmp: shutil.copyfile(path, tmp),
                 private=True)  # fmt: skip
    log.info("round %s: entity ids for %d records written to %s", round_id, len(entity_ids), path)
    return len(entity_ids)


def _receive_product(
    state: NodeState, round_id: str, release: ProductRelease, files: RoundFiles
) -> int:
    """Write a released product's files; a list or alert with this node's record ids in place
    of the round's refs. Returns the number of records in a list or alert (else 0)."""
    policy.check_recipient(state.loaded, partner=state.partner, product_id=release.product_id)
    product = state.project.product(release.product_id)
    received, records = list(release.files), 0
    if lists.is_record_product(product):
        received, records = lists.with_record_ids(product, release, files)
    names = [policy.file_name(item.name) for item in received]
    out = private_dir(state.workdir / "releases" / round_id / release.product_id)
    for name, item in zip(names, received, strict=True):
        # A list or alert names this partner's records, a table its counts: owner-only.
        write_atomic(out / name, lambda tmp, data=item.content: tmp.write_bytes(data), private=True)
    log.info(
        "round %s: received product '%s' (%d file(s), released by %s) in %s",
        round_id,
        release.product_id,
        len(release.files),
        release.released_by or "?",
        out,
    )
    return records
