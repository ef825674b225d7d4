"""What crossed each boundary, as the logs say: the DPO's report, before it is drawn.

:func:`summarise_dir` totals each log on its own, one row per round, direction, kind and the
attribute or product concerned. :func:`dpo_report` puts the logs together: each crossing as its
sender and its recipient logged it, the attributes and products that left and who received
them, the rounds and the time span, refusals, deletions and operator acts, and, given the signed
project, who it allowed to receive each product. :mod:`oda_fed.audit.dpo` writes it as HTML and
CSV.

A figure is only as good as the log under it, so every summary carries its log's verification.
A log that fails is still totalled over the lines that parse, for the DPO to see what it claims,
but its figures are marked as claims. An entry marked ``resend`` (the same message again) or
``discarded`` (received and dropped unread) is counted apart: its records and bytes are not
added again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from oda_fed.audit.entry import AuditEntry, is_local_kind
from oda_fed.audit.verify import LogReport, _iter_entries, verify_dir

if TYPE_CHECKING:
    from oda_fed.config import LoadedProject

__all__ = [
    "NOT_RECORDED",
    "CrossingTotal",
    "DpoReport",
    "Flow",
    "LocalAct",
    "LocalCount",
    "LogSummary",
    "Moved",
    "ProductRelease",
    "dpo_report",
    "summarise_dir",
]

#: Shown for a product release logged before releases named their product.
NOT_RECORDED = "(not recorded)"
COORDINATOR = "coordinator"
#: Refusal reasons shown per kind; the CSV has every entry's totals.
_REASONS_SHOWN = 3
#: Distinct reasons counted per kind; any more count as "(other reasons)".
_REASONS_KEPT = 1000
#: Operator acts and deletions listed one by one, at most: a hostile log may hold millions.
MAX_ACTS = 200

_Key = tuple[str, str | None, str, str, str, str | None, str | None]


@dataclass(frozen=True, kw_only=True)
class CrossingTotal:
    """Entries of one log that share a project, round, direction, kind, attribute and product.

    Attributes
    ----------
    project
        The fingerprint the entries were logged under.
    round
        The round id, or None outside any round (a node's hello).
    sender, recipient, kind
        As the entries name them.
    attribute, product
        ``detail.attribute`` and ``detail.product``, or None where the entries have none.
    messages
        Entries for messages as first delivered (not resends, not discarded).
    resends, discarded
        Entries marked ``detail.resend`` and ``detail.discarded``, counted apart.
    records, bytes
        Summed over the first deliveries only.
    first, last
        Times of the first and last entry, resends included.
    """

    project: str
    round: str | None
    sender: str
    recipient: str
    kind: str
    attribute: str | None = None
    product: str | None = None
    messages: int = 0
    resends: int = 0
    discarded: int = 0
    records: int = 0
    bytes: int = 0
    first: str = ""
    last: str = ""

    @property
    def key(self) -> _Key:
        """What entries share to be totalled together."""
        return (self.project, self.round, self.sender, self.recipient, self.kind,
                self.attribute, self.product)  # fmt: skip


def _add(a: CrossingTotal, b: CrossingTotal) -> CrossingTotal:
    return CrossingTotal(
        project=a.project,
        round=a.round,
        sender=a.sender,
        recipient=a.recipient,
        kind=a.kind,
        attribute=a.attribute,
        product=a.product,
        messages=a.messages + b.messages,
        resends=a.resends + b.resends,
        discarded=a.discarded + b.discarded,
        records=a.records + b.records,
        bytes=a.bytes + b.bytes,
        first=min(a.first, b.first),
        last=max(a.last, b.last),
    )


def _text(value: object) -> str | None:
    return None if value is None or isinstance(value, bool) else str(value)


def _one(entry: AuditEntry) -> CrossingTotal:
    detail = entry.detail
    resend, discarded = detail.get("resend") is True, detail.get("discarded") is True
    counted = not (resend or discarded)
    return CrossingTotal(
        project=entry.project,
        round=entry.round,
        sender=entry.sender,
        recipient=entry.recipient,
        kind=entry.kind,
        attribute=_text(detail.get("attribute")),
        product=_text(detail.get("product")),
        messages=int(counted),
        resends=int(resend and not discarded),
        discarded=int(discarded),
        records=entry.records if counted else 0,
        bytes=entry.bytes if counted else 0,
        first=entry.time,
        last=entry.time,
    )


def _sort_key(c: CrossingTotal) -> tuple:
    return (c.first, *(value or "" for value in c.key))


def _add_entry(sums: dict[_Key, CrossingTotal], entry: AuditEntry) -> None:
    one = _one(entry)
    known = sums.get(one.key)
    sums[one.key] = one if known is None else _add(known, one)


def _sorted(sums: Mapping[_Key, CrossingTotal]) -> list[CrossingTotal]:
    return sorted(sums.values(), key=_sort_key)


@dataclass(frozen=True)
class LogSummary:
    """One log's verification and its totals, in order of their first entry."""

    log: LogReport
    crossings: list[CrossingTotal]

    def by_direction(self) -> list[CrossingTotal]:
        """The totals per sender, recipient and kind only (rounds, attributes, products and
        projects added together), sorted by sender, recipient and kind."""
        sums: dict[tuple[str, str, str], CrossingTotal] = {}
        for c in self.crossings:
            key = (c.sender, c.recipient, c.kind)
            plain = replace(c, project="", round=None, attribute=None, product=None)
            sums[key] = plain if key not in sums else _add(sums[key], plain)
        return [sums[k] for k in sorted(sums)]


def summarise_dir(directory: Path) -> list[LogSummary]:
    """Verify and total every audit log below ``directory``, sorted by path.

    Raises
    ------
    AuditError
        If ``directory`` is not a folder.

    Examples
    --------
    >>> [(s.log.ok, len(s.crossings)) for s in summarise_dir(Path("audit"))]  # doctest: +SKIP
    [(True, 41), (True, 38)]
    """
    return [_Gathered().read(report) for report in verify_dir(directory)]


class _Gathered:
    """What one pass over the logs gathers, entry by entry, without keeping the entries: a log
    kept for years can be larger than memory."""

    def __init__(self) -> None:
        self.hashes: dict[str, set[str]] = {}
        self.by_party: dict[str, dict[_Key, CrossingTotal]] = {}
        self.failed: set[str] = set()
        self.fingerprints: Counter[str] = Counter()
        self.rounds: dict[str | None, tuple[str, str]] = {}
        self.local: dict[tuple[str, str], _LocalSums] = {}
        self.acts: dict[str, list[AuditEntry]] = {"retention:": [], "operator:": []}

    def read(self, report: LogReport) -> LogSummary:
        """Total one log into its own summary, and into what the logs say together."""
        sums: dict[_Key, CrossingTotal] = {}
        for _, entry in _iter_entries(report.path):
            _add_entry(sums, entry)
            if not report.ok:
                self.failed.add(entry.party)
            seen = self.hashes.setdefault(entry.party, set())
            if entry.hash not in seen:  # the same entry in two files (a copy) counts once
                seen.add(entry.hash)
                self._add(entry)
        if not report.ok and report.party:
            self.failed.add(report.party)
        return LogSummary(log=report, crossings=_sorted(sums))

    def _add(self, entry: AuditEntry) -> None:
        _add_entry(self.by_party.setdefault(entry.party, {}), entry)
        self.fingerprints[entry.project] += 1
        first, last = self.rounds.get(entry.round, (entry.time, entry.time))
        self.rounds[entry.round] = (min(first, entry.time), max(last, entry.time))
        if not is_local_kind(entry.kind):
            return
        key = (entry.party, entry.kind)
        self.local.setdefault(key, _LocalSums(entry.time)).add(entry)
        for prefix, acts in self.acts.items():
            if entry.kind.startswith(prefix) and len(acts) < MAX_ACTS:
                acts.append(entry)


class _LocalSums:
    """Entries of one local kind in one party's log: how many, when, and why."""

    def __init__(self, time: str) -> None:
        self.count = 0
        self.first = self.last = time
        self.reasons: Counter[str] = Counter()

    def add(self, entry: AuditEntry) -> None:
        self.count += 1
        self.first, self.last = min(self.first, entry.time), max(self.last, entry.time)
        reason = _text(entry.detail.get("reason"))
        if reason is not None:
            # Bounded: a hostile log may give every refusal a reason of its own.
            known = reason in self.reasons or len(self.reasons) < _REASONS_KEPT
            self.reasons[reason if known else "(other reasons)"] += 1


# --- the logs together ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One crossing group (a :class:`CrossingTotal` key) as each party's log has it.

    Attributes
    ----------
    sides
        Party to its logs' total; the sender's and the recipient's, where their logs have it.
    failed
        Parties whose log failed verification.
    present
        Parties whose logs were handed in.
    """

    sides: Mapping[str, CrossingTotal]
    failed: frozenset[str] = frozenset()
    present: frozenset[str] = frozenset()

    @property
    def shown(self) -> CrossingTotal:
        """The figures a reader is shown: the sender's log's, else the recipient's."""
        any_side = next(iter(self.sides.values()))
        return self.sides.get(any_side.sender) or self.sides[any_side.recipient]

    @property
    def claimed(self) -> bool:
        """Whether the figures shown come from a log that failed verification."""
        shown = self.shown
        holder = shown.sender if shown.sender in self.sides else shown.recipient
        return holder in self.failed

    @property
    def disputed(self) -> bool:
        """Whether the sender's and the recipient's logs, both handed in, disagree: one lacks
        the crossing, or they give different counts for it."""
        shown = self.shown
        if not {shown.sender, shown.recipient} <= self.present:
            return False
        counts = {(c.messages, c.records, c.bytes) for c in self.sides.values()}
        return len(self.sides) < 2 or len(counts) > 1


@dataclass(frozen=True, kw_only=True)
class Moved:
    """What crossings of one kind moved from one party to another, over one or more rounds.

    ``subject`` is the attribute or product concerned (None where there is none); the counts
    are as :class:`CrossingTotal`'s. ``claimed`` marks figures that come, at least in part, from
    a log that failed verification; ``disputed``, figures the two sides' logs disagree on.
    """

    sender: str
    recipient: str
    kind: str
    subject: str | None
    messages: int
    resends: int
    discarded: int
    records: int
    bytes: int
    rounds: tuple[str, ...]
    first: str
    last: str
    claimed: bool
    disputed: bool


@dataclass(frozen=True)
class ProductRelease:
    """One product as released: who received it, and whom the project names as recipients.

    ``declared`` is None without a project; ``undeclared`` lists the recipients it does not name
    (every recipient, for a product the project does not declare).
    """

    product: str
    received: list[Moved]
    declared: tuple[str, ...] | None
    undeclared: tuple[str, ...]


@dataclass(frozen=True)
class LocalCount:
    """Entries of one local kind (a refusal, say) in one party's log, counted.

    ``reasons`` holds the most frequent ``detail.reason`` values with their counts.
    """

    party: str
    kind: str
    count: int
    first: str
    last: str
    reasons: tuple[tuple[str, int], ...]
    claimed: bool


@dataclass(frozen=True)
class LocalAct:
    """One local entry listed as it is: a retention deletion or an operator's act."""

    party: str
    sender: str
    kind: str
    round: str | None
    time: str
    detail: tuple[tuple[str, str], ...]
    claimed: bool


@dataclass(frozen=True)
class RoundSummary:
    """One round: its first and last entry in any log, and the crossings in it.

    ``round`` is None for entries outside any round (a node's hello).
    """

    round: str | None
    first: str
    last: str
    flows: list[Flow]


@dataclass(frozen=True)
class DpoReport:
    """Everything the DPO report shows, from the logs of a folder and, optionally, the project.

    Attributes
    ----------
    directory
        The folder the logs were read from.
    logs
        Each log's verification and totals, by path.
    project
        The project given, or None.
    fingerprints
        Each project fingerprint the entries carry, with how many entries carry it.
    flows
        Every crossing group, with each side's figures.
    rounds
        The rounds, in order of their first entry.
    span
        The first and last entry time over every log, or None for logs without entries.
    attributes, local_tables, clk_uploads, entity_ids
        What crossed, grouped for reading: attributes by partner and attribute; local tables by
        partner and product; CLKs and entity ids by partner and round.
    products
        Each product released, with its recipients.
    refusals, other_local
        Local entries counted per party and kind: refusals, and the rest (lifecycle, audit).
    retention, operator
        Retention deletions and operator acts, one by one, by time: at most :data:`MAX_ACTS`
        of each, the first read (the CSV counts them all).
    warnings
        What the DPO must look at: failed logs, other fingerprints, undeclared recipients,
        sides that disagree, partners without a log.
    """

    directory: Path
    logs: list[LogSummary]
    project: LoadedProject | None
    fingerprints: dict[str, int]
    flows: list[Flow]
    rounds: list[RoundSummary]
    span: tuple[str, str] | None
    attributes: list[Moved]
    products: list[ProductRelease]
    local_tables: list[Moved]
    clk_uploads: list[Moved]
    entity_ids: list[Moved]
    refusals: list[LocalCount]
    other_local: list[LocalCount]
    retention: list[LocalAct]
    operator: list[LocalAct]
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[LogSummary]:
        """The logs that failed verification."""
        return [s for s in self.logs if not s.log.ok]


def dpo_report(directory: Path, *, project: LoadedProject | None = None) -> DpoReport:
    """Verify every audit log below ``directory`` and put together what they say crossed.

    Parameters
    ----------
    directory
        The folder holding the parties' ``*.jsonl`` logs.
    project
        The signed project (:func:`oda_fed.config.load_project`): names the project, each
        product's declared recipients, and the partners whose logs are expected.

    Raises
    ------
    AuditError
        If ``directory`` is not a folder.

    Examples
    --------
    >>> report = dpo_report(Path("audit"), project=load_project(Path("project.toml")))  # doctest: +SKIP
    >>> [(a.sender, a.subject, a.records) for a in report.attributes]  # doctest: +SKIP
    [('council', 'ward', 400), ('police', 'incidents_12m', 380)]
    """
    gathered = _Gathered()
    logs = [gathered.read(report) for report in verify_dir(directory)]
    failed = frozenset(gathered.failed)
    flows = _flows(gathered.by_party, failed)
    local = sorted(gathered.local.items())
    times = [t for span in gathered.rounds.values() for t in span]
    report = DpoReport(
        directory=Path(directory),
        logs=logs,
        project=project,
        fingerprints=dict(gathered.fingerprints.most_common()),
        flows=flows,
        rounds=_rounds(gathered.rounds, flows),
        span=(min(times), max(times)) if times else None,
        attributes=_moved(flows, "attribute_chunk", lambda c: (c.sender, c.attribute)),
        products=_products(flows, project),
        local_tables=_moved(flows, "local_table", lambda c: (c.sender, c.recipient, c.product)),
        clk_uploads=_moved(flows, "clk_chunk", lambda c: (c.sender, c.recipient, c.round)),
        entity_ids=_moved(flows, "entity_chunk", lambda c: (c.recipient, c.sender, c.round)),
        refusals=_counted(local, failed, ("refused:",), wanted=True),
        other_local=_counted(local, failed, ("refused:", "retention:", "operator:"), wanted=False),
        retention=_acts(gathered.acts["retention:"], failed),
        operator=_acts(gathered.acts["operator:"], failed),
    )
    report.warnings.extend(_warnings(report, set(gathered.by_party)))
    report.warnings.extend(_proof_warnings(directory, project))
    return report


def _proof_warnings(directory: Path, project: LoadedProject | None) -> list[str]:
    """What the signed checkpoints and the project say against the logs, in a line each."""
    from oda_fed.audit.folder import verify_folder

    folder = verify_folder(directory, project=project)
    warnings = []
    if folder.checkpoints:
        warnings.append(
            f"{len(folder.checkpoints)} problem(s) with signed checkpoints: a party's log no "
            "longer matches a checkpoint it signed and another party cosigned (rewritten, cut or "
            "deleted), or a signature does not hold; `oda-fed audit verify` names each"
        )
    if folder.agreement:
        warnings.append(
            f"{len(folder.agreement)} entr(ies) the project does not allow; `oda-fed audit "
            "verify --project` names each"
        )
    return warnings


def _flows(
    by_party: Mapping[str, Mapping[_Key, CrossingTotal]], failed: frozenset[str]
) -> list[Flow]:
    sides: dict[_Key, dict[str, CrossingTotal]] = {}
    for party, totals in by_party.items():
        for total in totals.values():
            if not is_local_kind(total.kind):
                sides.setdefault(total.key, {})[party] = total
    present = frozenset(by_party)
    flows = [Flow(sides=found, failed=failed, present=present) for found in sides.values()]
    return sorted(flows, key=lambda f: _sort_key(f.shown))


def _moved(
    flows: Sequence[Flow], kind: str, group: Callable[[CrossingTotal], Hashable]
) -> list[Moved]:
    """The flows of ``kind`` summed per ``group`` of their shown figures."""
    groups: dict[Hashable, list[Flow]] = {}
    for flow in flows:
        if flow.shown.kind == kind:
            groups.setdefault(group(flow.shown), []).append(flow)
    moved = []
    for members in groups.values():
        shown = [f.shown for f in members]
        total = shown[0]
        for other in shown[1:]:
            total = _add(total, other)
        subject = {"attribute_chunk": total.attribute}.get(kind, total.product)
        moved.append(
            Moved(
                sender=total.sender,
                recipient=total.recipient,
                kind=kind,
                subject=subject,
                messages=total.messages,
                resends=total.resends,
                discarded=total.discarded,
                records=total.records,
                bytes=total.bytes,
                rounds=tuple(dict.fromkeys(c.round for c in shown if c.round is not None)),
                first=total.first,
                last=total.last,
                claimed=any(f.claimed for f in members),
                disputed=any(f.disputed for f in members),
            )
        )
    return sorted(moved, key=lambda m: (m.sender, m.recipient, m.subject or "", m.first))


def _products(flows: Sequence[Flow], project: LoadedProject | None) -> list[ProductRelease]:
    received = _moved(
        flows, "instruction:product_release", lambda c: (c.sender, c.recipient, c.product)
    )
    declared: dict[str, tuple[str, ...]] = {}
    if project is not None:
        declared = {p.id: tuple(p.recipients) for p in project.project.products}
    named = {r for recipients in declared.values() for r in recipients}
    by_product: dict[str | None, list[Moved]] = {}
    for moved in received:
        by_product.setdefault(moved.subject, []).append(moved)
    releases = []
    for product, recipients in by_product.items():
        parties = tuple(dict.fromkeys(m.recipient for m in recipients))
        if project is None:
            allowed: tuple[str, ...] | None = None
            undeclared: tuple[str, ...] = ()
        elif product is None:
            # Which product is not recorded: only a recipient no product names can be flagged.
            allowed = tuple(sorted(named))
            undeclared = tuple(r for r in parties if r not in named)
        else:
            allowed = declared.get(product, ())
            undeclared = tuple(r for r in parties if r not in allowed)
        releases.append(
            ProductRelease(
                product=NOT_RECORDED if product is None else product,
                received=recipients,
                declared=allowed,
                undeclared=undeclared,
            )
        )
    return sorted(releases, key=lambda r: (r.product == NOT_RECORDED, r.product))


def _rounds(
    times: Mapping[str | None, tuple[str, str]], flows: Sequence[Flow]
) -> list[RoundSummary]:
    rounds = [
        RoundSummary(
            round=round_id,
            first=first,
            last=last,
            flows=[f for f in flows if f.shown.round == round_id],
        )
        for round_id, (first, last) in times.items()
    ]
    return sorted(rounds, key=lambda r: (r.round is None, r.first))


def _counted(
    local: Sequence[tuple[tuple[str, str], _LocalSums]],
    failed: frozenset[str],
    prefixes: tuple[str, ...],
    *,
    wanted: bool,
) -> list[LocalCount]:
    """The local kinds that start with one of ``prefixes`` (or, not ``wanted``, that do not)."""
    return [
        LocalCount(
            party=party,
            kind=kind,
            count=sums.count,
            first=sums.first,
            last=sums.last,
            reasons=tuple(sums.reasons.most_common(_REASONS_SHOWN)),
            claimed=party in failed,
        )
        for (party, kind), sums in local
        if kind.startswith(prefixes) is wanted
    ]


def _acts(entries: Sequence[AuditEntry], failed: frozenset[str]) -> list[LocalAct]:
    return [
        LocalAct(
            party=e.party,
            sender=e.sender,
            kind=e.kind,
            round=e.round,
            time=e.time,
            detail=tuple((k, str(v)) for k, v in sorted(e.detail.items())),
            claimed=e.party in failed,
        )
        for e in sorted(entries, key=lambda e: e.time)
    ]


def _warnings(report: DpoReport, parties: set[str]) -> list[str]:
    warnings = [
        f"{s.log.path.name} (party {s.log.party or 'unknown'}) FAILED verification: its figures "
        "are what it claims, not what happened; `oda-fed audit verify` says where"
        for s in report.failed
    ]
    loaded = report.project
    if loaded is not None:
        others = {fp: n for fp, n in report.fingerprints.items() if fp != loaded.fingerprint}
        for fingerprint, n in others.items():
            warnings.append(
                f"{n} entries are under project {fingerprint}, not the given project "
                f"{loaded.project.name} ({loaded.fingerprint}): they were made under another "
                "agreement, or the logs are another project's"
            )
        missing = [p for p in [*loaded.project.partner_ids, COORDINATOR] if p not in parties]
        if missing and parties:
            warnings.append(
                f"no log from {', '.join(missing)}: what crossed to or from "
                f"{'it' if len(missing) == 1 else 'them'} is only as the other side logged it"
            )
    elif len(report.fingerprints) > 1:
        warnings.append(
            f"the entries are under {len(report.fingerprints)} project fingerprints; pass "
            "--project to say which agreement the report is about"
        )
    for release in report.products:
        for recipient in release.undeclared:
            if release.product == NOT_RECORDED:
                warnings.append(
                    f"a product was released to {recipient}, whom no product of the project "
                    "names as a recipient"
                )
            else:
                warnings.append(
                    f"product {release.product} was released to {recipient}, whom the project "
                    "does not name as its recipient"
                )
    disputed = sum(f.disputed for f in report.flows)
    if disputed:
        warnings.append(
            f"{disputed} crossing group(s) are missing from one side's log or logged there with "
            "other counts (marked 'sides disagree'); `oda-fed audit verify` names each entry"
        )
    return warnings
