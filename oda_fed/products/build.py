"""Build a project's products from a linked population, the same way wherever they are built: by
the coordinator for a federated round, and by ``oda-fed analyse`` on files.

- ``partner_count_by_area``: entities by the area one partner holds and the number of partners
  that know them.
- ``count``: entities in the cohort by up to three dimensions.
- ``rate``: the same, and the share of them that also meet the numerator's conditions; numerator
  and denominator are each controlled, and the share is computed from what is published.
- ``map``: a count (or with a numerator, a rate) by one area attribute, the same table as a
  ``count`` or ``rate`` by that area, carrying the boundaries it is drawn on.

Each table goes through :meth:`oda_fed.products.releases.Releases.control`, with every partner's
own totals as known totals. :func:`true_cells` gives the tables before it, for whoever must
measure what control and linkage changed (``benchmarks/products.py``); never release them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import PARTNERS, AttributeRef, Product, Project
from oda_fed.disclosure import KnownTotal
from oda_fed.products.boundaries import boundaries_for
from oda_fed.products.crosstab import NOT_KNOWN, Dimension, count_cells
from oda_fed.products.releases import Controlled, Releases
from oda_fed.products.tables import (
    ProductTable,
    area_row_totals,
    partner_count_cells,
    partner_totals,
    rate_product,
)

__all__ = ["UNKNOWN_AREA", "Population", "TrueCells", "build_product", "true_cells"]

#: The row of entities the area partner does not hold, or holds with no area.
UNKNOWN_AREA = "area not known"


@dataclass(frozen=True)
class Population:
    """The linked entities of a round and the attribute values partners shared for them.

    Attributes
    ----------
    partners
        Entity id to the number of partners that know the entity.
    values
        ``"<partner>.<attribute>"`` to its values by entity id (the partner's entities only; an
        empty value is not known).
    records
        For the owners of record-level products: partner to its record (the round's ref at the
        coordinator, the record id in ``oda-fed analyse``) by entity id.
    """

    partners: pd.Series
    values: Mapping[str, pd.Series]
    records: Mapping[str, pd.Series] = field(default_factory=dict)


@dataclass(frozen=True)
class TrueCells:
    """One table of a product before disclosure control: its true counts, and what control
    must know about them.

    Attributes
    ----------
    part
        ``""`` for a count; a rate's ``"denominator"`` or ``"numerator"``.
    counts
        What the cells count, whatever the product is called (the release ledger's name for them).
    cells
        A column per dimension, then ``count`` (true counts, every cell, zeros included).
    known
        The totals some partner can work out from its own records.
    unknown_area
        The label of "no value" in the table's dimensions.
    cohort
        Which entities are counted (attribute to the values allowed), or None.
    """

    part: str
    counts: str
    cells: pd.DataFrame
    known: list[KnownTotal]
    unknown_area: str
    cohort: dict[str, list[str]] | None = None


def true_cells(project: Project, prod: Product, population: Population) -> list[TrueCells]:
    """Tabulate ``prod`` over ``population``, without disclosure control: a count's one table,
    or a rate's (or a map's with a numerator) denominator then numerator.

    What :func:`build_product` controls; the counts are true counts, never to be released.

    Examples
    --------
    >>> [t.part for t in true_cells(project, rate, population)]  # doctest: +SKIP
    ['denominator', 'numerator']
    """
    if prod.kind == "partner_count_by_area":
        return [_partners_by_area(project, prod, population)]
    return _tabulated(project, prod, population)


def build_product(
    project: Project,
    prod: Product,
    population: Population,
    *,
    releases: Releases,
    release_id: str,
    report_dir: Path,
    boundaries: Mapping[str, Path] | None = None,
) -> Controlled:
    """Tabulate ``prod`` over ``population`` and put it through disclosure control.

    ``boundaries`` gives the boundary files maps are drawn on, by boundary set name (from
    ``coordinator.toml`` ``[boundaries]``); only a ``map`` needs them.

    Returns the controlled table and the cells the release ledger held (one line each).
    """
    # Read before anything is controlled: a map that cannot be drawn leaves nothing pending.
    drawn_on = boundaries_for(prod, boundaries or {}) if prod.kind == "map" else None
    control = _Control(releases, release_id, report_dir, prod)
    tables = {t.part: control(t) for t in true_cells(project, prod, population)}
    if "numerator" in tables:
        numerator, denominator = tables["numerator"], tables["denominator"]
        rate: ProductTable = rate_product(
            numerator.product, denominator.product, product_id=prod.id, title=prod.title
        )
        built = Controlled(product=rate, held=numerator.held + denominator.held)
    else:
        built = tables[""]
    if drawn_on is None:
        return built
    # The same controlled table as a count or rate by the area: the map only draws it.
    return Controlled(product=replace(built.product, boundaries=drawn_on), held=built.held)


@dataclass(frozen=True)
class _Control:
    releases: Releases
    release_id: str
    report_dir: Path
    prod: Product

    def __call__(self, table: TrueCells) -> Controlled:
        return self.releases.control(
            self.release_id,
            report_dir=self.report_dir,
            product_id=self.prod.id,
            title=self.prod.title,
            counts=table.counts,
            cells=table.cells,
            known=table.known,
            unknown_area=table.unknown_area,
            cohort=table.cohort,
            part=table.part,
        )


def entity_frame(prod: Product, population: Population) -> pd.DataFrame:
    """One row per entity: how many partners know it, and each attribute ``prod`` needs
    (``""`` where it is not known)."""
    partners = population.partners
    entities = pd.DataFrame({PARTNERS: partners.astype(str)}, index=partners.index)
    for ref in prod.attributes():
        values = population.values[str(ref)]
        entities[str(ref)] = values.reindex(entities.index).fillna("").to_numpy(dtype=object)
    return entities


def in_cohort(prod: Product, entities: pd.DataFrame) -> np.ndarray:
    """Which entities of :func:`entity_frame` are in ``prod``'s cohort."""
    cohort = entities[PARTNERS].astype(int).to_numpy() >= prod.cohort.min_partners
    for d, allowed in prod.cohort.where.items():
        cohort &= entities[d].isin(allowed).to_numpy()
    return cohort


def _categories(project: Project, ref: AttributeRef, observed: pd.Series) -> tuple[str, ...]:
    """Every value a dimension can take: its labels or listed codes (so a value nobody has still
    gets its row), else the values present."""
    attribute = project.attribute(partner=ref.partner, name=ref.name)
    listed = attribute.labels or (attribute.domain.codes if attribute.domain else None)
    if listed:
        return tuple(listed)
    return tuple(sorted(v for v in set(observed) if v))


def _partners_by_area(project: Project, prod: Product, population: Population) -> TrueCells:
    assert prod.area is not None  # the kind needs it
    ref = AttributeRef(partner=prod.area.partner, name=prod.area.attribute)
    area = population.values[str(ref)]
    domain = project.attribute(partner=ref.partner, name=ref.name).domain
    cells = partner_count_cells(
        entity_partners=population.partners,
        entity_area=area[area != ""],
        n_partners=len(project.partners),
        unknown_area=UNKNOWN_AREA,
        # Every listed area gets its rows, so an area with nobody linked is not conspicuous.
        areas=domain.codes if domain is not None and domain.codes else None,
    )
    return TrueCells(
        part="",
        counts=f"partners_by_area/{ref}",
        cells=cells,
        known=area_row_totals(cells, unknown_area=UNKNOWN_AREA),
        unknown_area=UNKNOWN_AREA,
    )


def _tabulated(project: Project, prod: Product, population: Population) -> list[TrueCells]:
    """A count, rate or map product: its entities tabulated."""
    entities = entity_frame(prod, population)
    dims = [
        Dimension(
            PARTNERS, tuple(str(k) for k in range(1, len(project.partners) + 1)), not_known=False
        )
        if d == PARTNERS
        else Dimension(d, _categories(project, AttributeRef.parse(d), entities[d]))
        for d in prod.dimensions
    ]
    cohort = in_cohort(prod, entities)
    held_by: dict[str, list[str]] = {}
    for d in prod.dimensions:
        if d != PARTNERS:
            held_by.setdefault(AttributeRef.parse(d).partner, []).append(d)
    definition = {
        "min_partners": [str(prod.cohort.min_partners)],
        **{d: sorted(v) for d, v in prod.cohort.where.items()},
    }

    def tabulated(mask: np.ndarray, counts: str, part: str) -> TrueCells:
        cells = count_cells(entities, dims=dims, cohort=pd.Series(mask))
        return TrueCells(
            part=part,
            counts=counts,
            cells=cells,
            known=partner_totals(cells, held_by=held_by, not_known=NOT_KNOWN),
            unknown_area=NOT_KNOWN,
            cohort=definition,
        )

    what = "/".join(prod.dimensions)
    if prod.numerator is None:
        return [tabulated(cohort, f"count/{what}", part="")]
    denominator = tabulated(cohort, f"count/{what}", part="denominator")
    flagged = cohort.copy()
    for d, allowed in (prod.numerator or {}).items():
        flagged &= entities[d].isin(allowed).to_numpy()
    wanted = ";".join(f"{d}={sorted(v)}" for d, v in sorted((prod.numerator or {}).items()))
    numerator = tabulated(flagged, f"rate-numerator/{what}/{wanted}", part="numerator")
    return [denominator, numerator]
