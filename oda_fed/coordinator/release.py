"""What a round's products need from the nodes, and what each recipient is sent once the round is
released.

Products are made when every attribute they need, and every ``local`` product's table, has
arrived (:mod:`.analysis`). Nothing is sent
to a partner until the round is released (:func:`product_deliveries`), by an operator or by the
project's ``auto_release``.
"""

from __future__ import annotations

from pathlib import Path

from oda_fed.config import LOCAL
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.state import CoordinatorState
from oda_fed.transport.messages import ProductRelease, ReleasedFile, Upload
from oda_fed.transport.protocol import COORDINATOR


def attribute_upload(product_id: str, attribute: str) -> Upload:
    return Upload(product_id=product_id, attribute=attribute)


def table_upload(product_id: str) -> Upload:
    return Upload(product_id=product_id, table=True)


def analysis_deliveries(state: CoordinatorState, round_id: str) -> list[Delivery]:
    """Once matched: entity ids for every partner; each product's attributes from their partners,
    or for a ``local`` product, its table from its owner (its attributes never leave the node)."""
    owed = [Delivery(round_id, p, DeliveryKind.ENTITIES_READY) for p in state.partners]
    for prod in state.project.products:
        if prod.kind == LOCAL:
            assert prod.owner is not None  # the kind needs it
            owed.append(
                Delivery(round_id, prod.owner, DeliveryKind.COMPUTE_TABLE, product_id=prod.id)
            )
            continue
        owed += [
            Delivery(
                round_id,
                ref.partner,
                DeliveryKind.SHARE_ATTRIBUTE,
                product_id=prod.id,
                attribute=ref.name,
            )
            for ref in prod.attributes()
        ]
    return owed


def missing_uploads(state: CoordinatorState, round_id: str) -> list[str]:
    """What the products still wait for, as ``partner's attribute`` or ``partner's table of
    product`` (empty: all in).

    An upload counts once it is complete and its node has answered the instruction for it: a
    node answers only after checking that what the coordinator holds in its name is what it
    sent, and one that finds otherwise says so instead (what was held is then discarded). So
    nothing uploaded in a partner's name by anyone else is ever analysed.
    """
    confirmed = {
        (d.partner, d.product_id, d.attribute if d.kind is DeliveryKind.SHARE_ATTRIBUTE else "")
        for d in state.store.deliveries.of_round(round_id)
        if d.done and d.kind in (DeliveryKind.SHARE_ATTRIBUTE, DeliveryKind.COMPUTE_TABLE)
    }
    missing = []
    for prod in state.project.products:
        if prod.kind == LOCAL:
            assert prod.owner is not None
            wanted = [(prod.owner, "", table_upload(prod.id), f"table of {prod.id}")]
        else:
            wanted = [
                (ref.partner, ref.name, attribute_upload(prod.id, ref.name), ref.name)
                for ref in prod.attributes()
            ]
        missing += [
            f"{partner}'s {what}"
            for partner, attribute, upload, what in wanted
            if (partner, prod.id, attribute) not in confirmed
            or not state.store.uploads.complete(round_id=round_id, partner=partner, upload=upload)
        ]
    return missing


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
