"""Disclosure control across releases, for whoever releases: the key its rounding uses, the
release ledger, and the cells held because an earlier release is too close to them.

A federated round's coordinator and ``oda-fed analyse`` use the same :class:`Releases`:

- Rounding is keyed by a secret only the releasing party holds (``disclosure.key`` in its state
  folder), on each cell's definition and true count
  (:func:`oda_fed.disclosure.definition_keys`): the same count of the same cell is always
  published the same way, so repeated releases cannot be averaged, and which way a count went
  cannot be worked out from the rule.
- Every table is checked against the ledger before it is made. A cell whose true count moved by
  less than ``min_cell`` since an earlier release is held (suppressed, with its complements), and
  the caller must have the release approved, whatever ``auto_release`` says.
- A release's cells are written to the ledger when it is released (:meth:`Releases.record`), not
  before: a cancelled round's products were never published, so they are no baseline.
- The same goes for an alert's baseline, the entities that met its rule at the last release
  (:meth:`Releases.alert_baseline`): an alert names the entities that meet it now and did not then.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from oda_fed.config import Project
from oda_fed.disclosure import (
    SUPPRESSED_COLUMN,
    CellDefinition,
    ControlledTable,
    DisclosureReport,
    DisclosureRules,
    KnownTotal,
    ReleaseLedger,
    control_table,
    definition_keys,
)
from oda_fed.durable import write_atomic
from oda_fed.pki import new_secret, read_secret
from oda_fed.products.tables import ProductTable

log = logging.getLogger(__name__)

#: The file, in a state folder, of the secret that keys rounding.
KEY_FILE = "disclosure.key"
#: The folder, in a state folder, of each release's cells until it is released.
PENDING = "pending-releases"

#: Called with (release id, table name, counted decisions) for the releasing party's audit log.
AuditHook = Callable[[str, str, dict[str, int]], None]


def disclosure_key(state_dir: Path) -> bytes:
    """The releasing party's rounding key, made (mode 0600) the first time it is needed.

    Keep it with the rest of the state folder: a new key re-draws every cell's rounding.
    """
    path = Path(state_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        new_secret(path)
    return read_secret(path)


@dataclass(frozen=True)
class Part:
    """One table of a release before control: its true cells, what they count, and the totals
    someone knows over them (positions in ``cells``)."""

    product_id: str
    title: str
    counts: str
    cells: pd.DataFrame
    known: tuple[KnownTotal, ...] = ()
    cohort: Mapping[str, list[str]] | None = None
    part: str = ""
    unknown_area: str | None = None

    @property
    def dims(self) -> list[str]:
        return [c for c in self.cells.columns if c != "count"]

    @property
    def name(self) -> str:
        """The table's name in reports: ``<product>[.<part>]``."""
        return ".".join(filter(None, (self.product_id, self.part)))


#: The column telling stacked tables apart.
TABLE = "table"


def stack(parts: Sequence[Part]) -> tuple[pd.DataFrame, list[int]]:
    """The parts' cells as one table (a :data:`TABLE` column, every part's dimensions, ``""``
    where a part has no such dimension), and where each part starts in it."""
    dims = list(dict.fromkeys(d for p in parts for d in p.dims))
    frames, starts, start = [], [], 0
    for i, p in enumerate(parts):
        frame = p.cells.reset_index(drop=True).copy()
        for d in dims:
            if d not in frame.columns:
                frame[d] = ""
        frame[TABLE] = str(i)
        frames.append(frame[[TABLE, *dims, "count"]].astype({d: object for d in dims}))
        starts.append(start)
        start += len(frame)
    return pd.concat(frames, ignore_index=True), starts


def _product(
    part: Part, controlled: ControlledTable, start: int, end: int, rules: DisclosureRules
) -> ProductTable:
    """One part's rows of a control run over stacked tables, as its own product table."""
    table = controlled.table.iloc[start:end].reset_index(drop=True)
    table = table[[*part.dims, "count", SUPPRESSED_COLUMN]]
    for d in part.dims:
        table[d] = part.cells[d].to_numpy()
    report = DisclosureReport(
        rules=controlled.report.rules,
        keyed=controlled.report.keyed,
        cells=tuple(
            replace(c, coordinates=tuple((d, v) for d, v in c.coordinates if d in part.dims))
            for c in controlled.report.cells[start:end]
        ),
        exposed=controlled.report.exposed,
    )
    return ProductTable(
        product_id=part.product_id,
        title=part.title,
        table=table,
        rules=rules,
        suppressed_cells=int(table[SUPPRESSED_COLUMN].sum()),
        unknown_area=part.unknown_area,
        report=report,
        held=controlled.held[start:end],
        dims=tuple(part.dims),
    )


@dataclass(frozen=True)
class Controlled:
    """A table under disclosure control, and what the ledger held in it (one line a cell)."""

    product: ProductTable
    held: list[str]


@dataclass(frozen=True)
class Releases:
    """One party's disclosure control across its releases of one project's products.

    Attributes
    ----------
    project
        The project whose rules apply (the strictest partner's ``min_cell``).
    key
        The rounding key (:func:`disclosure_key`).
    ledger_path
        The project's release ledger.
    pending_dir
        Where each release's cells wait for :meth:`record`.
    audit
        Called with every table's counted decisions, or None.
    alerts_path
        The alerts' baselines (SQLite), for projects with alerts.
    """

    project: Project
    key: bytes
    ledger_path: Path
    pending_dir: Path
    audit: AuditHook | None = None
    alerts_path: Path | None = None

    @classmethod
    def in_folder(
        cls, state_dir: Path, project: Project, *, name: str, audit: AuditHook | None = None
    ) -> Releases:
        """The releases kept in ``state_dir`` (key, ledger ``ledger-<name>.sqlite``, alerts'
        baselines ``alerts-<name>.sqlite``, pending releases)."""
        return cls(
            project=project,
            key=disclosure_key(state_dir),
            ledger_path=Path(state_dir) / f"ledger-{name}.sqlite",
            pending_dir=Path(state_dir) / PENDING,
            audit=audit,
            alerts_path=Path(state_dir) / f"alerts-{name}.sqlite",
        )

    def control(
        self,
        release_id: str,
        *,
        report_dir: Path,
        product_id: str,
        title: str,
        counts: str,
        cells: pd.DataFrame,
        known: list[KnownTotal],
        unknown_area: str | None = None,
        cohort: Mapping[str, list[str]] | None = None,
        part: str = "",
    ) -> Controlled:
        """Put a product's true ``cells`` through disclosure control, against the ledger.

        ``counts`` says what the cells count, whatever the product is called (two products
        counting the same thing are the same cells to the ledger), e.g.
        ``partners_by_area/council.ward``; ``cohort``, which entities (attribute to the values
        allowed); ``part`` names one of a product's tables (a rate's ``numerator`` or
        ``denominator``).

        The table's disclosure report is written to ``report_dir``
        (``<product>[.<part>].disclosure.csv``) for whoever approves the release, and its
        decisions are counted through :attr:`audit`.
        """
        table = Part(
            product_id=product_id,
            title=title,
            counts=counts,
            cells=cells,
            known=tuple(known),
            cohort=cohort,
            part=part,
            unknown_area=unknown_area,
        )
        return self.control_together(release_id, [table], report_dir=report_dir)[0]

    def control_together(
        self,
        release_id: str,
        parts: Sequence[Part],
        *,
        report_dir: Path,
        links: Sequence[KnownTotal] = (),
        same_cells: Mapping[int, int] | None = None,
    ) -> list[Controlled]:
        """Control several tables of one release as one: ``links`` are totals that span them
        (positions in the tables stacked in order), such as a cell of one product that counts
        the same people as a row of another, so that no suppressed cell of one can be worked
        out from the others. ``same_cells`` maps a cell to an earlier one counting the same
        people (the same table in two products, under two definitions): it is rounded the same
        way, so that two roundings of one count cannot be averaged. Each table is reported and
        kept as :meth:`control` does."""
        rules = DisclosureRules(
            min_cell=self.project.min_cell(),
            rounding_base=self.project.disclosure.rounding_base,
        )
        stacked, starts = stack(parts)
        definitions = [
            CellDefinition.of(p.counts, coordinates=dict(zip(p.dims, row, strict=True)),
                              cohort=p.cohort)
            for p in parts
            for row in p.cells[p.dims].itertuples(index=False, name=None)
        ]  # fmt: skip
        true = stacked["count"].to_numpy()
        keys = definition_keys([d.key for d in definitions], true, secret=self.key)
        for cell, twin in (same_cells or {}).items():
            keys[cell] = keys[twin]
        with ReleaseLedger(self.ledger_path) as ledger:
            holds = ledger.check(definitions, true, min_cell=rules.min_cell)
        known = [
            KnownTotal(cells=tuple(start + c for c in k.cells), signs=k.signs, label=k.label)
            for p, start in zip(parts, starts, strict=True)
            for k in p.known
        ]
        controlled = control_table(
            stacked,
            rules=rules,
            dimensions=[c for c in stacked.columns if c != "count"],
            cell_keys=keys,
            known_totals=[*known, *links],
            holds=holds,
        )
        out = []
        for p, start in zip(parts, starts, strict=True):
            end = start + len(p.cells)
            product = _product(p, controlled, start, end, rules)
            self._keep(release_id, counts=p.counts, cohort=p.cohort, cells=p.cells,
                       product=product)  # fmt: skip
            self._report(release_id, product, report_dir=report_dir, name=p.name)
            held = [
                f"{p.product_id} ({', '.join(f'{k}={v}' for k, v in h.definition.coordinates)}): "
                f"{h.reason}"
                for h in holds
                if start <= h.position < end
            ]
            out.append(Controlled(product=product, held=held))
        return out

    def alert_baseline(self, product_id: str) -> frozenset[str] | None:
        """The entities that met alert ``product_id``'s rule at its last release (less those
        whose alert was held), or None before its first release."""
        if self.alerts_path is None or not self.alerts_path.exists():
            return None
        with _alerts(self.alerts_path) as db:
            if not db.execute(
                "SELECT 1 FROM releases WHERE product_id = ?", (product_id,)
            ).fetchone():
                return None
            rows = db.execute("SELECT entity_id FROM baseline WHERE product_id = ?", (product_id,))
            return frozenset(r[0] for r in rows)

    def keep_alert_baseline(
        self, release_id: str, product_id: str, entities: Iterable[str]
    ) -> None:
        """The baseline alert ``product_id`` will have once ``release_id`` is released."""
        path = self._pending(release_id, ".alerts.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = json.loads(path.read_text()) if path.exists() else {}
        kept[product_id] = sorted(str(e) for e in entities)
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(kept)))

    def record(self, release_id: str) -> None:
        """Write a release's cells to the ledger once it is released: every later release is
        checked against them, and its alerts' baselines. Safe to call again (a release already
        recorded is not recorded twice)."""
        self._record_alerts(release_id)
        path = self._pending(release_id)
        if not path.exists():
            return
        definitions, counts, published, held = [], [], [], []
        for key, kept in json.loads(path.read_text()).items():
            counted = kept.get("counts", key)  # a release kept by an earlier version
            for coordinates, count, shown, was_held in kept["cells"]:
                definitions.append(
                    CellDefinition.of(counted, coordinates=coordinates, cohort=kept["cohort"])
                )
                counts.append(count)
                published.append(shown)
                held.append(was_held)
        with ReleaseLedger(self.ledger_path) as ledger:
            if release_id not in ledger.rounds():
                ledger.record(
                    release_id,
                    definitions=definitions,
                    counts=counts,
                    published=published,
                    held=held,
                )
        path.unlink()
        log.info("%s: %d released cells written to the ledger", release_id, len(definitions))

    def drop(self, release_id: str) -> None:
        """Forget the cells of a release that was never made (a cancelled round)."""
        self._pending(release_id).unlink(missing_ok=True)
        self._pending(release_id, ".alerts.json").unlink(missing_ok=True)

    def _pending(self, release_id: str, suffix: str = ".json") -> Path:
        return self.pending_dir / f"{release_id}{suffix}"

    def _record_alerts(self, release_id: str) -> None:
        path = self._pending(release_id, ".alerts.json")
        if not path.exists():
            return
        assert self.alerts_path is not None  # kept only where there is a baseline file
        with _alerts(self.alerts_path) as db:
            for product_id, entities in json.loads(path.read_text()).items():
                done = db.execute(
                    "SELECT 1 FROM releases WHERE product_id = ? AND release_id = ?",
                    (product_id, release_id),
                ).fetchone()
                if done:
                    continue
                db.execute("DELETE FROM baseline WHERE product_id = ?", (product_id,))
                db.executemany(
                    "INSERT INTO baseline (product_id, entity_id) VALUES (?, ?)",
                    [(product_id, e) for e in entities],
                )
                db.execute(
                    "INSERT OR REPLACE INTO releases (product_id, release_id) VALUES (?, ?)",
                    (product_id, release_id),
                )
        path.unlink()

    def _keep(
        self,
        release_id: str,
        *,
        counts: str,
        cohort: Mapping[str, list[str]] | None,
        cells: pd.DataFrame,
        product: ProductTable,
    ) -> None:
        """Keep the cells' true counts, what will be published and what was held, until the
        release is made."""
        path = self._pending(release_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = json.loads(path.read_text()) if path.exists() else {}
        dims = [c for c in cells.columns if c != "count"]
        held = product.held if product.held is not None else [False] * len(cells)
        # One entry per definition: two products counting the same thing in different cohorts
        # are different cells, and both must reach the ledger.
        key = json.dumps([counts, dict(cohort or {})], sort_keys=True)
        kept[key] = {
            "counts": counts,
            "cohort": dict(cohort or {}),
            "cells": [
                [
                    {d: _plain(row[d]) for d in dims},
                    int(row["count"]),
                    None if pd.isna(shown) else int(shown),
                    bool(was_held),
                ]
                for (_, row), shown, was_held in zip(
                    cells.iterrows(), product.table["count"], held, strict=True
                )
            ],
        }
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(kept, sort_keys=True)))

    def _report(
        self, release_id: str, product: ProductTable, *, report_dir: Path, name: str
    ) -> None:
        """Every decision disclosure control made: in full for the approver, counted for the log."""
        report = product.report
        assert report is not None  # control_table always reports
        frame = report.to_frame()
        path = Path(report_dir) / f"{name}.disclosure.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
        if self.audit is not None:
            tally = {d.name.lower(): n for d, n in report.tally().items()}
            self.audit(release_id, name, {**tally, "exposed": len(report.exposed)})


class _alerts:
    """The alerts' baselines file, open for one transaction."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __enter__(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, isolation_level=None)
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS baseline (product_id TEXT NOT NULL, "
            "entity_id TEXT NOT NULL, PRIMARY KEY (product_id, entity_id))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS releases (product_id TEXT PRIMARY KEY, "
            "release_id TEXT NOT NULL)"
        )
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind, *_: object) -> None:
        self._db.execute("ROLLBACK" if kind else "COMMIT")
        self._db.close()


def _plain(value: object) -> object:
    """A cell coordinate as JSON keeps it (numpy integers become ints)."""
    return value.item() if hasattr(value, "item") else value
