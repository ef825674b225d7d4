"""What a round's products need from the nodes, and what each recipient is sent once the round is
released.

Products are made when every attribute they need has arrived (:mod:`.analysis`). Nothing is sent
to a partner until the round is released (:func:`product_deliveries`), by an operator or by the
project's ``auto_release``.
"""

from __future__ import annotations

from pathlib import Path

from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.transport.messages import ProductRelease, ReleasedFile, Upload
from oda_fed.transport.protocol import COORDINATOR


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
