"""A prioritised list or an alert, as the owner's node receives it: by this round's refs, which
only this node can turn into its record ids.

The file is checked against the pinned project before anything is written: only the columns the
project lets the product carry, only values it allows, and only refs this node issued in the
round, each once. A file that breaks any of these is refused, and nothing of it is kept.
"""

from __future__ import annotations

import io

import pandas as pd

from oda_fed.config import RECORD_KINDS, Product
from oda_fed.disclosure import WITHHELD
from oda_fed.node.policy import Refused
from oda_fed.node.rounds import RoundFiles
from oda_fed.products.records import REF_COLUMN, record_columns
from oda_fed.transport.messages import ProductRelease, ReleasedFile

#: The column of the owner's record ids in the list a node writes.
RECORD_ID = "record_id"


def is_record_product(product: Product) -> bool:
    return product.kind in RECORD_KINDS


def with_record_ids(
    product: Product, release: ProductRelease, files: RoundFiles
) -> tuple[list[ReleasedFile], int]:
    """The release's files with each ref replaced by this node's record id; and the number of
    records. Raises :class:`Refused` if the file is not what the project allows."""
    expected = f"{product.id}.csv"
    if [f.name for f in release.files] != [expected]:
        raise Refused(f"a {product.kind} comes as one file, {expected}")
    if not files.prepared:
        raise Refused(f"this node holds no refs for round {files.dir.name}")
    try:
        rows = pd.read_csv(io.BytesIO(release.files[0].content), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise Refused(f"{expected} is not a readable CSV file") from None
    allowed = [REF_COLUMN, *record_columns(product)]
    if list(rows.columns) != allowed:
        raise Refused(
            f"{expected} carries columns {list(rows.columns)}; the project allows "
            f"{allowed} for this {product.kind}"
        )
    problem = _values_problem(product, rows)
    if problem:
        raise Refused(f"{expected}: {problem}")
    record_ids = files.record_ids()
    refs = rows[REF_COLUMN]
    if not refs.str.fullmatch(r"[0-9]{1,12}").all():
        raise Refused(f"{expected}: a ref is not one this node issued")
    numbers = refs.astype("int64")
    if numbers.duplicated().any() or (numbers >= len(record_ids)).any():
        raise Refused(f"{expected}: a ref is not one this node issued, or comes twice")
    mapped = rows.drop(columns=REF_COLUMN)
    mapped.insert(0, RECORD_ID, record_ids[numbers.to_numpy()])
    content = mapped.to_csv(index=False).encode("utf-8")
    return [ReleasedFile(name=expected, media_type="text/csv", content=content)], len(mapped)


def _values_problem(product: Product, rows: pd.DataFrame) -> str:
    """Which column holds a value the project does not allow, or ``""``."""
    if product.kind != "list":
        return ""
    ranks = {str(r) for r in range(1, len(product.score_labels) + 1)}
    groups = {i.group for i in product.indicators}
    checks = {
        "rank": rows["rank"].isin(ranks),
        "score_band": rows["score_band"].isin(product.score_labels),
    }
    if "groups" in rows:
        checks["groups"] = rows["groups"].map(
            lambda v: v == WITHHELD or (v != "" and set(v.split("+")) <= groups)
        )
    bad = [column for column, ok in checks.items() if not ok.all()]
    return f"values in {', '.join(bad)} that the project does not allow" if bad else ""
