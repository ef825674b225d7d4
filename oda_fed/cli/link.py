"""``oda-fed encode``, ``oda-fed link``, ``oda-fed analyse`` and ``oda-fed index show``: embedded
mode, one process."""

from __future__ import annotations

import gc
import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from oda_fed.cli._common import (
    OnInvalid,
    call,
    check_on_invalid,
    console,
    shown,
    skip_collection_at_exit,
    spinner,
    with_status,
)
from oda_fed.errors import ConfigError, InputDataError

if TYPE_CHECKING:
    import pandas as pd

    from oda_fed.config import AnalysisSource
    from oda_fed.embedded import Analysis
    from oda_fed.index import IndexReport
    from oda_fed.linkage import LinkResult
    from oda_fed.node.encode import EncodedSource

app = typer.Typer()
index_app = typer.Typer(
    help="Inspect a linked index (made by `oda-fed link --index`).", no_args_is_help=True
)


# --- encode ---------------------------------------------------------------------------------------


@app.command()
def encode(
    input: Annotated[
        Path, typer.Option(help="CSV, .parquet or .xlsx file with the records to encode.")
    ],
    out: Annotated[Path, typer.Option(help="Output file.")],
    project: Annotated[
        Path | None, typer.Option(help="The project agreement (project.toml).")
    ] = None,
    clkhash_schema: Annotated[
        Path | None,
        typer.Option(help="A clkhash v3 linkage schema (JSON) instead of a project."),
    ] = None,
    secret_file: Annotated[Path | None, typer.Option(help="The linkage secret file.")] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            help="The secret as text (clkhash style, with --clkhash-schema). Other users of this "
            "machine can see command lines: prefer --secret-file."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            help="npy (uint64 array), arrow (record_id + clk columns) or clkhash-json "
            "(default: clkhash-json with --clkhash-schema, else npy)."
        ),
    ] = None,
    partner: Annotated[
        str | None,
        typer.Option(help="Partner whose column layout applies (default: the input file's name)."),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read per chunk.")] = 100_000,
    on_invalid: OnInvalid = "error",
) -> None:
    """Encode a CSV into CLKs, in bounded memory with a progress bar.

    With --project, the project's encoding (what nodes send). With --clkhash-schema, exactly the
    bits clkhash produces for that schema and secret.
    """
    call(
        _encode,
        project=project,
        clkhash_schema=clkhash_schema,
        secret_file=secret_file,
        secret=secret,
        input=input,
        out=out,
        partner=partner,
        fmt=format,
        chunk_rows=chunk_rows,
        on_invalid=on_invalid,
    )


def _encode(
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
    on_invalid: str,
) -> None:
    # Only what the chosen encoding needs: a clkhash schema loads no project models, nor pandas.
    from oda_fed.node.encoded import FORMATS, encode_clkhash_file
    from oda_fed.pki import read_secret

    if (project is None) == (clkhash_schema is None):
        raise ConfigError("give either --project or --clkhash-schema")
    if (secret_file is None) == (secret is None):
        raise ConfigError("give either --secret-file or --secret")
    if project is not None and secret is not None:
        raise ConfigError("--secret is for clkhash schemas; with --project use --secret-file")
    fmt = fmt or ("clkhash-json" if clkhash_schema is not None else "npy")
    formats = (*FORMATS, "clkhash-json")
    if fmt not in formats:
        raise ConfigError(f"--format must be one of {', '.join(formats)}, not '{fmt}'")
    if project is not None and fmt == "clkhash-json":
        raise ConfigError("clkhash-json output is for --clkhash-schema encodings")
    invalid = check_on_invalid(on_invalid)
    key = read_secret(secret_file) if secret_file is not None else secret.encode("utf-8")
    # Everything that can be wrong with the arguments shows before the progress bar does.
    if clkhash_schema is not None:
        from oda_fed.encoding.clkhash_schema import load_clkhash_schema

        schema = load_clkhash_schema(clkhash_schema)
        bits = schema.bits
        encode = partial(
            encode_clkhash_file, input, schema=schema, secret=key, chunk_rows=chunk_rows
        )
    else:
        from oda_fed.config import load_project
        from oda_fed.node.encode import encode_file
        from oda_fed.node.sources import layout_for

        loaded = load_project(project)
        layout = layout_for(loaded.project, partner or input.stem)
        bits = loaded.project.linkage.wire_bits
        encode = partial(
            encode_file,
            input,
            project=loaded.project,
            layout=replace(layout, on_invalid=invalid),
            secret=key,
            chunk_rows=chunk_rows,
        )
    # What the imports made lives to the end: the collector's full passes while encoding skip it.
    gc.freeze()
    started = time.monotonic()
    with spinner(counts=True) as progress:
        task = progress.add_task(f"encoding {input.name}", total=None)
        encoded = encode(
            progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    seconds = time.monotonic() - started
    _write(encoded, out, fmt=fmt, bits=bits)
    _print_encoded(encoded, seconds=seconds)
    console.print(f"wrote {out} ({fmt}, {bits}-bit CLKs)")
    skip_collection_at_exit()  # the output is written and closed


def _write(encoded: EncodedSource, out: Path, *, fmt: str, bits: int) -> None:
    if fmt == "clkhash-json":
        from oda_fed.encoding.clkhash_json import write_clkhash_json

        write_clkhash_json(encoded.clks, out, bits=bits)  # atomic
    else:
        from oda_fed.node.encode import write_encoded

        write_encoded(encoded, out, fmt=fmt)


def _print_encoded(encoded: EncodedSource, *, seconds: float) -> None:
    table = Table(
        "field",
        "missing",
        "invalid (counted as missing)",
        title=f"{len(encoded):,} records encoded in {seconds:.1f}s "
        f"({len(encoded) / max(seconds, 1e-9):,.0f} records/s)",
    )
    for name in encoded.missing:
        table.add_row(name, f"{encoded.missing[name]:,}", f"{encoded.invalid[name]:,}")
    console.print(table if encoded.missing else table.title)


# --- link -----------------------------------------------------------------------------------------


@app.command()
def link(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Two or more files (CSV, .parquet or .xlsx, UTF-8 CSV unless the suffix says "
            "otherwise); each file's name without its suffix names its source."
        ),
    ],
    project: Annotated[Path, typer.Option(help="The project agreement (project.toml).")],
    secret_file: Annotated[Path, typer.Option(help="The linkage secret file.")],
    out: Annotated[Path, typer.Option(help="Where to write links.csv.")] = Path("links.csv"),
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Optional truth.csv (source,record_id,person_id) to report precision and recall."
        ),
    ] = None,
    all_records: Annotated[
        bool, typer.Option(help="Also write records linked to no other.")
    ] = False,
    on_invalid: OnInvalid = "error",
    index: Annotated[
        Path | None,
        typer.Option(
            help="A linked index file to create or update. Its entity ids stay stable across "
            "runs and go into links.csv: unchanged records keep theirs and are not matched again, "
            "new and changed records are matched against the other sources and join an existing "
            "entity or get a fresh id, records missing from a file are removed. Once the index "
            "holds other sources, one file is enough. It holds CLKs and record ids: keep it as "
            "you keep links.csv."
        ),
    ] = None,
    rebuild_index: Annotated[
        bool,
        typer.Option(
            help="With --index: link every record again (updates never merge or split "
            "entities) and keep each earlier entity id for the new entity it overlaps most."
        ),
    ] = False,
    sources: Annotated[
        Path | None,
        typer.Option(
            help="TOML file with a [source.<name>] table per source (named as its file), holding "
            "what a node.toml [source] holds: how to read the file, its columns, or a SQL query "
            '(format = "sql", url, query) in place of a file.'
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Match on a Dask cluster: its scheduler (tcp://HOST:8786), or local[:N] to "
            "start N worker processes here (default 2). The results are the same as without "
            "it. Needs the 'cluster' extra; not with --index."
        ),
    ] = None,
    dask_shared: Annotated[
        Path | None,
        typer.Option(
            help="With --dask: a folder every worker can read, where each pair of sources' "
            "CLKs wait while it is matched (default: a private folder in the temporary folder)."
        ),
    ] = None,
) -> None:
    """Embedded mode: link files in one process with no network and write links.csv.

    With --index, entity ids are stable from run to run and only new and changed records are
    matched.
    """
    call(
        _link,
        files=files,
        project=project,
        secret_file=secret_file,
        out=out,
        truth=truth,
        all_records=all_records,
        on_invalid=on_invalid,
        index=index,
        rebuild_index=rebuild_index,
        sources=sources,
        dask=dask,
        dask_shared=dask_shared,
    )


def _link(
    *,
    files: list[Path],
    project: Path,
    secret_file: Path,
    out: Path,
    truth: Path | None,
    all_records: bool,
    on_invalid: str,
    index: Path | None,
    rebuild_index: bool,
    sources: Path | None = None,
    dask: str | None = None,
    dask_shared: Path | None = None,
) -> None:
    """Link files afresh, or into a linked index; write links.csv and a quality report."""
    from oda_fed.config import load_analysis_sources, load_project
    from oda_fed.durable import write_atomic
    from oda_fed.embedded import by_stem, link_files
    from oda_fed.matching.executor import check_address, open_executor
    from oda_fed.pki import read_secret

    if rebuild_index and index is None:
        raise ConfigError("--rebuild-index needs --index PATH: the index to rebuild")
    if dask is not None and index is not None:
        raise ConfigError("--dask links afresh: an update of a linked index (--index) runs here")
    if dask is not None:
        check_address(dask, what="--dask")
    given = load_analysis_sources(sources).source if sources is not None else {}
    files = list(_with_sources(by_stem(files), given, sources).values())
    if index is not None and not files:
        raise InputDataError("give the CSV file(s) to add to the linked index")
    invalid = check_on_invalid(on_invalid)
    loaded = load_project(project)
    secret = read_secret(secret_file)
    started = time.monotonic()
    with open_executor(dask, shared_dir=dask_shared) as executor:
        result = with_status(
            "linking",
            link_files,
            paths=files,
            project=loaded,
            secret=secret,
            index=index,
            rebuild=rebuild_index,
            on_invalid=invalid,
            sources=given,
            executor=executor,
        )
    links = result.links(include_singletons=all_records)
    write_atomic(out, lambda tmp: links.to_csv(tmp, index=False))
    seconds = time.monotonic() - started
    if result.index_report is not None:
        _print_index_report(result.index_report, index=index, seconds=seconds)
    else:
        _print_link_table(
            result,
            links,
            auto=loaded.project.linkage.threshold == "auto",
            seconds=seconds,
            all_records=all_records,
        )
    true_figures = _true_figures(result, truth)
    if result.outcome is None:
        console.print("no quality report: nothing was linked")
        console.print(f"wrote {out} ({len(links)} rows, entity ids from {shown(index)})")
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
    source = f", entity ids from {shown(index)}" if index is not None else ""
    console.print(f"wrote {out} ({len(links)} rows{source}); quality report: {shown(html)}")
    for reason in result.degenerate():
        # The links were written (they are the evidence), but must not be used as they are.
        console.print(f"[bold red]degenerate fit, do not trust these entities:[/] {escape(reason)}")


def _print_link_table(
    result: LinkResult, links: pd.DataFrame, *, auto: bool, seconds: float, all_records: bool
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


def _true_figures(result: LinkResult, truth: Path | None) -> dict | None:
    """Print and return precision, recall and F1 against a truth file, if one was given."""
    if truth is None:
        return None
    import pandas as pd

    q = result.quality(pd.read_csv(truth, dtype=str, keep_default_na=False))
    console.print(
        f"against {truth}: precision {q.precision:.4f}, recall {q.recall:.4f}, F1 {q.f1:.4f}"
    )
    return {"precision": q.precision, "recall": q.recall, "f1": q.f1}


def _print_index_report(report: IndexReport, *, index: Path, seconds: float) -> None:
    threshold = "-" if report.threshold is None else f"{report.threshold:.2f}"
    update = report.action == "update"
    done = {"update": "updated", "build": "built", "rebuild": "rebuilt"}[report.action]
    table = Table(
        "source",
        "unchanged",
        "new",
        "changed",
        "removed",
        *(("joined an entity", "new entities") if update else ()),
        title=f"{done} linked index {shown(index)} in {seconds:.1f}s (threshold {threshold})",
    )
    for u in report.sources:
        counts = (u.unchanged, u.new, u.changed, u.removed)
        counts += (u.joined, u.new_entities) if update else ()
        table.add_row(u.source, *(f"{v:,}" for v in counts))
    console.print(table)
    relink = report.relink
    if update:
        t = report.totals()
        kept_note = (
            f" ({t.kept:,} changed records matched nothing and kept their own entity id)"
            if t.kept
            else ""
        )
        console.print(
            f"matched only the {t.scored:,} new or changed records{kept_note}; {t.retired:,} "
            "entity ids retired. Updates never merge or split entities: --rebuild-index "
            "re-clusters"
        )
    elif report.action == "rebuild" and relink is not None:
        console.print(
            f"relinked every record: {relink.ids_kept:,} earlier entity ids kept, "
            f"{relink.ids_new:,} new, {relink.ids_retired:,} retired; "
            f"{relink.records_moved:,} records changed entity id"
        )
    if report.note:
        console.print(report.note, markup=False)
    console.print(
        f"{report.entities:,} entities, {report.linked_entities:,} of them linked across sources"
    )


# --- analyse --------------------------------------------------------------------------------------


@app.command()
def analyse(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="One file per partner (CSV, .parquet or .xlsx), named after it (council.csv, "
            "police.parquet, ...); optional for partners whose file the --sources file gives, "
            "which also sets a CSV's encoding and delimiter."
        ),
    ] = None,
    project: Annotated[Path, typer.Option(help="The project agreement (project.toml).")] = Path(
        "project.toml"
    ),
    secret_file: Annotated[Path, typer.Option(help="The linkage secret file.")] = Path(
        "linkage.secret"
    ),
    out: Annotated[
        Path, typer.Option(help="Folder for the released products (CSV, PNG and HTML each).")
    ] = Path("products"),
    sources: Annotated[
        Path | None,
        typer.Option(
            help="TOML file with a [source.<partner>] table per partner, holding what that "
            "partner's node.toml [source] holds: columns, attributes, lookups, event tables."
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the release ledger and the rounding key (default: OUT.state). Keep "
            "it for the next run, so a release close to an earlier one is held; do not publish it."
        ),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            help="A linked index to link into (as `oda-fed link --index`), so entity ids stay "
            "the same from run to run; alerts need one."
        ),
    ] = None,
    boundaries: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=FILE: the GeoJSON file of a boundary set a map product is drawn on "
            "(as coordinator.toml [boundaries] gives it); once per boundary set."
        ),
    ] = None,
    on_invalid: OnInvalid = "error",
) -> None:
    """Embedded mode: link partners' files and release every product the project declares.

    The same attribute derivations and disclosure control as a federated round, including the
    release ledger across runs. Each product is written to OUT as CSV (a suppressed cell is the
    word "suppressed"), PNG and HTML; the disclosure reports, which hold true counts, go to the
    state folder for whoever approves the release.
    """
    call(
        _analyse,
        files=files or [],
        project=project,
        secret_file=secret_file,
        out=out,
        sources=sources,
        state=state,
        index=index,
        boundaries=boundaries or [],
        on_invalid=on_invalid,
    )


def _with_sources(
    paths: dict[str, Path], given: dict[str, AnalysisSource], sources: Path | None
) -> dict[str, Path]:
    """The files on the command line, and those a --sources file names: a ``path``, or a SQL
    query (which its source's name labels)."""
    for name, source in given.items():
        if source.path is None and source.format != "sql":
            continue
        if name in paths:
            raise ConfigError(
                f"{name}'s extract is given twice: on the command line and as [source.{name}] "
                f"in {sources}; give it once"
            )
        paths[name] = source.path if source.path is not None else Path(name)
    return paths


def _analyse(
    *,
    files: list[Path],
    project: Path,
    secret_file: Path,
    out: Path,
    sources: Path | None,
    state: Path | None,
    index: Path | None,
    boundaries: list[str],
    on_invalid: str,
) -> None:
    from oda_fed.config import load_analysis_sources, load_project
    from oda_fed.embedded import analyse_files, by_stem
    from oda_fed.pki import read_secret

    invalid = check_on_invalid(on_invalid)
    loaded = load_project(project)
    given = load_analysis_sources(sources).source if sources is not None else {}
    unknown = sorted(set(given) - set(loaded.project.partner_ids))
    if unknown:
        raise ConfigError(
            f"{sources}: [source.{unknown[0]}] names no partner of the project "
            f"({', '.join(loaded.project.partner_ids)})"
        )
    paths = _with_sources(by_stem(files), given, sources)
    state_dir = state or out.with_name(out.name + ".state")
    secret = read_secret(secret_file)
    started = time.monotonic()
    analysis = with_status(
        "reading the files",
        analyse_files,
        files=paths,
        project=loaded,
        secret=secret,
        out_dir=out,
        state_dir=state_dir,
        sources=given,
        index=index,
        boundaries=_named_files(boundaries, option="--boundaries"),
        on_invalid=invalid,
    )
    _print_analysis(analysis, out=out, state_dir=state_dir, seconds=time.monotonic() - started)


def _named_files(given: list[str], *, option: str) -> dict[str, Path]:
    """``NAME=FILE`` values of a repeated option, checked."""
    named: dict[str, Path] = {}
    for text in given:
        name, equals, path = text.partition("=")
        if not equals or not name or not path:
            raise ConfigError(f"{option} takes NAME=FILE, e.g. {option} wards=wards.geojson")
        if name in named:
            raise ConfigError(f"{option} gives '{name}' twice; give each once")
        named[name] = Path(path)
    return named


def _print_analysis(analysis: Analysis, *, out: Path, state_dir: Path, seconds: float) -> None:
    linked = analysis.linked
    threshold = "-" if linked.threshold is None else f"{linked.threshold:.2f}"
    console.print(
        f"linked {', '.join(linked.sources)}: {linked.entities:,} entities, "
        f"{linked.linked_entities:,} known to two or more partners (threshold {threshold})"
    )
    table = Table(
        "product",
        "cells",
        "suppressed",
        "files",
        title=f"released in {seconds:.1f}s to {shown(out)}",
    )
    for product, paths in analysis.products:
        table.add_row(
            product.product_id,
            f"{len(product.table):,}",
            f"{product.suppressed_cells:,}",
            ", ".join(paths),
        )
    for product, paths in analysis.records:
        said = product.held or product.note
        table.add_row(
            f"{product.product_id} ({product.kind} for {product.owner})",
            f"{len(product.rows):,} records",
            f"{product.decisions.get('withheld_k', 0) + product.decisions.get('withheld_l', 0):,}"
            " withheld",
            ", ".join(paths) + (f" ({said})" if said else ""),
        )
    console.print(table)
    if analysis.products:
        console.print(f"dashboard: {shown(out / 'dashboard.html')}")
    if analysis.held:
        console.print(
            f"[bold yellow]{len(analysis.held)} cell(s) held[/]: an earlier release of the same "
            "cell differs from this one by less than the smallest publishable count, so they "
            "are suppressed:"
        )
        for line in analysis.held:
            console.print(f"  {line}", markup=False, highlight=False)
    console.print(
        f"disclosure reports (true counts: for whoever approves, not for publication): "
        f"{shown(state_dir / 'reports' / analysis.release_id)}"
    )


# --- index show -----------------------------------------------------------------------------------


@index_app.command("show")
def index_show(path: Annotated[Path, typer.Argument(help="The linked index file.")]) -> None:
    """Print a linked index's records per source, its entities and its last updates."""
    from oda_fed.index import describe_index

    summary = call(describe_index, path)
    table = Table("source", "records", "in linked entities", title=f"linked index {shown(path)}")
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
    """One line of the index's history, from the detail it recorded with each change."""
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
