"""The round report the operator reviews before release (``report.html``): the linkage summary,
every product's controlled table and chart, and the state of the coordinator's audit log; and the
published pages, the round's dashboard and the index over released rounds.

The round report holds counts only and stays with the coordinator. The linkage quality report
(``quality.html``) is written by :mod:`oda_fed.coordinator.linking`. The dashboard holds the
released products and nothing else; it is written with the products as
``dashboard.unreleased.html`` and becomes ``dashboard.html``, listed in ``index.html``, only when
the round is released.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from oda_fed.audit import read_entries, verify_log
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.matching.link import entities_by_partner_count
from oda_fed.products import ProductTable, render_report
from oda_fed.products.note import Provenance
from oda_fed.products.pages import UNRELEASED, publish_dashboard, write_dashboard, write_index
from oda_fed.products.records import RecordProduct

log = logging.getLogger(__name__)


def round_report(
    state: CoordinatorState,
    round_id: str,
    *,
    members: pd.DataFrame,
    made: list[tuple[ProductTable, dict[str, Path]]],
    records: list[RecordProduct] | None = None,
) -> Path:
    """Write ``report.html`` for a round whose products are ``made``; return its path.

    ``members`` has a row per record of the round: ``partner, ref, entity_id, score``.
    """
    entity_partners = members.groupby("entity_id")["partner"].nunique()
    linkage = {
        "records_per_partner": {p: int((members.partner == p).sum()) for p in state.partners},
        "entities": int(entity_partners.size),
        "entities_by_partner_count": entities_by_partner_count(entity_partners),
        "threshold": state.project.linkage.threshold,
    }
    return render_report(
        out_path=state.output_dir / round_id / "report.html",
        project_name=state.project.title,
        project_fingerprint=state.fingerprint,
        round_id=round_id,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        linkage=linkage,
        products=made,
        audit=audit_summary(state, round_id),
        records=records or [],
    )


def audit_summary(state: CoordinatorState, round_id: str) -> dict[str, object] | None:
    """The coordinator's audit log as it stands now: verified, and this round's entries."""
    path = state.crossings.log.path
    if not path.exists():
        return None
    report = verify_log(path)
    kinds: dict[str, int] = {}
    if report.ok:
        for entry in read_entries(path):
            if entry.round == round_id:
                kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    return {
        "coordinator log": path.name,
        "chain verified": "yes" if report.ok else "NO: " + "; ".join(report.problems[:3]),
        "entries so far": report.entries,
        "this round's messages by kind": kinds,
    }


def stage_dashboard(
    state: CoordinatorState,
    round_id: str,
    *,
    made: list[tuple[ProductTable, dict[str, Path]]],
    provenance: Provenance,
) -> Path:
    """Write the round's dashboard as it will be published, under a name that says it is not
    released yet: the products may wait days for an operator, across restarts."""
    return write_dashboard(
        state.output_dir / round_id, products=made, provenance=provenance, name=UNRELEASED
    )


def publish(state: CoordinatorState, round_id: str) -> None:
    """Publish a released round's dashboard and rewrite the index over the released rounds.

    The round is released whatever happens here, so a failure is logged, not raised: the index
    can be written again by :func:`write_round_index`.
    """
    try:
        if publish_dashboard(state.output_dir / round_id) is None:
            log.warning("round %s has no dashboard to publish", round_id)
        write_round_index(state)
    except OSError:
        log.exception("round %s: the dashboard or the index could not be written", round_id)


def write_round_index(state: CoordinatorState) -> Path:
    """``index.html`` in the output folder: the rounds the store says were released, newest
    first, each linking to its dashboard."""
    return write_index(
        state.output_dir, title=state.project.title, releases=state.store.rounds.released()
    )
