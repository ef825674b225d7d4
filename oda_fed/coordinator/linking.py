"""Match a round: every partner's uploaded CLKs through the one linkage run, into entity ids.

Matching links the round's uploads afresh and gives every entity a fresh random id, unless the
project sets ``[linkage] stable_entity_ids``: then the round updates the project's linked index
(:mod:`oda_fed.index`), keyed by the record keys the nodes send, so a record seen in an earlier
round keeps its entity id. Matching again after a crash is safe either way: the index sees the same
extracts as unchanged and gives the same ids.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oda_fed.coordinator.state import CoordinatorState
from oda_fed.durable import private_dir
from oda_fed.encoding.evidence import linkage_layout
from oda_fed.errors import ClusterError
from oda_fed.index import Extract
from oda_fed.linkage import IndexTarget, run_linkage
from oda_fed.matching.executor import DaskExecutor
from oda_fed.matching.link import LinkOutcome

log = logging.getLogger(__name__)

#: (partner, ref, entity id, score) of one record in a round.
Member = tuple[str, int, str, float | None]


@dataclass(frozen=True)
class Matched:
    """What matching gave a round: its counts, the round message and the quality report."""

    entities: int
    linked: int
    message: str
    quality_report: Path | None
    #: Why the linkage cannot be trusted (:mod:`oda_fed.matching.guard`); the release waits.
    degenerate: tuple[str, ...] = ()


def match_round(state: CoordinatorState, round_id: str) -> Matched | None:
    """Link the round's uploads, store each ref's entity id, write the quality report.

    None when the Dask cluster it matches on fails (:class:`~oda_fed.errors.ClusterError`,
    logged): the round is left unmatched, to be matched again when the coordinator restarts or
    a node next calls.
    """
    linkage = state.project.linkage
    partners = state.partners
    words = linkage.wire_bits // 64
    uploads = state.store.uploads
    clks = [uploads.clks(round_id=round_id, partner=p, words=words) for p in partners]
    log.info(
        "round %s: matching %s records",
        round_id,
        "+".join(str(len(c)) for c in clks),
        extra={"round_id": round_id, "records": sum(len(c) for c in clks)},
    )
    started = time.perf_counter()
    keyed = [f.name for f in linkage.fields if f.keyed_token]
    layout = linkage_layout(linkage)
    target = None
    if linkage.stable_entity_ids:
        ids: list = [uploads.record_keys(round_id=round_id, partner=p) for p in partners]
        target = IndexTarget(path=state.index_path, fingerprint=state.fingerprint, words=words)
    else:
        ids = [np.arange(len(c)) for c in clks]
    extracts = {
        p: Extract(
            record_ids=ids[i],
            clks=clks[i],
            tokens={f: uploads.tokens(round_id=round_id, partner=p, field=f) for f in keyed}
            or None,
            evidence=uploads.evidence(round_id=round_id, partner=p, layout=layout),
        )
        for i, p in enumerate(partners)
    }
    try:
        with state.executor() as executor:
            result = run_linkage(extracts, settings=state.settings, index=target,
                                 executor=executor)  # fmt: skip
    except ClusterError as exc:
        log.error("round %s stays unmatched: %s", round_id, exc, extra={"round_id": round_id})
        return None
    if isinstance(executor, DaskExecutor):
        log.info("round %s: matched on the Dask cluster at %s, %d units", round_id,
                 executor.address, len(executor.units),
                 extra={"round_id": round_id})  # fmt: skip
    seconds, outcome = time.perf_counter() - started, result.outcome
    # An incremental update of the linked index scores no pairs of its own to count.
    pairs = outcome.blocking if isinstance(outcome, LinkOutcome) else ()
    state.metrics.linked(
        seconds=seconds,
        candidates=sum(p.candidates for p in pairs),
        entities=result.entities,
        linked=result.linked_entities,
    )
    written = result.write_quality_report(
        private_dir(state.output_dir / round_id),
        title=f"Linkage quality, round {round_id}",
        internal=True,
    )
    rows: list[Member] = []
    for partner, record_ids in zip(partners, ids, strict=True):
        entities, scores = result.assignments(partner, record_ids)
        rows += [
            (partner, ref, e, s) for ref, (e, s) in enumerate(zip(entities, scores, strict=True))
        ]
    state.store.results.store_members(
        round_id=round_id, rows=rows, new_entities=sorted({e for _, _, e, _ in rows})
    )
    if target is not None:
        log.info(
            "round %s: linked index %s",
            round_id,
            result.index_report.action,
            extra={"round_id": round_id},
        )
    return Matched(
        entities=result.entities,
        linked=result.linked_entities,
        message=result.summary(),
        quality_report=None if written is None else written["html"],
        degenerate=tuple(result.degenerate()),
    )
