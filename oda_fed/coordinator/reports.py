"""The round report the operator reviews before release (``report.html``): the linkage summary,
every product's controlled table and chart, and the state of the coordinator's audit log.

It holds counts only and stays with the coordinator. The linkage quality report
(``quality.html``) is written by :mod:`oda_fed.coordinator.linking`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from oda_fed.audit import read_entries, verify_log
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.matching.link import entities_by_partner_count
from oda_fed.products import ProductTable, render_report
from oda_fed.products.records import RecordProduct


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
