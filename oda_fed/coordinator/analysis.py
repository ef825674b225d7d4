"""Make a round's products from its linked entities and the attributes the nodes shared.

For each product the entities are tabulated (:mod:`oda_fed.products.crosstab`), then put through
disclosure control against the release ledger (:mod:`.control`); its files, its disclosure report
and the round report are written for the operator. Nothing is sent to anyone here.

- ``partner_count_by_area``: entities by the area one partner holds and the number of partners
  that know them.
- ``count``: entities in the cohort by up to three dimensions.
- ``rate``: the same, and the share of them that also meet the numerator's conditions; numerator
  and denominator are each controlled, and the share is computed from what is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import PARTNERS, AttributeRef, Product
from oda_fed.coordinator import control, reports
from oda_fed.coordinator.release import attribute_upload
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.products import ProductTable, write_product
from oda_fed.products.crosstab import NOT_KNOWN, Dimension, count_cells
from oda_fed.products.tables import (
    area_row_totals,
    partner_count_cells,
    partner_totals,
    rate_product,
)

log = logging.getLogger(__name__)

MEDIA_TYPES = {".csv": "text/csv", ".png": "image/png", ".html": "text/html"}
#: The row of entities the area partner does not hold, or holds with no area.
UNKNOWN_AREA = "area not known"


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
    out_dir = state.output_dir / round_id
    out_dir.mkdir(parents=True, exist_ok=True)
    made, held = [], []
    for prod in state.project.products:
        if prod.kind == "partner_count_by_area":
            table, lines = _partners_by_area(state, round_id, prod, members, entity_partners)
        else:
            table, lines = _tabulated(state, round_id, prod, members, entity_partners)
        held += lines
        paths = write_product(table, out_dir)
        state.store.results.add_product(
            round_id=round_id,
            product_id=prod.id,
            title=prod.title,
            cells=len(table.table),
            suppressed=table.suppressed_cells,
            files=[(p.name, MEDIA_TYPES[p.suffix], p) for p in paths.values()],
        )
        made.append((table, paths))
    log.info("round %s: %d product(s) written to %s", round_id, len(made), out_dir)
    report = reports.round_report(state, round_id, members=members, made=made)
    return Made(report=report, held=held)


def _attribute(
    state: CoordinatorState, round_id: str, prod: Product, ref: AttributeRef, members: pd.DataFrame
) -> pd.Series:
    """The values ``ref``'s partner shared for ``prod``, by entity id (its records only)."""
    values = state.store.uploads.values(
        round_id=round_id, partner=ref.partner, upload=attribute_upload(prod.id, ref.name)
    )
    own = members[members.partner == ref.partner].sort_values("ref")
    return pd.Series(values, index=own.entity_id.to_numpy(), dtype=object)


def _categories(state: CoordinatorState, ref: AttributeRef, observed: pd.Series) -> tuple[str, ...]:
    """Every value a dimension can take: its labels or listed codes (so a value nobody has still
    gets its row), else the values present."""
    attribute = state.project.attribute(partner=ref.partner, name=ref.name)
    listed = attribute.labels or (attribute.domain.codes if attribute.domain else None)
    if listed:
        return tuple(listed)
    return tuple(sorted(v for v in set(observed) if v))


def _partners_by_area(
    state: CoordinatorState,
    round_id: str,
    prod: Product,
    members: pd.DataFrame,
    entity_partners: pd.Series,
) -> tuple[ProductTable, list[str]]:
    assert prod.area is not None  # the kind needs it
    ref = AttributeRef(partner=prod.area.partner, name=prod.area.attribute)
    area = _attribute(state, round_id, prod, ref, members)
    domain = state.project.attribute(partner=ref.partner, name=ref.name).domain
    cells = partner_count_cells(
        entity_partners=entity_partners,
        entity_area=area[area != ""],
        n_partners=len(state.partners),
        unknown_area=UNKNOWN_AREA,
        # Every listed area gets its rows, so an area with nobody linked is not conspicuous.
        areas=domain.codes if domain is not None and domain.codes else None,
    )
    checked = control.control(
        state,
        round_id,
        product_id=prod.id,
        title=prod.title,
        counts=f"partners_by_area/{ref}",
        cells=cells,
        known=area_row_totals(cells, unknown_area=UNKNOWN_AREA),
        unknown_area=UNKNOWN_AREA,
    )
    return checked.product, checked.held


def _tabulated(
    state: CoordinatorState,
    round_id: str,
    prod: Product,
    members: pd.DataFrame,
    entity_partners: pd.Series,
) -> tuple[ProductTable, list[str]]:
    """A count or rate product: its entities tabulated and controlled."""
    entities = pd.DataFrame({PARTNERS: entity_partners.astype(str)}, index=entity_partners.index)
    for ref in prod.attributes():
        values = _attribute(state, round_id, prod, ref, members)
        entities[str(ref)] = values.reindex(entities.index).fillna("").to_numpy(dtype=object)
    dims = [
        Dimension(
            PARTNERS, tuple(str(k) for k in range(1, len(state.partners) + 1)), not_known=False
        )
        if d == PARTNERS
        else Dimension(d, _categories(state, AttributeRef.parse(d), entities[d]))
        for d in prod.dimensions
    ]
    cohort = entity_partners.to_numpy() >= prod.cohort.min_partners
    for d, allowed in prod.cohort.where.items():
        cohort &= entities[d].isin(allowed).to_numpy()
    held_by: dict[str, list[str]] = {}
    for d in prod.dimensions:
        if d != PARTNERS:
            held_by.setdefault(AttributeRef.parse(d).partner, []).append(d)
    definition = {
        "min_partners": [str(prod.cohort.min_partners)],
        **{d: sorted(v) for d, v in prod.cohort.where.items()},
    }

    def controlled(mask: np.ndarray, counts: str, part: str = "") -> control.Controlled:
        cells = count_cells(entities, dims=dims, cohort=pd.Series(mask))
        return control.control(
            state,
            round_id,
            product_id=prod.id,
            title=prod.title,
            counts=counts,
            cells=cells,
            known=partner_totals(cells, held_by=held_by, not_known=NOT_KNOWN),
            unknown_area=NOT_KNOWN,
            cohort=definition,
            part=part,
        )

    what = "/".join(prod.dimensions)
    denominator = controlled(
        cohort, f"count/{what}", part="" if prod.kind == "count" else "denominator"
    )
    if prod.kind == "count":
        return denominator.product, denominator.held
    flagged = cohort.copy()
    for d, allowed in (prod.numerator or {}).items():
        flagged &= entities[d].isin(allowed).to_numpy()
    numerator = controlled(
        flagged,
        part="numerator",
        counts=f"rate-numerator/{what}/"
        + ";".join(f"{d}={sorted(v)}" for d, v in sorted((prod.numerator or {}).items())),
    )
    rate = rate_product(
        numerator.product, denominator.product, product_id=prod.id, title=prod.title
    )
    return rate, numerator.held + denominator.held
