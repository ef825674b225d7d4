"""A single self-contained HTML report of one linkage round and its data products."""

from __future__ import annotations

import base64
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from oda_fed.products.charts import PNG_SIGNATURE
from oda_fed.products.records import RecordProduct
from oda_fed.products.tables import ProductError, ProductTable

__all__ = ["render_report"]

_QUALITY_KEYS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"))


@dataclass(frozen=True)
class _Cell:
    text: str
    suppressed: bool = False


def render_report(
    *,
    out_path: Path,
    project_name: str,
    project_fingerprint: str,
    round_id: str,
    generated_at: str,
    linkage: Mapping[str, object],
    products: Sequence[tuple[ProductTable, Mapping[str, Path]]],
    audit: Mapping[str, object] | None = None,
    records: Sequence[RecordProduct] = (),
) -> Path:
    """Write one HTML file that can be mailed: every chart is embedded, nothing is fetched.

    Every value is HTML-escaped (autoescape on), and a Content-Security-Policy forbids
    scripts and remote loads as a second line of defence. Only the file name of a released
    CSV is shown, never the folder it was written to.

    Parameters
    ----------
    out_path
        Where to write the report; the parent folder is created if missing.
    project_name, project_fingerprint, round_id, generated_at
        Shown in the heading; ``generated_at`` as given (e.g. an ISO 8601 time).
    linkage
        Linkage summary. Keys rendered when present: ``records_per_partner``
        (``dict[str, int]``), ``entities`` (int), ``entities_by_partner_count``
        (``dict[int, int]``), ``threshold``, ``precision``, ``recall``, ``f1`` (floats).
        These figures are shown as given, not disclosure-controlled: control them first if
        the report goes beyond the partners.
    products
        ``(product, paths)`` pairs, ``paths`` as returned by
        :func:`~oda_fed.products.export.write_product`; the ``"png"`` entry, when present, is
        embedded as a ``data:`` URI.
    audit
        Optional audit summary (e.g. ``{"logs verified": True, "entries": {...}}``); values
        may be scalars, sequences or one level of nested mappings.
    records
        Prioritised lists and alerts, summarised (how many records, what protection left
        out); never their rows.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ProductError
        When a product's ``"png"`` file is missing or is not a PNG.

    Examples
    --------
    >>> import tempfile
    >>> out = render_report(
    ...     out_path=Path(tempfile.mkdtemp()) / "report.html", project_name="Demo",
    ...     project_fingerprint="ab12", round_id="r1", generated_at="2025-01-01T00:00:00Z",
    ...     linkage={"entities": 42}, products=[])
    >>> "ab12" in out.read_text()
    True
    """
    context = {
        "project_name": project_name,
        "project_fingerprint": project_fingerprint,
        "round_id": round_id,
        "generated_at": generated_at,
        "linkage": _linkage_context(linkage),
        "products": [_product_context(p, paths) for p, paths in products],
        "audit": None if audit is None else _audit_context(audit),
        "records": [_records_context(r) for r in records],
    }
    html = _environment().get_template("report.html").render(**context)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    return out_path


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("oda_fed.products", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _linkage_context(linkage: Mapping[str, object]) -> dict[str, object]:
    summary: list[tuple[str, str]] = []
    if "entities" in linkage:
        summary.append(("Entities", _number(linkage["entities"])))
    if "threshold" in linkage:
        summary.append(("Match threshold", _decimal(linkage["threshold"])))
    for key, label in _QUALITY_KEYS:
        if linkage.get(key) is not None:
            summary.append((label, _decimal(linkage[key])))

    records = linkage.get("records_per_partner") or {}
    by_count = linkage.get("entities_by_partner_count") or {}
    return {
        "summary": summary,
        "records_per_partner": [(str(k), _number(v)) for k, v in _items(records)],
        "entities_by_partner_count": [
            (str(k), _number(v)) for k, v in sorted(_items(by_count), key=lambda kv: int(kv[0]))
        ],
    }


def _product_context(product: ProductTable, paths: Mapping[str, Path]) -> dict[str, object]:
    """The product for the operator: its reader's table, chart, and how disclosure control
    treated its cells."""
    headers, rows = _reader_table(product)
    csv_path = paths.get("csv")
    return {
        "id": product.product_id,
        "title": product.title,
        "rules": product.describe_rules(),
        "suppressed_cells": product.suppressed_cells,
        "headers": headers,
        "rows": rows,
        "chart": _png_data_uri(paths["png"], product.product_id) if "png" in paths else None,
        "csv_name": None if csv_path is None else Path(csv_path).name,
        "decisions": _decisions(product),
    }


def _reader_table(product: ProductTable) -> tuple[list[str], list[list[_Cell]]]:
    """The product as a reader's table: a row per combination of every dimension but the last,
    a column per value of the last (one ``count`` column for a one-dimension table). Returns the
    headers and the rows, each row's first cell its label."""
    table = product.table
    dims = product.dims
    rows_dims, column_dim = (dims[:-1], dims[-1]) if len(dims) > 1 else (dims, None)
    columns = [None] if column_dim is None else list(dict.fromkeys(table[column_dim].tolist()))
    cells: dict[tuple, _Cell] = {}
    for _, row in table.iterrows():
        key = tuple(row[d] for d in dims)
        cells[key] = _shown(product, row)
    row_keys = list(dict.fromkeys(table[list(rows_dims)].itertuples(index=False, name=None)))
    headers = [" / ".join(d.rpartition(".")[2] for d in rows_dims).capitalize()] + [
        "Share" if c is None and product.is_rate else
        "Count" if c is None else product.label((column_dim,), (c,)).capitalize()
        for c in columns
    ]  # fmt: skip
    rows = [
        [_Cell(" · ".join(str(v) for v in key))]
        + [cells.get(key if c is None else (*key, c), _Cell("")) for c in columns]
        for key in row_keys
    ]
    return headers, rows


def _records_context(product: RecordProduct) -> dict[str, object]:
    counted = {
        k: _number(product.decisions.get(k, 0)) for k in ("generalised", "withheld_k", "withheld_l")
    }
    return {
        "id": product.product_id,
        "title": product.title,
        "kind": product.kind,
        "owner": product.owner,
        "released": _number(len(product.rows)),
        **counted,
        "note": product.held and f"held: {product.held}" or product.note,
    }


def _shown(product: ProductTable, row) -> _Cell:
    """One cell as a reader sees it: the count, the share and its base, or "suppressed"."""
    value = product.value(row)
    if value is None:
        return _Cell("suppressed", True)
    if product.is_rate:
        # iterrows may hand an Int64 denominator back as a float: show it as the count it is.
        return _Cell(f"{value:.1f}% of {_number(int(row['denominator']))}")
    return _Cell(_number(row["count"]))


def _decisions(product: ProductTable) -> list[tuple[str, str]]:
    """How disclosure control treated the table's cells, counted by decision, for the approver;
    with any known totals it could not protect."""
    if product.report is None:
        return []
    rows = [(d.value, _number(n)) for d, n in product.report.tally().items()]
    rows += [("total left exposed (needs a decision)", label) for label in product.report.exposed]
    return rows


def _png_data_uri(path: Path, product_id: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProductError(f"chart for product {product_id!r} cannot be read") from exc
    # Only a real PNG goes into an image/png URI; anything else has no place in the report.
    if not data.startswith(PNG_SIGNATURE):
        raise ProductError(f"chart for product {product_id!r} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _audit_context(audit: Mapping[str, object]) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for key, value in audit.items():
        if isinstance(value, Mapping):
            items = [(str(k), _scalar(v)) for k, v in value.items()]
            entries.append({"key": str(key), "value": None, "children": items})
        else:
            entries.append({"key": str(key), "value": _scalar(value), "children": None})
    return entries


def _items(value: object) -> list[tuple[object, object]]:
    return list(value.items()) if isinstance(value, Mapping) else []


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return _number(value)
    if isinstance(value, numbers.Real):
        return _decimal(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_scalar(v) for v in value)
    return str(value)


def _number(value: object) -> str:
    # numbers.Integral also covers numpy integers, which the caller's tallies often are.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


def _decimal(value: object) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"{float(value):.3f}"
    return str(value)
