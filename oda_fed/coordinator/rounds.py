"""The round state machine: what happens once uploads are in, derived from the store each time.

States: ``open`` (waiting for every partner's CLKs) → ``matching`` → ``waiting_attributes`` (the
partners named by products share the allowed attribute) → ``releasing`` (entity ids and products
are being delivered) → ``closed``. ``failed`` ends a round that cannot go on.

:meth:`RoundEngine.advance` looks at the stored state and does the next step, so it is safe to call
again at any time, and a restarted coordinator resumes a round by calling it.

Matching links each round from scratch and gives every entity a fresh random id, unless the project
sets ``[linkage] stable_entity_ids``: then each round updates the project's linked index
(:mod:`oda_fed.index`), keyed by the record keys the nodes send, so a record seen in an earlier
round keeps its entity id. Matching again after a crash is safe either way: the index sees the same
extracts as unchanged and gives the same ids.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.audit import read_entries, verify_log
from oda_fed.config import LoadedProject
from oda_fed.coordinator.store import CLKS, Store, attribute_upload
from oda_fed.disclosure import DisclosureRules
from oda_fed.index import Extract
from oda_fed.linkage import IndexTarget, run_linkage, settings_for
from oda_fed.matching.link import entities_by_partner_count
from oda_fed.products import partner_count_by_area, render_report, write_product

log = logging.getLogger(__name__)

ENCODE = "encode_and_upload"
ENTITIES = "entities"
CLOSED = "closed"
MEDIA_TYPES = {".csv": "text/csv", ".png": "image/png", ".html": "text/html"}

Notify = Callable[[str], None]
Deleted = Callable[[str, int], None]
#: (partner, ref, entity id, score) of one record in a round.
Member = tuple[str, int, str, float | None]


@dataclass(frozen=True)
class _Matched:
    """What matching gave a round: its members, entity ids, counts and the round message."""

    rows: list[Member]
    entity_ids: list[str]
    entities: int
    linked: int
    message: str


def index_path_for(state_dir: Path, fingerprint: str) -> Path:
    """The linked index file of the project with ``fingerprint`` in a coordinator's state folder.

    One file per signed project: a project amended and signed again starts a new index, so no
    entity id outlives the agreement it was issued under.

    Examples
    --------
    >>> index_path_for(Path("state"), "sha256:" + "ab" * 32).name
    'linked-abababababababab.index'
    """
    return state_dir / f"linked-{fingerprint.rpartition(':')[2][:16]}.index"


def new_round_id() -> str:
    return datetime.now(UTC).strftime("r%Y%m%dT%H%M%S-") + secrets.token_hex(2)


class RoundEngine:
    """Advances rounds. One lock serialises advances, so two uploads finishing together match once."""

    def __init__(
        self,
        *,
        store: Store,
        loaded: LoadedProject,
        output_dir: Path,
        notify: Notify,
        on_deleted: Deleted | None = None,
        audit_log: Path | None = None,
        index_path: Path | None = None,
    ) -> None:
        self.store = store
        self.loaded = loaded
        self.project = loaded.project
        self.output_dir = output_dir
        self._notify = notify  # called with a partner id when it has new instructions
        self._on_deleted = on_deleted  # called with (round id, CLKs deleted) for the audit log
        self.audit_log = audit_log
        # The linked index, used only when the project sets stable_entity_ids.
        self.index_path = index_path or index_path_for(store.path.parent, loaded.fingerprint)
        self._lock = threading.Lock()

    def start_round(self) -> str:
        round_id = new_round_id()
        self.store.create_round(
            round_id=round_id, project=self.loaded.fingerprint, partners=self.project.partner_ids
        )
        log.info("round %s opened for %d partners", round_id, len(self.project.partner_ids))
        for partner in self.project.partner_ids:
            self._notify(partner)
        return round_id

    def advance(self, round_id: str) -> None:
        with self._lock:
            try:
                self._advance(round_id)
            except (
                Exception
            ) as exc:  # a bug or broken data must not leave the round hanging silently
                log.exception("round %s failed", round_id)
                self.store.set_state(round_id, "failed", message=f"coordinator error: {exc}")
                for partner in self.project.partner_ids:
                    self._notify(partner)

    def _advance(self, round_id: str) -> None:
        current = self.store.round(round_id)
        if current is None:
            return
        if current.state == "open" and all(
            self.store.upload_complete(round_id=round_id, partner=p, upload=CLKS)
            for p in self.project.partner_ids
        ):
            self.store.set_state(round_id, "matching")
            current = self.store.round(round_id)
        if current.state == "matching":
            self._match(round_id)
            current = self.store.round(round_id)
        if current.state == "waiting_attributes" and self._attributes_in(round_id):
            self._release_products(round_id)
            current = self.store.round(round_id)
        if current.state == "releasing" and self._delivered(round_id):
            self.store.set_state(
                round_id,
                "closed",
                message=self._with_linkage(round_id, "all deliveries acknowledged"),
            )
            self.store.add_deliveries(
                round_id=round_id, items=[(p, CLOSED) for p in self.project.partner_ids]
            )
            log.info("round %s closed", round_id)
            for partner in self.project.partner_ids:
                self._notify(partner)
            self.enforce_retention()

    def enforce_retention(self, *, now: datetime | None = None) -> list[str]:
        """Delete the CLKs of finished rounds older than the project's retention period."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.project.retention.clk_days)
        deleted = []
        for round_id, records in self.store.expired_clks(older_than=cutoff):
            self.store.delete_clks(round_id)
            log.info(
                "round %s: deleted %d CLKs (retention %d days)",
                round_id,
                records,
                self.project.retention.clk_days,
            )
            if self._on_deleted is not None:
                self._on_deleted(round_id, records)
            deleted.append(round_id)
        return deleted

    # --- matching -------------------------------------------------------------------------------

    def _match(self, round_id: str) -> None:
        linkage = self.project.linkage
        words = linkage.wire_bits // 64
        partners = self.project.partner_ids
        clks = [self.store.load_clks(round_id=round_id, partner=p, words=words) for p in partners]
        log.info("round %s: matching %s records", round_id, "+".join(str(len(c)) for c in clks))
        keyed = [f.name for f in linkage.fields if f.keyed_token]
        tokens = None
        if keyed:
            tokens = [
                {f: self.store.load_tokens(round_id=round_id, partner=p, field=f) for f in keyed}
                for p in partners
            ]
        matched = self._link(round_id, clks=clks, tokens=tokens)
        self.store.store_members(
            round_id=round_id, rows=matched.rows, new_entities=matched.entity_ids
        )
        deliveries = [(p, ENTITIES) for p in partners]
        deliveries += [
            (prod.area.partner, attribute_upload(prod.id, prod.area.attribute))
            for prod in self.project.products
        ]
        self.store.add_deliveries(round_id=round_id, items=deliveries)
        self.store.set_state(
            round_id,
            "waiting_attributes",
            message=matched.message,
            entities=matched.entities,
            linked_entities=matched.linked,
            linkage=matched.message,
        )
        log.info("round %s: %d entities (%d linked)", round_id, matched.entities, matched.linked)
        for partner in partners:
            self._notify(partner)

    def _link(
        self,
        round_id: str,
        *,
        clks: list[np.ndarray],
        tokens: list[dict[str, list[str | None]]] | None,
    ) -> _Matched:
        """Link this round's uploads: afresh, or into the project's linked index when the
        project sets stable_entity_ids (records keyed by their record keys)."""
        linkage = self.project.linkage
        partners = self.project.partner_ids
        if linkage.stable_entity_ids:
            ids = [self.store.load_record_keys(round_id=round_id, partner=p) for p in partners]
            target = IndexTarget(
                path=self.index_path,
                fingerprint=self.loaded.fingerprint,
                words=linkage.wire_bits // 64,
            )
        else:
            ids = [np.arange(len(c)) for c in clks]
            target = None
        extracts = {
            p: Extract(record_ids=k, clks=c, tokens=None if tokens is None else tokens[i])
            for i, (p, k, c) in enumerate(zip(partners, ids, clks, strict=True))
        }
        result = run_linkage(extracts, settings=settings_for(linkage), index=target)
        result.write_quality_report(
            self.output_dir / round_id, title=f"Linkage quality, round {round_id}"
        )
        rows: list[Member] = []
        for partner, record_ids in zip(partners, ids, strict=True):
            entities, scores = result.assignments(partner, record_ids)
            rows += [
                (partner, ref, e, s)
                for ref, (e, s) in enumerate(zip(entities, scores, strict=True))
            ]
        return _Matched(
            rows=rows,
            entity_ids=sorted({e for _, _, e, _ in rows}),
            entities=result.entities,
            linked=result.linked_entities,
            message=result.summary(),
        )

    def _with_linkage(self, round_id: str, message: str) -> str:
        """``message``, followed for a project with stable entity ids by how matching went.

        The round's message keeps saying how matching went (for an index update: that it was
        incremental) until the round closes, and the nodes are told so in RoundClosed.
        """
        current = self.store.round(round_id)
        if not self.project.linkage.stable_entity_ids or current is None or not current.linkage:
            return message
        return f"{message}; {current.linkage}"

    # --- products -------------------------------------------------------------------------------

    def _attributes_in(self, round_id: str) -> bool:
        return all(
            self.store.upload_complete(
                round_id=round_id,
                partner=prod.area.partner,
                upload=attribute_upload(prod.id, prod.area.attribute),
            )
            for prod in self.project.products
        )

    def _delivered(self, round_id: str) -> bool:
        return all(
            done for _, what, done, _ in self.store.deliveries(round_id=round_id) if what != CLOSED
        )

    def attribute_values(self, *, round_id: str, partner: str, upload: str) -> list[str]:
        values: list[str] = []
        for blob in self.store.chunk_data(round_id=round_id, partner=partner, upload=upload):
            values.extend(json.loads(blob.decode("utf-8")))
        return values

    def _release_products(self, round_id: str) -> None:
        members = pd.DataFrame(
            self.store.members(round_id=round_id), columns=["partner", "ref", "entity_id", "score"]
        )
        entity_partners = members.groupby("entity_id")["partner"].nunique()
        out_dir = self.output_dir / round_id
        out_dir.mkdir(parents=True, exist_ok=True)
        rules = DisclosureRules(
            min_cell=self.project.disclosure.min_cell,
            rounding_base=self.project.disclosure.rounding_base,
        )
        released = []
        deliveries = []
        for prod in self.project.products:
            values = self.attribute_values(
                round_id=round_id,
                partner=prod.area.partner,
                upload=attribute_upload(prod.id, prod.area.attribute),
            )
            own = members[members.partner == prod.area.partner].sort_values("ref")
            area = pd.Series(values, index=own.entity_id.to_numpy(), dtype=object)
            area = area[area != ""]
            table = partner_count_by_area(
                entity_partners=entity_partners,
                entity_area=area,
                product_id=prod.id,
                title=prod.title,
                rules=rules,
                n_partners=len(self.project.partners),
            )
            paths = write_product(table, out_dir)
            for path in paths.values():
                self.store.add_product_file(
                    round_id=round_id,
                    product_id=prod.id,
                    name=path.name,
                    media_type=MEDIA_TYPES[path.suffix],
                    path=path,
                )
            released.append((table, paths))
            deliveries += [(r, f"product:{prod.id}") for r in prod.recipients if r != "coordinator"]
        report = render_report(
            out_path=out_dir / "report.html",
            project_name=self.project.title,
            project_fingerprint=self.loaded.fingerprint,
            round_id=round_id,
            generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
            linkage=self.linkage_summary(round_id, members, entity_partners),
            products=released,
            audit=self.audit_summary(round_id),
        )
        self.store.add_deliveries(round_id=round_id, items=deliveries)
        self.store.set_state(
            round_id,
            "releasing",
            message=self._with_linkage(round_id, "products released"),
            report=str(report),
        )
        log.info("round %s: %d product(s) written to %s", round_id, len(released), out_dir)
        for partner in self.project.partner_ids:
            self._notify(partner)

    def audit_summary(self, round_id: str) -> dict[str, object] | None:
        """The coordinator's audit log as it stands at release: verified, and this round's crossings."""
        if self.audit_log is None or not self.audit_log.exists():
            return None
        report = verify_log(self.audit_log)
        kinds: dict[str, int] = {}
        if report.ok:
            for entry in read_entries(self.audit_log):
                if entry.round == round_id:
                    kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
        return {
            "coordinator log": self.audit_log.name,
            "chain verified": "yes" if report.ok else "NO: " + "; ".join(report.problems[:3]),
            "entries so far": report.entries,
            "this round's messages by kind": kinds,
        }

    def linkage_summary(
        self, round_id: str, members: pd.DataFrame, entity_partners: pd.Series
    ) -> dict[str, object]:
        return {
            "records_per_partner": {
                p: int((members.partner == p).sum()) for p in self.project.partner_ids
            },
            "entities": int(entity_partners.size),
            "entities_by_partner_count": entities_by_partner_count(entity_partners),
            "threshold": self.project.linkage.threshold,
        }
