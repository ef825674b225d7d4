"""The DPO report as files: one self-contained HTML page and one CSV, from a :class:`DpoReport`.

The page is built like the products' pages (:mod:`oda_fed.products.pages`): one file, inline CSS,
the chart embedded as a ``data:`` URI, every value escaped, and a Content-Security-Policy that
forbids scripts and remote loads. Everything on it comes from logs that the parties wrote
themselves, and a hostile party writes its own log, so nothing from a log is trusted as markup.
The CSV is for a spreadsheet: a text cell that a spreadsheet would run as a formula is written
with a leading apostrophe.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from oda_fed.audit.report import (
    COORDINATOR,
    MAX_ACTS,
    NOT_RECORDED,
    CrossingTotal,
    DpoReport,
    Flow,
    LocalAct,
    LocalCount,
    LogSummary,
    Moved,
    ProductRelease,
)
from oda_fed.durable import write_atomic
from oda_fed.errors import AuditError
from oda_fed.products.report import _environment, _number

__all__ = ["CSV_COLUMNS", "render_csv", "render_html", "write_report_files"]

#: The CSV's columns: one row per log, project, round, direction, kind, attribute and product.
CSV_COLUMNS = (
    "log_file",
    "log_party",
    "log_verified",
    "project",
    "round",
    "sender",
    "recipient",
    "kind",
    "attribute",
    "product",
    "messages",
    "resends",
    "discarded",
    "records",
    "bytes",
    "first_time",
    "last_time",
)
#: What a round's line names, by kind: the data that crossed, not the control messages.
_WHAT = (
    ("clk_chunk", "CLKs"),
    ("attribute_chunk", "attribute values"),
    ("local_table", "local table cells"),
    ("entity_chunk", "entity ids"),
    ("instruction:product_release", "product releases"),
)
#: The kinds whose records are data leaving a partner (an instruction result's are a count).
DATA_KINDS = frozenset({"clk_chunk", "attribute_chunk", "local_table"})
#: Problems shown per failed log; ``oda-fed audit verify`` lists them all.
_PROBLEMS_SHOWN = 5
# Cells a spreadsheet would read as a formula (CSV injection): =, +, -, @, tab, carriage return.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DPI = 100


def write_report_files(
    report: DpoReport, *, html: Path | None = None, csv_path: Path | None = None
) -> list[Path]:
    """Write the report's HTML page and/or CSV; both are rendered before either is written, and
    each is written whole or not at all.

    Raises
    ------
    AuditError
        If an output path is one of the audit logs read, or cannot be written.
    """
    logs = {s.log.path.resolve() for s in report.logs}
    outputs = [(p, render) for p, render in ((html, render_html), (csv_path, render_csv)) if p]
    for path, _ in outputs:
        if Path(path).resolve() in logs:
            raise AuditError(f"{path} is one of the audit logs read; write the report elsewhere")
    texts = [(Path(path), render(report)) for path, render in outputs]
    written = []
    for path, text in texts:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(write_atomic(path, lambda tmp, t=text: tmp.write_text(t, "utf-8")))
        except OSError as exc:
            raise AuditError(
                f"cannot write {path}: {exc.strerror or exc}; choose a file in a folder you "
                "can write to"
            ) from None
    return written


# --- CSV --------------------------------------------------------------------------------------


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render_csv(report: DpoReport) -> str:
    """The report's CSV: every log's totals as :data:`CSV_COLUMNS`, one row each, in log order.

    Examples
    --------
    >>> render_csv(dpo_report(Path("audit"))).splitlines()[0]  # doctest: +SKIP
    'log_file,log_party,log_verified,project,round,sender,recipient,kind,...'
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for summary in report.logs:
        log = summary.log
        for c in summary.crossings:
            row = (_relative(report, log.path), log.party, "yes" if log.ok else "FAILED", c.project,
                   c.round, c.sender, c.recipient, c.kind, c.attribute, c.product, c.messages,
                   c.resends, c.discarded, c.records, c.bytes, c.first, c.last)  # fmt: skip
            writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _relative(report: DpoReport, path: Path) -> str:
    try:
        return str(path.relative_to(report.directory))
    except ValueError:
        return path.name


# --- HTML -------------------------------------------------------------------------------------


def render_html(report: DpoReport, *, generated_at: str | None = None) -> str:
    """The report as one self-contained HTML page."""
    loaded = report.project
    title = f"Audit report: {loaded.project.title}" if loaded is not None else "Audit report"
    context = {
        "title": title,
        "generated_at": generated_at
        or _when(dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
        "project": _project(report),
        "span": None if report.span is None else [_when(t) for t in report.span],
        "warnings": report.warnings,
        "failed": [_relative(report, s.log.path) for s in report.failed],
        "logs": [_log(report, s) for s in report.logs],
        "chart": _chart(report),
        "attributes": [_moved(m) for m in report.attributes],
        "show_attribute_product": any(
            f.shown.product for f in report.flows if f.shown.kind == "attribute_chunk"
        ),  # fmt: skip
        "products": [_release(report, r) for r in report.products],
        "local_tables": [_moved(m) for m in report.local_tables],
        "clk_uploads": [_moved(m) for m in report.clk_uploads],
        "entity_ids": [_moved(m) for m in report.entity_ids],
        "refusals": [_count(c) for c in report.refusals],
        "other_local": [_count(c) for c in report.other_local],
        "retention": [_act(a) for a in report.retention],
        "operator": [_act(a) for a in report.operator],
        "max_acts": MAX_ACTS,
        "rounds": [_round(r.round, r.first, r.last, r.flows) for r in report.rounds],
    }
    return _environment().get_template("dpo.html").render(**context)


def _when(time: str) -> str:
    # The log's "2026-01-02T03:04:05.000006Z", to the second, for reading (headings say UTC).
    return time[:19].replace("T", " ") if len(time) >= 19 else time


def _project(report: DpoReport) -> dict[str, object]:
    loaded = report.project
    seen = [(fp, _number(n)) for fp, n in report.fingerprints.items()]
    if loaded is None:
        return {"given": False, "fingerprints": seen}
    p = loaded.project
    return {
        "given": True,
        "name": p.name,
        "title": p.title,
        "purpose": p.purpose,
        "legal_gateway": p.legal_gateway,
        "fingerprint": loaded.fingerprint,
        "partners": [(partner.id, partner.name) for partner in p.partners],
        "fingerprints": seen,
        "others": [fp for fp in report.fingerprints if fp != loaded.fingerprint],
    }


def _log(report: DpoReport, summary: LogSummary) -> dict[str, object]:
    log = summary.log
    return {
        "file": _relative(report, log.path),
        "party": log.party or "unknown",
        "entries": _number(log.entries),
        "ok": log.ok,
        "problems": log.problems[:_PROBLEMS_SHOWN],
        "more": max(len(log.problems) - _PROBLEMS_SHOWN, 0),
    }


def _rounds_text(rounds: Sequence[str]) -> str:
    # One round by its id; more by their number (each round's own table names them all).
    return rounds[0] if len(rounds) == 1 else f"{len(rounds)} rounds"


def _counts(c: Moved | CrossingTotal) -> dict[str, str]:
    return {
        "messages": _number(c.messages),
        "again": f"{_number(c.resends)} / {_number(c.discarded)}",
        "records": _number(c.records),
        "bytes": _number(c.bytes),
    }


def _moved(m: Moved) -> dict[str, object]:
    return {
        "sender": m.sender,
        "recipient": m.recipient,
        "subject": m.subject or NOT_RECORDED,
        **_counts(m),
        "rounds": _rounds_text(m.rounds),
        "first": _when(m.first),
        "last": _when(m.last),
        "claimed": m.claimed,
        "disputed": m.disputed,
    }


def _release(report: DpoReport, release: ProductRelease) -> dict[str, object]:
    title = ""
    if report.project is not None and release.product != NOT_RECORDED:
        declared = {p.id: p.title for p in report.project.project.products}
        title = declared.get(release.product, "")
    return {
        "product": release.product,
        "title": title,
        "recorded": release.product != NOT_RECORDED,
        "declared": None if release.declared is None else ", ".join(release.declared) or "nobody",
        "known": release.declared is None
        or release.product == NOT_RECORDED
        or bool(release.declared),
        "received": [
            {**_moved(m), "flagged": m.recipient in release.undeclared} for m in release.received
        ],
    }


def _count(c: LocalCount) -> dict[str, object]:
    return {
        "party": c.party,
        "kind": c.kind,
        "count": _number(c.count),
        "first": _when(c.first),
        "last": _when(c.last),
        "reasons": [(reason, _number(n)) for reason, n in c.reasons],
        "claimed": c.claimed,
        "disputed": False,
    }


def _act(a: LocalAct) -> dict[str, object]:
    return {
        "party": a.party,
        "sender": a.sender,
        "kind": a.kind,
        "round": a.round or "—",
        "time": _when(a.time),
        "detail": a.detail,
        "claimed": a.claimed,
        "disputed": False,
    }


def _round(round_id: str | None, first: str, last: str, flows: Sequence[Flow]) -> dict[str, object]:
    shown = [f.shown for f in flows]
    crossed = []
    for kind, label in _WHAT:
        of_kind = [c for c in shown if c.kind == kind]
        if of_kind:
            parties = {c.sender if c.sender != COORDINATOR else c.recipient for c in of_kind}
            amount = (
                sum(c.messages for c in of_kind)
                if kind == "instruction:product_release"
                else sum(c.records for c in of_kind)
            )
            crossed.append(f"{label} {_number(amount)} ({', '.join(sorted(parties))})")
    return {
        "id": round_id,
        "first": _when(first),
        "last": _when(last),
        "groups": len(flows),
        "crossed": crossed,
        "flows": [
            {
                "sender": c.sender,
                "recipient": c.recipient,
                "kind": c.kind,
                "attribute": c.attribute or "",
                "product": c.product
                or (NOT_RECORDED if c.kind == "instruction:product_release" else ""),  # fmt: skip
                **_counts(c),
                "claimed": f.claimed,
                "disputed": f.disputed,
            }
            for f, c in zip(flows, shown, strict=True)
        ],
    }


# --- the chart --------------------------------------------------------------------------------


def _records_out(flows: Iterable[Flow]) -> Iterator[tuple[str, str, int]]:
    """(round, partner, records) of each crossing that carried a partner's data out."""
    for flow in flows:
        c = flow.shown
        if c.round is not None and c.kind in DATA_KINDS and c.records:
            yield c.round, c.sender, c.records


def _chart(report: DpoReport) -> str | None:
    """Records that left each partner in each round, as grouped bars: an SVG ``data:`` URI, or
    None when no records left any partner."""
    sums: dict[tuple[str, str], int] = {}
    for round_id, partner, records in _records_out(report.flows):
        sums[(round_id, partner)] = sums.get((round_id, partner), 0) + records
    if not sums:
        return None
    rounds = [r.round for r in report.rounds if r.round is not None and
              any(k[0] == r.round for k in sums)]  # fmt: skip
    partners = sorted({p for _, p in sums})
    width = min(max(6.0, 2.5 + 0.35 * len(rounds) * len(partners)), 24.0)
    # Text drawn as paths: no text element, so nothing from a log reaches the SVG as text.
    with rc_context({"svg.fonttype": "path", "svg.hashsalt": "oda-fed-audit"}):
        fig = Figure(figsize=(width, 4.2), dpi=_DPI, layout="constrained")
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        bar = 0.8 / len(partners)
        colours = colormaps["viridis"]
        for j, partner in enumerate(partners):
            heights = [sums.get((r, partner), 0) for r in rounds]
            offsets = [i - 0.4 + bar * (j + 0.5) for i in range(len(rounds))]
            ax.bar(offsets, heights, width=bar, label=partner,
                   color=colours(0.15 + 0.7 * j / max(len(partners) - 1, 1)))  # fmt: skip
        ax.set_xticks(range(len(rounds)), rounds, rotation=20 if len(rounds) > 2 else 0,
                      ha="right" if len(rounds) > 2 else "center")  # fmt: skip
        ax.set_ylabel("records")
        ax.set_title("Records that left each partner, per round")
        ax.legend(fontsize="small")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
