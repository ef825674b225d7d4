"""A round's data products: the attributes they need, the controlled tables, the round report, and
what each recipient is sent once the round is released.

Products are made, disclosure-controlled and written when every attribute they need has arrived
(:func:`make_products`), and the round report (``report.html``) is written beside them. Nothing is
sent to a partner until the round is released (:func:`product_deliveries`), by an operator or by
the project's ``auto_release``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oda_fed.coordinator import control, reports
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.durable import write_atomic
from oda_fed.products import write_product
from oda_fed.products.tables import area_row_totals, partner_count_cells
from oda_fed.transport.messages import ProductRelease, ReleasedFile, Upload
from oda_fed.transport.protocol import COORDINATOR, AuditKind

log = logging.getLogger(__name__)

MEDIA_TYPES = {".csv": "text/csv", ".png": "image/png", ".html": "text/html"}
#: The row of entities the area partner does not hold, or holds with no area.
UNKNOWN_AREA = "area not known"


def attribute_upload(product_id: str, attribute: str) -> Upload:
    return Upload(product_id=product_id, attribute=attribute)


def analysis_deliveries(state: CoordinatorState, round_id: str) -> list[Delivery]:
    """Once matched: entity ids for every partner, and each product's attribute from its partner."""
    owed = [Delivery(round_id, p, DeliveryKind.ENTITIES_READY) for p in state.partners]
    owed += [
        Delivery(
            round_id,
            ref.partner,
            DeliveryKind.SHARE_ATTRIBUTE,
            product_id=prod.id,
            attribute=ref.name,
        )
        for prod in state.project.products
        for ref in prod.attributes()
    ]
    return owed


def missing_attributes(state: CoordinatorState, round_id: str) -> list[str]:
    """The attributes the products still wait for, as ``partner's attribute`` (empty: all in)."""
    return [
        f"{ref.partner}'s {ref.name}"
        for prod in state.project.products
        for ref in prod.attributes()
        if not state.store.uploads.complete(
            round_id=round_id, partner=ref.partner, upload=attribute_upload(prod.id, ref.name)
        )
    ]


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
        values = state.store.uploads.values(
            round_id=round_id,
            partner=prod.area.partner,
            upload=attribute_upload(prod.id, prod.area.attribute),
        )
        own = members[members.partner == prod.area.partner].sort_values("ref")
        area = pd.Series(values, index=own.entity_id.to_numpy(), dtype=object)
        domain = state.project.attribute(partner=prod.area.partner, name=prod.area.attribute).domain
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
            counts=f"partners_by_area/{prod.area.partner}.{prod.area.attribute}",
            cells=cells,
            known=area_row_totals(cells, unknown_area=UNKNOWN_AREA),
            unknown_area=UNKNOWN_AREA,
        )
        table = checked.product
        held += checked.held
        paths = write_product(table, out_dir)
        if table.report is not None:
            frame = table.report.to_frame()
            internal = out_dir / f"{prod.id}.disclosure.csv"
            write_atomic(internal, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
            _log_decisions(state, round_id, prod.id, table)
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


def _log_decisions(state: CoordinatorState, round_id: str, product_id: str, table) -> None:
    """Every decision of disclosure control, counted, in the coordinator's audit log."""
    tally = table.report.tally()
    state.crossings.record(
        sender=COORDINATOR,
        recipient=COORDINATOR,
        kind=AuditKind.DISCLOSURE_CHECKED,
        round_id=round_id,
        detail={
            "product": product_id,
            **{d.name.lower(): n for d, n in tally.items()},
            "exposed": len(table.report.exposed),
        },
    )


def product_deliveries(state: CoordinatorState, round_id: str) -> list[Delivery]:
    """Each product to each of its recipients (the coordinator keeps its own copy on disk)."""
    return [
        Delivery(round_id, r, DeliveryKind.PRODUCT_RELEASE, product_id=prod.id)
        for prod in state.project.products
        for r in prod.recipients
        if r != COORDINATOR
    ]


def product_release(
    state: CoordinatorState, *, round_id: str, product_id: str, released_by: str
) -> ProductRelease:
    """A released product as sent to one recipient: its files, read from the output folder."""
    prod = next(p for p in state.project.products if p.id == product_id)
    files = tuple(
        ReleasedFile(name=name, media_type=media_type, content=Path(path).read_bytes())
        for _, name, media_type, path in state.store.results.product_files(
            round_id=round_id, product_id=product_id
        )
    )
    return ProductRelease(
        product_id=product_id, title=prod.title, files=files, released_by=released_by
    )
