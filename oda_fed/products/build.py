"""Build a project's products from a linked population, the same way wherever they are built: by
the coordinator for a federated round, and by ``oda-fed analyse`` on files.

- ``partner_count_by_area``: entities by the area one partner holds and the number of partners
  that know them.
- ``count``: entities in the cohort by up to three dimensions.
- ``rate``: the same, and the share of them that also meet the numerator's conditions; numerator
  and denominator are each controlled, and the share is computed from what is published.
- ``map``: a count (or with a numerator, a rate) by one area attribute, the same table as a
  ``count`` or ``rate`` by that area, carrying the boundaries it is drawn on.
- ``local``: one partner's own records (not linked entities) by its own attributes, built at its
  node (:mod:`oda_fed.products.local`).

All the tables of one release go through disclosure control together
(:meth:`oda_fed.products.releases.Releases.control_together`), with every partner's own totals as
known totals, and with every cell of one product that counts the same people as cells of another
(the same cohort, by fewer of the same dimensions: a ward's count and its row by age, or the same
table twice) linked to them, so that no suppressed cell of one can be worked out from the other.
:func:`true_cells` gives a product's tables before control, for whoever must measure what control
and linkage changed (``benchmarks/products.py``); never release them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import LOCAL, PARTNERS, AttributeRef, Product, Project
from oda_fed.disclosure import KnownTotal
from oda_fed.products.boundaries import Boundaries, boundaries_for
from oda_fed.products.crosstab import NOT_KNOWN, Dimension, count_cells
from oda_fed.products.releases import Controlled, Part, Releases
from oda_fed.products.tables import (
    ProductTable,
    area_row_totals,
    partner_count_cells,
    partner_totals,
    rate_product,
)

__all__ = ["UNKNOWN_AREA", "Population", "build_product", "build_products", "true_cells"]

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
    """Tabulate ``prod`` over ``population`` and put it through disclosure control, on its
    own; a release of several products uses :func:`build_products`.

    ``boundaries`` gives the boundary files maps are drawn on, by boundary set name (from
    ``coordinator.toml`` ``[boundaries]``); only a ``map`` needs them.

    Returns the controlled table and the cells the release ledger held (one line each).
    """
    return build_products(
        project,
        [(prod, population)],
        releases=releases,
        release_id=release_id,
        report_dir=report_dir,
        boundaries=boundaries,
    )[prod.id]


def build_products(
    project: Project,
    items: Sequence[tuple[Product, Population]],
    *,
    releases: Releases,
    release_id: str,
    report_dir: Path,
    boundaries: Mapping[str, Path] | None = None,
) -> dict[str, Controlled]:
    """Tabulate each count, rate, map and ``partner_count_by_area`` product over its
    population, and control them together (see the module's docstring).

    Every map's boundaries are read first: a map that cannot be drawn leaves nothing pending in
    the ledger. Returns each product's controlled table and held cells, by product id.
    """
    drawn = {
        prod.id: boundaries_for(prod, boundaries or {}) for prod, _ in items if prod.kind == "map"
    }
    plans = [_plan(project, prod, population) for prod, population in items]
    parts = [part for plan in plans for part in plan.parts]
    views = [view for plan in plans for view in plan.views]
    links, same = _links(parts, views, _nested(items))
    controlled = releases.control_together(
        release_id, parts, report_dir=report_dir, links=links, same_cells=same
    )
    out, at = {}, 0
    for plan in plans:
        mine = controlled[at : at + len(plan.parts)]
        at += len(plan.parts)
        out[plan.prod.id] = _assembled(plan.prod, mine, drawn.get(plan.prod.id))
    return out


@dataclass(frozen=True)
class _View:
    """How a part's cells are compared with other parts': which people they count (``who``),
    and each cell's coordinates under common names."""

    who: str
    cells: pd.DataFrame


@dataclass(frozen=True)
class _Plan:
    prod: Product
    parts: list[Part]
    views: list[_View]


def _assembled(prod: Product, parts: list[Controlled], drawn: Boundaries | None) -> Controlled:
    """A product from its controlled parts: a rate from its numerator and denominator."""
    if len(parts) == 1:
        built = parts[0]
    else:
        denominator, numerator = parts
        rate: ProductTable = rate_product(
            numerator.product, denominator.product, product_id=prod.id, title=prod.title
        )
        built = Controlled(product=rate, held=numerator.held + denominator.held)
    if drawn is None:
        return built
    # The same controlled table as a count or rate by the area: the map only draws it.
    return Controlled(product=replace(built.product, boundaries=drawn), held=built.held)


def _links(
    parts: Sequence[Part], views: Sequence[_View], implied: Mapping[tuple[str, str], Mapping]
) -> tuple[list[KnownTotal], dict[int, int]]:
    """Every cell of one part that counts the same people as a group of cells of another: the
    same ``who``, and the other part's cells that agree with it on all its dimensions, directly
    or through an area nested in another (``implied``: each LSOA in one ward, say, so that a
    ward's cell is the sum of its LSOAs'). And, where two parts are the same table, each cell of
    the later to its twin in the earlier (positions in the parts stacked in order)."""
    starts = np.cumsum([0, *(len(p.cells) for p in parts)])
    links, same = [], {}
    for i, j in itertools.permutations(range(len(parts)), 2):
        coarse, fine = views[i], views[j]
        dims = list(coarse.cells.columns)
        twins = set(dims) == set(fine.cells.columns)
        if coarse.who != fine.who or (twins and i > j):
            continue  # the same table twice: one link per pair of cells is enough
        cells = _in_terms_of(fine.cells, dims, implied)
        if cells is None:
            continue
        groups = cells.groupby(dims, sort=False).indices
        for a, key in enumerate(coarse.cells.itertuples(index=False, name=None)):
            members = groups.get(key if len(dims) > 1 else key[0])
            if members is None:
                continue
            if twins and len(members) == 1:
                same[int(starts[j]) + int(members[0])] = int(starts[i]) + a
            links.append(
                KnownTotal.same_people(
                    [int(starts[i]) + a],
                    [int(starts[j]) + int(b) for b in members],
                    label=f"{parts[i].name} and {parts[j].name}: "
                    + ", ".join(f"{d}={v}" for d, v in zip(dims, key, strict=True)),
                )
            )
    return links, same


def _in_terms_of(
    cells: pd.DataFrame, dims: Sequence[str], implied: Mapping[tuple[str, str], Mapping]
) -> pd.DataFrame | None:
    """``cells`` with a column for each of ``dims``, taken through ``implied`` from one of its
    own where it lacks it (a cell with no value there counts nobody); None when one cannot be."""
    out = cells
    for d in dims:
        if d in cells.columns:
            continue
        source = next((c for c in cells.columns if (c, d) in implied), None)
        if source is None:
            return None
        out = out.assign(**{d: cells[source].map(implied[(source, d)])})
    return out


def _nested(items: Sequence[tuple[Product, Population]]) -> dict[tuple[str, str], dict]:
    """Pairs of the release's dimensions where every entity's value of the first gives its value
    of the second (an LSOA gives its ward), with that mapping; over every linked entity, not
    knowing a value being a value too (``not known``)."""
    values: dict[str, pd.Series] = {}
    for prod, population in items:
        if prod.kind == LOCAL:
            continue  # a partner's records, not the linked entities
        for d in prod.dimensions:
            if d == PARTNERS or d in values:
                continue
            column = population.values[d].reindex(population.partners.index).fillna("")
            values[d] = column.replace("", NOT_KNOWN).astype(str)
    codes = {d: pd.factorize(v, sort=False) for d, v in values.items()}
    out = {}
    for a, c in itertools.permutations(values, 2):
        if not values[a].index.equals(values[c].index):
            continue
        (a_codes, a_values), (c_codes, c_values) = codes[a], codes[c]
        pairs = np.unique(a_codes.astype(np.int64) * len(c_values) + c_codes)
        firsts = pairs // len(c_values)
        if len(np.unique(firsts)) == len(firsts):
            out[(a, c)] = {
                str(a_values[x]): str(c_values[y])
                for x, y in zip(firsts, pairs % len(c_values), strict=True)
            }
    return out


def _view(cells: pd.DataFrame, who: str, names: Mapping[str, str] | None = None) -> _View:
    names = names or {}
    dims = [c for c in cells.columns if c != "count"]
    frame = pd.DataFrame({names.get(d, d): cells[d].astype(str).to_numpy() for d in dims})
    return _View(who=who, cells=frame)


def true_cells(project: Project, prod: Product, population: Population) -> list[Part]:
    """Tabulate ``prod`` over ``population``, without disclosure control: a count's one table,
    or a rate's (or a map's with a numerator) denominator then numerator, each with its true
    counts (every cell, zeros included) and what control must know about them."""
    return _plan(project, prod, population).parts


def _plan(project: Project, prod: Product, population: Population) -> _Plan:
    if prod.kind == "partner_count_by_area":
        return _partners_by_area(project, prod, population)
    return _tabulated(project, prod, population)


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


def listed_values(project: Project, ref: AttributeRef) -> tuple[str, ...] | None:
    """The values an attribute can take, when the project lists them (its labels or code list),
    so that a value nobody has still gets its row; None when only a pattern bounds them."""
    attribute = project.attribute(partner=ref.partner, name=ref.name)
    listed = attribute.labels or (attribute.domain.codes if attribute.domain else None)
    return tuple(listed) if listed else None


def _categories(project: Project, ref: AttributeRef, observed: pd.Series) -> tuple[str, ...]:
    """Every value a dimension can take: :func:`listed_values`, else the values present."""
    return listed_values(project, ref) or tuple(sorted(v for v in set(observed) if v))


def _partners_by_area(project: Project, prod: Product, population: Population) -> _Plan:
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
    part = Part(
        product_id=prod.id,
        title=prod.title,
        counts=f"partners_by_area/{ref}",
        cells=cells,
        known=tuple(area_row_totals(cells, unknown_area=UNKNOWN_AREA)),
        unknown_area=UNKNOWN_AREA,
    )
    # The same cells as a count by the area and "partners" over every linked entity.
    view = _view(
        cells.replace({"area": {UNKNOWN_AREA: NOT_KNOWN}}),
        _who("count", _definition(min_partners=1)),
        names={"area": str(ref)},
    )
    return _Plan(prod=prod, parts=[part], views=[view])


def _definition(min_partners: int, where: Mapping[str, list[str]] | None = None) -> dict:
    """A cohort as the ledger and the links name it."""
    return {"min_partners": [str(min_partners)], **{d: sorted(v) for d, v in (where or {}).items()}}


def _who(what: str, cohort: Mapping[str, list[str]]) -> str:
    return json.dumps([what, cohort], sort_keys=True)


def _tabulated(project: Project, prod: Product, population: Population) -> _Plan:
    """A count, rate or map: its entities tabulated, its tables ready for control."""
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
    definition = _definition(prod.cohort.min_partners, prod.cohort.where)
    what = "/".join(prod.dimensions)
    parts, views = [], []

    def add(mask: np.ndarray, counts: str, part: str, who: str) -> None:
        cells = count_cells(entities, dims=dims, cohort=pd.Series(mask))
        parts.append(
            Part(
                product_id=prod.id,
                title=prod.title,
                counts=counts,
                cells=cells,
                known=tuple(partner_totals(cells, held_by=held_by, not_known=NOT_KNOWN)),
                cohort=definition,
                part=part,
                unknown_area=NOT_KNOWN,
            )
        )
        views.append(_view(cells, who))

    if prod.kind == LOCAL:
        # A partner's records, not linked entities: never the same cells as a count's.
        add(cohort, f"local/{what}", "", _who("local", definition))
        return _Plan(prod=prod, parts=parts, views=views)
    if prod.numerator is None:
        add(cohort, f"count/{what}", "", _who("count", definition))
        return _Plan(prod=prod, parts=parts, views=views)
    flagged = cohort.copy()
    for d, allowed in prod.numerator.items():
        flagged &= entities[d].isin(allowed).to_numpy()
    wanted = ";".join(f"{d}={sorted(v)}" for d, v in sorted(prod.numerator.items()))
    add(cohort, f"count/{what}", "denominator", _who("count", definition))
    add(flagged, f"rate-numerator/{what}/{wanted}", "numerator",
        _who(f"numerator {wanted}", definition))  # fmt: skip
    return _Plan(prod=prod, parts=parts, views=views)
