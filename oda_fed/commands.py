"""What the CLI commands do beyond parsing: call the library, then show the result with rich."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from oda_fed.config import load_coordinator_config, load_project
from oda_fed.durable import write_atomic
from oda_fed.errors import ConfigError, InputDataError
from oda_fed.pki import read_secret

if TYPE_CHECKING:
    from oda_fed.index import IndexReport
    from oda_fed.linkage import LinkResult

ON_INVALID = ("error", "missing")


def _on_invalid(value: str) -> str:
    if value not in ON_INVALID:
        raise ConfigError(f"--on-invalid must be one of {', '.join(ON_INVALID)}, not '{value}'")
    return value


def _shown(path: Path) -> str:
    """A path relative to the current folder when it is inside it (shorter to read and copy)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _spinner(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# --- synth ----------------------------------------------------------------------------------------


def write_synth(*, population: int, partners: int, out: Path, seed: int, errors: str) -> list[Path]:
    """Write partner CSVs, truth.csv and a project.toml whose partners' layouts match the CSVs."""
    from oda_fed.synth import error_level, generate, write, write_project

    synthetic = generate(
        population=population, partners=partners, seed=seed, errors=error_level(errors)
    )
    return [*write(synthetic, out), write_project(synthetic, out / "project.toml")]


# --- encode / link --------------------------------------------------------------------------------


def encode_cli(
    console: Console,
    *,
    project: Path | None,
    clkhash_schema: Path | None,
    secret_file: Path | None,
    secret: str | None,
    input: Path,
    out: Path,
    partner: str | None,
    fmt: str | None,
    chunk_rows: int,
    on_invalid: str = "error",
) -> None:
    from oda_fed.encoding import load_clkhash_schema
    from oda_fed.node.encode import FORMATS, encode_clkhash_file, encode_file, write_encoded
    from oda_fed.node.sources import layout_for

    if (project is None) == (clkhash_schema is None):
        raise ConfigError("give either --project or --clkhash-schema")
    if (secret_file is None) == (secret is None):
        raise ConfigError("give either --secret-file or --secret")
    if project is not None and secret is not None:
        raise ConfigError("--secret is for clkhash schemas; with --project use --secret-file")
    key = read_secret(secret_file) if secret_file is not None else secret.encode("utf-8")
    fmt = fmt or ("clkhash-json" if clkhash_schema is not None else "npy")
    formats = (*FORMATS, "clkhash-json")
    if fmt not in formats:
        raise ConfigError(f"--format must be one of {', '.join(formats)}, not '{fmt}'")
    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"encoding {input.name}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        bits = None
        if clkhash_schema is not None:
            schema = load_clkhash_schema(clkhash_schema)
            bits = schema.bits
            encoded = encode_clkhash_file(
                input, schema=schema, secret=key, chunk_rows=chunk_rows, progress=report
            )
        else:
            loaded = load_project(project)
            if fmt == "clkhash-json":
                raise ConfigError("clkhash-json output is for --clkhash-schema encodings")
            encoded = encode_file(
                input,
                project=loaded.project,
                secret=key,
                chunk_rows=chunk_rows,
                layout=replace(
                    layout_for(loaded.project, partner or input.stem),
                    on_invalid=_on_invalid(on_invalid),
                ),
                progress=report,
            )
    seconds = time.monotonic() - started
    if fmt == "clkhash-json":
        from oda_fed.encoding import write_clkhash_json

        write_atomic(out, lambda tmp: write_clkhash_json(encoded.clks, tmp, bits=bits))
    else:
        write_encoded(encoded, out, fmt=fmt)
    table = Table(
        "field",
        "missing",
        "invalid (counted as missing)",
        title=f"{len(encoded):,} records encoded in {seconds:.1f}s "
        f"({len(encoded) / max(seconds, 1e-9):,.0f} records/s)",
    )
    for name in encoded.missing:
        table.add_row(name, f"{encoded.missing[name]:,}", f"{encoded.invalid[name]:,}")
    if encoded.missing:
        console.print(table)
    else:
        console.print(table.title)
    console.print(f"wrote {out} ({fmt}, {bits or encoded.clks.shape[1] * 64}-bit CLKs)")


def link_cli(
    console: Console,
    *,
    files: list[Path],
    project: Path,
    secret_file: Path,
    out: Path,
    truth: Path | None,
    all_records: bool,
    on_invalid: str = "error",
    index: Path | None = None,
    rebuild_index: bool = False,
) -> None:
    """`link`: link files afresh, or into a linked index; write links.csv and a quality report."""
    from oda_fed.embedded import link_files

    if rebuild_index and index is None:
        raise ConfigError("--rebuild-index needs --index PATH: the index to rebuild")
    if index is not None and not files:
        raise InputDataError("give the CSV file(s) to add to the linked index")
    loaded = load_project(project)
    secret = read_secret(secret_file)
    started = time.monotonic()
    with _spinner(console) as progress:
        task = progress.add_task("linking", total=None)
        result = link_files(
            files,
            project=loaded,
            secret=secret,
            index=index,
            rebuild=rebuild_index,
            on_invalid=_on_invalid(on_invalid),
            progress=lambda msg: progress.update(task, description=msg),
        )
    links = result.links(include_singletons=all_records)
    write_atomic(out, lambda tmp: links.to_csv(tmp, index=False))
    seconds = time.monotonic() - started
    if result.index_report is not None:
        _print_index_report(console, result.index_report, index=index, seconds=seconds)
    else:
        _print_link_table(
            console,
            result,
            links,
            auto=loaded.project.linkage.threshold == "auto",
            seconds=seconds,
            all_records=all_records,
        )
    true_figures = _true_figures(console, result, truth)
    if result.outcome is None:
        console.print("no quality report: nothing was linked")
        console.print(f"wrote {out} ({len(links)} rows, entity ids from {_shown(index)})")
        return
    report = result.index_report
    if report is not None and report.relink is None:
        console.print(
            "quality report of this update: estimated from its new and changed records only; "
            "--rebuild-index relinks everything"
        )
    html = result.write_quality_report(
        out.with_name(out.stem + "-quality"),
        title=f"Linkage quality: {', '.join(result.outcome_sources)}",
        truth=true_figures,
    )["html"]
    source = f", entity ids from {_shown(index)}" if index is not None else ""
    console.print(f"wrote {out} ({len(links)} rows{source}); quality report: {_shown(html)}")


def _print_link_table(
    console: Console,
    result: LinkResult,
    links: pd.DataFrame,
    *,
    auto: bool,
    seconds: float,
    all_records: bool,
) -> None:
    table = Table(
        "source",
        "records",
        "linked",
        title=f"linked in {seconds:.1f}s (threshold {result.threshold:.2f}"
        f"{', chosen automatically' if auto else ''})",
    )
    linked = links[links.entity_id.duplicated(keep=False)] if all_records else links
    counts = result.members.source.value_counts()
    for source in result.sources:
        table.add_row(
            source, str(int(counts.get(source, 0))), str(int((linked.source == source).sum()))
        )
    console.print(table)
    console.print(
        f"{result.entities} entities, {linked.entity_id.nunique()} of them linked across sources"
    )
    outcome = result.outcome
    estimated = result.estimated()
    console.print(
        f"estimated without truth: precision {estimated[0]:.4f}, recall {estimated[1]:.4f} "
        f"(recommended threshold {outcome.estimate.recommended:.2f}; check the histogram in the "
        "quality report before relying on it)"
        if estimated is not None
        else f"no quality estimate: {outcome.estimate.reason}"
    )


def _true_figures(console: Console, result: LinkResult, truth: Path | None) -> dict | None:
    """Print and return precision, recall and F1 against a truth file, if one was given."""
    if truth is None:
        return None
    q = result.quality(pd.read_csv(truth, dtype=str, keep_default_na=False))
    console.print(
        f"against {truth}: precision {q.precision:.4f}, recall {q.recall:.4f}, F1 {q.f1:.4f}"
    )
    return {"precision": q.precision, "recall": q.recall, "f1": q.f1}


def _print_index_report(
    console: Console, report: IndexReport, *, index: Path, seconds: float
) -> None:
    threshold = "-" if report.threshold is None else f"{report.threshold:.2f}"
    if report.action == "update":
        table = Table(
            "source",
            "unchanged",
            "new",
            "changed",
            "removed",
            "joined an entity",
            "new entities",
            title=f"updated linked index {_shown(index)} in {seconds:.1f}s (threshold {threshold})",
        )
        for u in report.sources:
            table.add_row(
                u.source,
                *(
                    f"{v:,}"
                    for v in (u.unchanged, u.new, u.changed, u.removed, u.joined, u.new_entities)
                ),
            )
        console.print(table)
        scored = sum(u.scored for u in report.sources)
        kept = sum(u.kept for u in report.sources)
        retired = sum(u.retired for u in report.sources)
        kept_note = (
            f" ({kept:,} changed records matched nothing and kept their own entity id)"
            if kept
            else ""
        )
        console.print(
            f"matched only the {scored:,} new or changed records{kept_note}; {retired:,} entity "
            "ids retired. Updates never merge or split entities: --rebuild-index re-clusters"
        )
    else:
        relink = report.relink
        table = Table(
            "source",
            "unchanged",
            "new",
            "changed",
            "removed",
            title=f"{'built' if report.action == 'build' else 'rebuilt'} linked index "
            f"{_shown(index)} in {seconds:.1f}s (threshold {threshold})",
        )
        for u in report.sources:
            table.add_row(u.source, *(f"{v:,}" for v in (u.unchanged, u.new, u.changed, u.removed)))
        console.print(table)
        if report.action == "rebuild" and relink is not None:
            console.print(
                f"relinked every record: {relink.ids_kept:,} earlier entity ids kept, "
                f"{relink.ids_new:,} new, {relink.ids_retired:,} retired; "
                f"{relink.records_moved:,} records changed entity id"
            )
    if report.note:
        console.print(report.note)
    console.print(
        f"{report.entities:,} entities, {report.linked_entities:,} of them linked across sources"
    )


def index_show_cli(console: Console, *, path: Path) -> None:
    """`index show`: per-source counts and the settings of a linked index, read only."""
    from oda_fed.index import describe_index

    summary = describe_index(path)
    table = Table("source", "records", "in linked entities", title=f"linked index {_shown(path)}")
    for source, records, linked in summary.sources:
        table.add_row(source, f"{records:,}", f"{linked:,}")
    console.print(table)
    console.print(
        f"{summary.entities:,} entities ({summary.linked_entities:,} linked across sources); "
        f"{summary.retired:,} entity ids retired"
    )
    threshold = "none yet" if summary.threshold is None else f"{summary.threshold:.2f}"
    console.print(f"{summary.bits}-bit CLKs, threshold {threshold}, project {summary.fingerprint}")
    console.print(f"created {summary.created}, last changed {summary.updated}")
    for at, action, detail in summary.history:
        console.print(f"  {at}  {_history_line(action, json.loads(detail))}", highlight=False)


def _history_line(action: str, detail: dict) -> str:
    if action == "update":
        return (
            f"update {detail['source']}: {detail['new']:,} new, {detail['changed']:,} changed, "
            f"{detail['removed']:,} removed; {detail['joined']:,} joined an entity, "
            f"{detail['new_entities']:,} new entities"
        )
    return (
        f"{action}: {detail['records']:,} records, {detail['entities']:,} entities; "
        f"{detail['ids_kept']:,} earlier ids kept, {detail['ids_retired']:,} retired"
    )


def explain_cli(
    console: Console,
    *,
    project: Path,
    sample: Path | None,
    secret_file: Path | None,
    partner: str | None,
) -> None:
    from oda_fed.encoding.explain import explain
    from oda_fed.node.encode import encode_source, field_encodings
    from oda_fed.node.sources import layout_for, prepare

    loaded = load_project(project)
    linkage = loaded.project.linkage
    clks = None
    if sample is not None:
        if secret_file is None:
            raise ConfigError("--sample needs --secret-file to encode the sample")
        prep = prepare(
            sample,
            project=loaded.project,
            layout=layout_for(loaded.project, partner or sample.stem),
        )
        clks = encode_source(
            prep, project=loaded.project, secret=read_secret(secret_file), harden_clks=False
        )
    result = explain(field_encodings(loaded.project), bits=linkage.bits, sample=clks)
    table = Table(
        title=f"{loaded.project.name}: {linkage.bits}-bit CLKs, threshold {linkage.threshold}"
    )
    # Names and types fold onto a second line rather than being cut short on narrow terminals.
    for header in ("field", "type"):
        table.add_column(header, overflow="fold", min_width=len(header))
    for header in ("n-gram", "k", "weight", "tokens per value", "insertions"):
        table.add_column(header, justify="right")
    for r in result.fields:
        e = r.encoding
        table.add_row(
            e.name,
            e.type,
            str(e.ngram) if e.uses_ngrams else "-",
            str(e.k),
            f"{e.weight:g}",
            f"{r.tokens_per_value:.1f}",
            f"{r.bits_inserted:.0f}",
        )
    console.print(table)
    console.print(f"expected fill: [bold]{result.expected_fill:.0%}[/] of {result.bits} bits")
    if result.measured_fill is not None:
        console.print(f"measured fill on {sample}: [bold]{result.measured_fill:.0%}[/]")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"fingerprint: {loaded.fingerprint}")


# --- coordinator operator -------------------------------------------------------------------------


def _status_table(status) -> Table:
    table = Table(
        "partner",
        "connected",
        "records",
        "uploaded",
        "entity ids delivered",
        title=f"round {status.round_id}: {status.state}",
    )
    for p in status.partners:
        table.add_row(
            p.partner,
            "yes" if p.connected else "no",
            str(p.records),
            "yes" if p.uploaded else "no",
            "yes" if p.entities_delivered else "no",
        )
    return table


def start_round_cli(console: Console, *, config: Path, wait: bool, timeout: float) -> None:
    from oda_fed.coordinator.admin import AdminClient

    cfg = load_coordinator_config(config)
    client = AdminClient(cfg)
    try:
        status = client.start_round()
        console.print(f"started round {status.round_id}")
        if wait:
            with _spinner(console) as progress:
                task = progress.add_task("waiting", total=None)
                status = client.wait(
                    status.round_id,
                    timeout=timeout,
                    on_status=lambda s: progress.update(
                        task, description=f"{s.state}: {s.message}"
                    ),
                )
        console.print(_status_table(status))
        if status.message:
            console.print(status.message)
        if status.report_path:
            console.print(f"report: {status.report_path}")
    finally:
        client.close()


def status_cli(console: Console, *, config: Path, round_id: str) -> None:
    from oda_fed.coordinator.admin import AdminClient

    client = AdminClient(load_coordinator_config(config))
    try:
        status = client.get_round(round_id)
    finally:
        client.close()
    console.print(_status_table(status))
    console.print(status.message)


# --- demo -----------------------------------------------------------------------------------------


def run_demo_cli(
    console: Console, *, workdir: Path, population: int, seed: int, errors: str
) -> None:
    from oda_fed.demo import run_demo
    from oda_fed.products.released import SUPPRESSED, read_released_counts
    from oda_fed.synth import error_level

    console.rule("[bold]oda-fed demo")
    with _spinner(console) as progress:
        task = progress.add_task("starting", total=None)

        def step(msg: str) -> None:
            console.log(msg)
            progress.update(task, description=msg)

        def on_status(s) -> None:
            done = sum(p.uploaded for p in s.partners)
            progress.update(
                task,
                description=f"round {s.round_id}: {s.state} "
                f"({done}/{len(s.partners)} uploaded) {s.message}",
            )

        result = run_demo(
            workdir,
            population=population,
            seed=seed,
            errors=error_level(errors),
            on_step=step,
            on_status=on_status,
        )

    records = Table(
        "partner",
        "records",
        "CLKs uploaded",
        "entity ids delivered",
        title="partners (each a separate process, mutual TLS)",
    )
    for p in result.status.partners:
        records.add_row(
            p.partner,
            f"{p.records:,}",
            "yes" if p.uploaded else "no",
            "yes" if p.entities_delivered else "no",
        )
    console.print(records)
    q = result.quality
    console.print(
        f"entities: {result.status.entities:,} ({result.status.linked_entities:,} known to "
        "two or more partners)"
    )
    console.print(
        f"linkage quality against the synthetic truth: precision [bold]{q.precision:.4f}[/], "
        f"recall [bold]{q.recall:.4f}[/], F1 {q.f1:.4f} "
        f"({q.true_positives:,} of {q.true_pairs:,} true pairs found)"
    )

    released = read_released_counts(result.product_csv)
    shown = Table(
        "area",
        *[f"known to {c}" for c in released.table.columns],
        title="residents known to 1, 2 or 3 services, by ward "
        "(counts < 10 suppressed, others rounded to 5)",
    )
    for area, row in released.table.iterrows():
        shown.add_row(area, *[f"[dim]{v}[/]" if v == SUPPRESSED else v for v in row])
    console.print(shown)
    console.print(f"{released.suppressed_cells} of {released.cells} cells suppressed")
    audit = "[green]verified[/]" if result.audit_ok else "[bold red]FAILED[/]"
    console.print(
        f"audit logs {audit}: "
        + ", ".join(f"{k} {v}" for k, v in result.audit_entries.items())
        + " entries"
    )
    for problem in result.audit_problems:
        console.print(f"  {problem}", highlight=False)
    console.print(f"product: {_shown(result.product_csv)}")
    console.print(f"HTML report: [bold]{_shown(result.report)}[/]")
    console.print(
        "linkage quality estimated without truth: "
        f"{_shown(result.report.with_name('quality.html'))}"
    )
    console.print(
        f"finished in {result.seconds:.1f}s; everything is under {_shown(result.workdir)}"
    )
    if not result.audit_ok:
        from oda_fed.errors import AuditError

        raise AuditError("audit verification failed")
