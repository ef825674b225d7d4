"""Make a round's products from its linked entities and the attributes the nodes shared.

Each product is built as :func:`oda_fed.products.build.build_product` builds it anywhere, under
the coordinator's disclosure control across rounds (:attr:`CoordinatorState.releases`); its files,
its disclosure reports and the round report are written for the operator. Nothing is sent to
anyone here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from oda_fed.config import LOCAL, RECORD_KINDS, AttributeRef, Product
from oda_fed.coordinator import reports
from oda_fed.coordinator.release import attribute_upload, table_upload
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.durable import private_dir
from oda_fed.products import write_product
from oda_fed.products.build import Population, build_products
from oda_fed.products.note import Provenance
from oda_fed.products.records import (
    REF_COLUMN,
    RecordProduct,
    build_records,
    write_decisions,
    write_records,
)
from oda_fed.products.tables import ProductTable

log = logging.getLogger(__name__)

MEDIA_TYPES = {".csv": "text/csv", ".png": "image/png", ".html": "text/html"}


@dataclass(frozen=True)
class Made:
    """A round's products, made and checked: the round report, and the cells the ledger held."""

    report: Path
    held: list[str]


def make_products(state: CoordinatorState, round_id: str) -> Made:
    """Make every product of the round under disclosure control, write its files, and write the
    round report. Nothing is sent to anyone here."""
    members = pd.DataFrame(
        state.store.results.members(round_id=round_id),
        columns=["partner", "ref", "entity_id", "score"],
    )
    entity_partners = members.groupby("entity_id")["partner"].nunique()
    out_dir = private_dir(state.output_dir / round_id)  # products and true counts
    provenance = Provenance(
        project=state.project,
        fingerprint=state.fingerprint,
        release_id=round_id,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    made, records, tables = [], [], []
    for prod in state.project.products:
        if prod.kind == LOCAL:
            continue  # computed and controlled at its owner's node
        population = Population(
            partners=entity_partners,
            values={
                str(ref): _attribute(state, round_id, prod, ref, members)
                for ref in prod.attributes()
            },
            records=_refs(members, prod.owner),
        )
        if prod.kind in RECORD_KINDS:
            records.append(_record_product(state, round_id, prod, population, out_dir))
        else:
            tables.append((prod, population))
    # Controlled together, so that no product's suppressed cell follows from another's.
    built = build_products(
        state.project,
        tables,
        releases=state.releases,
        release_id=round_id,
        report_dir=out_dir,
        boundaries=state.boundaries,
    )
    held = [line for prod, _ in tables for line in built[prod.id].held]
    for prod in state.project.products:
        if prod.kind in RECORD_KINDS:
            continue
        local = prod.kind == LOCAL
        table = _local_table(state, round_id, prod) if local else built[prod.id].product
        paths = write_product(table, out_dir, provenance=provenance)
        state.store.results.add_product(
            round_id=round_id,
            product_id=prod.id,
            title=prod.title,
            cells=len(table.table),
            suppressed=table.suppressed_cells,
            files=[(p.name, MEDIA_TYPES[p.suffix], p) for p in paths.values()],
        )
        made.append((table, paths))
    log.info("round %s: %d product(s) written to %s", round_id, len(made) + len(records), out_dir)
    report = reports.round_report(state, round_id, members=members, made=made, records=records)
    reports.stage_dashboard(state, round_id, made=made, provenance=provenance)
    return Made(report=report, held=held)


def _local_table(state: CoordinatorState, round_id: str, prod: Product) -> ProductTable:
    """A local product's table as its owner's node sent it (checked again as it is read)."""
    from oda_fed.products.local import received_table

    assert prod.owner is not None  # the kind needs it
    stored = state.store.uploads.values(
        round_id=round_id, partner=prod.owner, upload=table_upload(prod.id)
    )
    return received_table(state.project, prod, [(tuple(c), n) for c, n in stored])


def _refs(members: pd.DataFrame, owner: str | None) -> dict[str, pd.Series]:
    """The owner's round refs by entity id, for a record-level product."""
    if owner is None:
        return {}
    own = members[members.partner == owner]
    return {owner: pd.Series(own.ref.astype(str).to_numpy(), index=own.entity_id.to_numpy())}


def _record_product(
    state: CoordinatorState, round_id: str, prod: Product, population: Population, out_dir: Path
) -> RecordProduct:
    """A list or alert, by the owner's round refs (its node turns them into record ids)."""
    product = build_records(
        state.project, prod, population, releases=state.releases, release_id=round_id
    )
    write_decisions(product, out_dir, releases=state.releases, release_id=round_id)
    paths = write_records(product, out_dir, record_column=REF_COLUMN)
    state.store.results.add_product(
        round_id=round_id,
        product_id=prod.id,
        title=prod.title,
        cells=len(product.rows),
        suppressed=product.decisions.get("withheld_k", 0) + product.decisions.get("withheld_l", 0),
        files=[(p.name, MEDIA_TYPES[p.suffix], p) for p in paths.values()],
    )
    return product


def _attribute(
    state: CoordinatorState, round_id: str, prod: Product, ref: AttributeRef, members: pd.DataFrame
) -> pd.Series:
    """The values ``ref``'s partner shared for ``prod``, by entity id (its records only)."""
    values = state.store.uploads.values(
        round_id=round_id, partner=ref.partner, upload=attribute_upload(prod.id, ref.name)
    )
    own = members[members.partner == ref.partner].sort_values("ref")
    return pd.Series(values, index=own.entity_id.to_numpy(), dtype=object)
