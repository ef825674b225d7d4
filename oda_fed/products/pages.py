"""The published pages: one per released product, a dashboard per round, an index over rounds.

These are what partners and councillors read, so they hold released, disclosure-controlled products
only, never a linkage figure or a record count. Each page is one self-contained HTML file: charts
are embedded as ``data:`` URIs, every value is escaped, and a Content-Security-Policy forbids
scripts and remote loads. A suppressed cell reads "suppressed", never blank and never 0, and every
product carries the note of :mod:`oda_fed.products.note`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from oda_fed.durable import write_atomic
from oda_fed.products.note import Provenance, about_figures, councillor_note, product_note
from oda_fed.products.report import _environment, _png_data_uri, _reader_table
from oda_fed.products.tables import ProductTable

__all__ = [
    "DASHBOARD",
    "INDEX",
    "UNRELEASED",
    "DashboardEntry",
    "publish_dashboard",
    "released_dashboards",
    "write_dashboard",
    "write_index",
    "write_product_page",
]

log = logging.getLogger(__name__)

#: A round's dashboard, in the round's folder.
DASHBOARD = "dashboard.html"
#: The index over rounds, in the folder that holds the rounds' folders.
INDEX = "index.html"
#: A dashboard written before its round is released; :func:`publish_dashboard` renames it.
UNRELEASED = "dashboard.unreleased.html"
#: The version of the facts beside a dashboard (``dashboard.json``) that the index is made from.
_META_VERSION = 1


@dataclass(frozen=True)
class DashboardEntry:
    """One released round as the index lists it, read from the facts beside its dashboard."""

    folder: str
    release_id: str
    generated_at: str
    date: str
    products: int

    @property
    def href(self) -> str:
        # Always relative, and quoted: a folder name can never become a scheme or leave the root.
        return "./" + quote(self.folder) + "/" + DASHBOARD


def write_product_page(
    product: ProductTable,
    path: Path,
    *,
    chart: Path | None,
    csv_name: str | None,
    provenance: Provenance | None,
) -> Path:
    """Write one product's page: title, chart, table, its rules, and the note for a councillor.

    Parameters
    ----------
    product
        The controlled product.
    path
        Where to write the page (``<product_id>.html`` beside its CSV).
    chart
        The product's PNG, embedded as a ``data:`` URI; None for none.
    csv_name
        The file name of the released CSV, named on the page.
    provenance
        Where the figures came from; without it the note says the page was written without
        those details.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import pandas as pd, tempfile
    >>> from oda_fed.disclosure import DisclosureRules
    >>> from oda_fed.products.tables import partner_count_by_area
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1]), entity_area=pd.Series(["W1"]),
    ...     product_id="p", title="Known to services", rules=DisclosureRules(), n_partners=1)
    >>> page = write_product_page(product, Path(tempfile.mkdtemp()) / "p.html", chart=None,
    ...                           csv_name="p.csv", provenance=None)
    >>> '<td class="suppressed">suppressed</td>' in page.read_text()
    True
    """
    html = (
        _environment()
        .get_template("product.html")
        .render(
            product=_shown(product, chart=chart, csv_name=csv_name),
            note=councillor_note(product, provenance),
            release=None if provenance is None else _release(provenance),
        )
    )
    return _write(Path(path), html)


def write_dashboard(
    out_dir: Path,
    *,
    products: Sequence[tuple[ProductTable, Mapping[str, Path]]],
    provenance: Provenance,
    name: str = DASHBOARD,
) -> Path:
    """Write a round's dashboard into ``out_dir``: every product given, with its chart, table and
    note, after one note on reading the figures and where they came from, and a contents list.

    Give it released products only: whatever is given is published. The facts the index lists
    (release id, date, number of products) are written beside it, as ``dashboard.json`` (or the
    stem of ``name``). Needs nothing of the coordinator, so ``oda-fed analyse`` can call it too.

    Parameters
    ----------
    out_dir
        The round's folder; created if missing.
    products
        ``(product, paths)`` pairs as :func:`~oda_fed.products.export.write_product` returns
        them; ``paths["png"]`` is embedded and ``paths["csv"]`` named.
    provenance
        The project, round and time the figures come from.
    name
        The page's file name; the coordinator writes :data:`UNRELEASED` first and
        :func:`publish_dashboard` renames it once the round is released.

    Returns
    -------
    Path
        The page written.

    Examples
    --------
    >>> from oda_fed.config import load_project
    >>> loaded = load_project(Path("project.toml"))  # doctest: +SKIP
    >>> write_dashboard(Path("out/r1"), products=[], provenance=Provenance(  # doctest: +SKIP
    ...     project=loaded.project, fingerprint=loaded.fingerprint, release_id="r1",
    ...     generated_at="2026-04-01T09:00:00+00:00"))
    PosixPath('out/r1/dashboard.html')
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [p for p, _ in products]
    shown = []
    for product, paths in products:
        item = _shown(
            product,
            chart=paths.get("png"),
            csv_name=Path(paths["csv"]).name if "csv" in paths else None,
        )
        item["note"] = product_note(product, provenance)
        shown.append(item)
    html = (
        _environment()
        .get_template("dashboard.html")
        .render(
            products=shown,
            about=about_figures(tables, provenance) if tables else [],
            release=_release(provenance),
        )
    )
    meta = {
        "version": _META_VERSION,
        "release_id": provenance.release_id,
        "generated_at": provenance.generated_at,
        "date": provenance.date,
        "project": provenance.project.title,
        "fingerprint": provenance.fingerprint,
        "products": [p.product_id for p in tables],
    }
    page = out_dir / name
    _write(_meta_path(page), json.dumps(meta, indent=2) + "\n")
    return _write(page, html)


def publish_dashboard(out_dir: Path) -> Path | None:
    """Rename a round's :data:`UNRELEASED` dashboard (and its facts) to :data:`DASHBOARD`, once the
    round is released; None when there is none to publish."""
    staged = Path(out_dir) / UNRELEASED
    if not staged.exists():
        return None
    page = Path(out_dir) / DASHBOARD
    _meta_path(staged).replace(_meta_path(page))
    staged.replace(page)
    return page


def released_dashboards(root: Path) -> list[DashboardEntry]:
    """Every published dashboard in the folders under ``root``, newest first.

    A folder counts only when it holds both :data:`DASHBOARD` and its facts: an unreleased
    dashboard is never listed. Facts that cannot be read are skipped, with a warning.
    """
    entries = []
    for meta in Path(root).glob(f"*/{Path(DASHBOARD).stem}.json"):
        if not (meta.parent / DASHBOARD).is_file():
            continue
        try:
            facts = json.loads(meta.read_text(encoding="utf-8"))
            entries.append(
                DashboardEntry(
                    folder=meta.parent.name,
                    release_id=str(facts["release_id"]),
                    generated_at=str(facts["generated_at"]),
                    date=str(facts["date"]),
                    products=len(facts["products"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping %s in the index: %s", meta, exc)
    return sorted(entries, key=lambda e: (e.generated_at, e.release_id), reverse=True)


def write_index(root: Path, *, title: str, releases: Collection[str] | None = None) -> Path:
    """Write ``index.html`` in ``root``: each released round's date, number of products and a
    link to its dashboard, newest first. Regenerable at any time from what is on disk.

    Parameters
    ----------
    root
        The folder holding one folder per round.
    title
        The project's title, for the heading.
    releases
        When given, only these rounds are listed (the coordinator passes the rounds its store
        says are released), whatever else is on disk.

    Examples
    --------
    >>> import tempfile
    >>> page = write_index(Path(tempfile.mkdtemp()), title="Demo")
    >>> "Nothing has been released yet" in page.read_text()
    True
    """
    entries = released_dashboards(root)
    if releases is not None:
        allowed = set(releases)
        entries = [e for e in entries if e.release_id in allowed and e.folder in allowed]
    html = _environment().get_template("index.html").render(title=title, entries=entries)
    return _write(Path(root) / INDEX, html)


def _shown(product: ProductTable, *, chart: Path | None, csv_name: str | None) -> dict:
    """The product as a published page shows it; nothing of the operator's (no decisions)."""
    headers, rows = _reader_table(product)
    return {
        "id": product.product_id,
        "title": product.title,
        "rules": product.describe_rules(),
        "suppressed_cells": product.suppressed_cells,
        "cells": len(product.table),
        "headers": headers,
        "rows": rows,
        "chart": None if chart is None else _png_data_uri(chart, product.product_id),
        "csv_name": csv_name,
    }


def _release(provenance: Provenance) -> dict[str, str]:
    return {
        "project": provenance.project.title,
        "id": provenance.release_id,
        "date": provenance.date,
        "made": "round" if provenance.federated else "run",
    }


def _meta_path(page: Path) -> Path:
    return page.with_suffix(".json")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a half-written index or dashboard may be what gets published.
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
