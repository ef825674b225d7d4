"""Record-level products: a prioritised list and an alert, each to its owner partner alone.

Both name the owner's own records and nobody else's, and carry only what the project allows:

- A **list** ranks the owner's records in the cohort by a score the project defines from other
  partners' indicators (``[[products.indicators]]``: points for an attribute's values). A row
  carries the record, its ``rank`` (1 for the highest score band; records of one band share it
  and come in random order), its ``score_band`` and, with ``show_groups``, which groups of
  indicators gave it points (``groups``). Records scoring below the first band are not listed.
- An **alert** names the owner's records of entities that meet the cohort's rule now and did
  not at the last release (the first release sets the baseline and alerts nobody). It needs
  stable entity ids.

Each goes through :func:`oda_fed.disclosure.protect_records`: every group of rows alike in what
they carry has at least ``[disclosure] k_anonymity`` rows and, for a declared ``sensitive``
attribute, ``l_diversity`` of its values. A list of fewer than ``min_cell`` records (the
strictest partner's), or an alert of fewer than ``k_anonymity``, is not released at all; an
alert's records not released stay new for the next release.

Where it is built, a record is what identifies it there: the owner's per-round ref at the
coordinator (the owner's node turns it into its record id, :mod:`oda_fed.node.lists`), the record
id in ``oda-fed analyse``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.config import AttributeRef, Product, Project
from oda_fed.disclosure import protect_records
from oda_fed.durable import write_atomic
from oda_fed.products.build import Population, entity_frame, in_cohort
from oda_fed.products.releases import Releases

__all__ = [
    "RECORD",
    "REF_COLUMN",
    "RecordProduct",
    "build_records",
    "record_columns",
    "write_decisions",
    "write_records",
]

#: The column naming the owner's record.
RECORD = "record"
#: What that column is called in the file a coordinator sends: the owner's round ref.
REF_COLUMN = "ref"


@dataclass(frozen=True)
class RecordProduct:
    """A list or alert, protected, for its owner.

    Attributes
    ----------
    rows
        One row per record released: :data:`RECORD`, then :func:`record_columns`.
    decisions
        What protection did, counted in rows (see :class:`oda_fed.disclosure.ProtectedRecords`).
    held
        Why nothing is released this time, or ``""``.
    note
        What a reader should know, e.g. that a first alert only sets its baseline.
    """

    product_id: str
    title: str
    kind: str
    owner: str
    rows: pd.DataFrame
    decisions: dict[str, int] = field(default_factory=dict)
    held: str = ""
    note: str = ""


def record_columns(prod: Product) -> list[str]:
    """What a row of ``prod`` carries beside the record: all its recipient may learn."""
    if prod.kind == "alert":
        return []
    return ["rank", "score_band", *(["groups"] if prod.show_groups else [])]


def build_records(
    project: Project,
    prod: Product,
    population: Population,
    *,
    releases: Releases,
    release_id: str,
) -> RecordProduct:
    """Build the list or alert ``prod`` over ``population`` and protect it."""
    assert prod.owner is not None  # the model requires one
    entities = entity_frame(prod, population)
    owned = population.records.get(prod.owner, pd.Series(dtype=object))
    record = owned[~owned.index.duplicated()].reindex(entities.index)
    eligible = in_cohort(prod, entities) & record.notna().to_numpy()
    sensitive = entities[prod.sensitive] if prod.sensitive else None
    partners = {prod.owner, *(r.partner for r in prod.attributes())}
    k = project.disclosure.k_anonymity
    protect = {
        "k": k,
        "l_diversity": project.disclosure.l_diversity,
        # A list below the smallest publishable count is not released; an alert, below k.
        "min_rows": max(project.min_cell(partners), k) if prod.kind == "list" else k,
    }
    if prod.kind == "list":
        return _list(prod, entities, record, eligible, sensitive, protect)
    return _alert(prod, entities, record, eligible, sensitive, protect, releases, release_id)


def _list(prod, entities, record, eligible, sensitive, protect) -> RecordProduct:
    bands = np.asarray(prod.score_bands)
    score = np.zeros(len(entities), dtype=np.int64)
    gave: dict[str, np.ndarray] = {}
    for indicator in prod.indicators:
        values = entities[str(AttributeRef.parse(indicator.attribute))]
        points = values.map(indicator.points).fillna(0).to_numpy(dtype=np.int64)
        score += points
        gave[indicator.group] = gave.get(indicator.group, np.zeros(len(score), bool)) | (points > 0)
    listed = eligible & (score >= bands[0])
    band = np.searchsorted(bands, score[listed], side="right") - 1
    rows = pd.DataFrame(
        {
            RECORD: record.to_numpy()[listed],
            "rank": len(bands) - band,
            "score_band": np.asarray(prod.score_labels, dtype=object)[band],
        }
    )
    if prod.show_groups:
        rows["groups"] = [
            "+".join(g for g in sorted(gave) if gave[g][i]) for i in np.flatnonzero(listed)
        ]
    # Within a band the order is random, so a row's place says nothing finer than its band.
    rows["_draw"] = np.random.default_rng(secrets.randbits(128)).random(len(rows))
    order = rows.sort_values(["rank", "_draw"]).index
    values = None if sensitive is None else sensitive[listed].reset_index(drop=True)
    rows = rows.drop(columns="_draw")
    protected = protect_records(
        rows,
        quasi=record_columns(prod),
        generalise=["groups"] if prod.show_groups else [],
        sensitive=values,
        **protect,
    )
    kept = protected.rows.loc[[i for i in order if i in protected.rows.index]]
    return _made(prod, kept, decisions=protected.decisions, held=protected.held)


def _made(prod: Product, rows: pd.DataFrame, **said: object) -> RecordProduct:
    assert prod.owner is not None  # a record-level product's model requires one
    return RecordProduct(
        product_id=prod.id,
        title=prod.title,
        kind=prod.kind,
        owner=prod.owner,
        rows=rows.reset_index(drop=True),
        **said,
    )


def _alert(
    prod, entities, record, eligible, sensitive, protect, releases: Releases, release_id: str
) -> RecordProduct:
    meets = entities.index[eligible]
    baseline = releases.alert_baseline(prod.id)
    if baseline is None:
        releases.keep_alert_baseline(release_id, prod.id, meets)
        return _made(
            prod,
            pd.DataFrame({RECORD: pd.Series(dtype=object)}),
            decisions={"released": 0, "baseline": len(meets)},
            note=f"the first release sets the baseline ({len(meets)} entities meet the rule); "
            "alerts start with the next release",
        )
    new = eligible & ~entities.index.isin(list(baseline))
    rows = pd.DataFrame({RECORD: record.to_numpy()[new]})
    values = None if sensitive is None else sensitive[new].reset_index(drop=True)
    protected = protect_records(rows, quasi=[], sensitive=values, **protect)
    released = set(protected.rows.index)
    # An entity whose alert was not released is left out of the baseline, so it is new next time.
    unreleased = {e for i, e in enumerate(entities.index[new]) if i not in released}
    releases.keep_alert_baseline(release_id, prod.id, [e for e in meets if e not in unreleased])
    return _made(
        prod,
        protected.rows.sample(frac=1, random_state=secrets.randbits(32)),
        decisions={**protected.decisions, "baseline": len(meets) - len(unreleased)},
        held=protected.held,
    )


def write_records(product: RecordProduct, out_dir: Path, *, record_column: str) -> dict[str, Path]:
    """Write ``<id>.csv``: the record (as ``record_column``), then what each row carries. A list
    is in rank order; an alert held or setting its baseline has a header and no rows."""
    path = Path(out_dir) / f"{product.product_id}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = product.rows.rename(columns={RECORD: record_column})
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    return {"csv": path}


def write_decisions(
    product: RecordProduct, report_dir: Path, *, releases: Releases, release_id: str
) -> Path:
    """Write ``<id>.disclosure.csv`` (what protection did, counted in rows) for the approver,
    and count it in the releasing party's audit log."""
    rows = [{"decision": k, "records": v} for k, v in product.decisions.items()]
    if product.held:
        rows.append({"decision": f"held: {product.held}", "records": 0})
    path = Path(report_dir) / f"{product.product_id}.disclosure.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    if releases.audit is not None:
        releases.audit(release_id, product.product_id, dict(product.decisions))
    return path
