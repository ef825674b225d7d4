"""Embedded mode: every role in one process, no network, for trying oda-fed on files.

Each file is read, standardised and encoded as a node does (:func:`oda_fed.node.encode.encode_file`),
then linked by the one linkage run the coordinator uses (:func:`oda_fed.linkage.run_linkage`), so
the results agree with what a federated round would find for the same inputs and settings.
:func:`analyse_files` then derives each partner's attributes as its node would
(:func:`oda_fed.node.derive.derive_all`) and builds the project's products as the coordinator
does (:func:`oda_fed.products.build.build_product`), under the same disclosure control.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from oda_fed.config import LOCAL, RECORD_KINDS, AnalysisSource, LoadedProject
from oda_fed.errors import InputDataError
from oda_fed.index import Extract, LinkedIndex
from oda_fed.linkage import IndexTarget, LinkResult, run_linkage, settings_for
from oda_fed.matching.executor import Executor
from oda_fed.node.encode import EncodedSource, encode_file
from oda_fed.node.sources import layout_for
from oda_fed.products.records import RecordProduct
from oda_fed.products.tables import ProductTable

if TYPE_CHECKING:
    from oda_fed.products.build import Population

Progress = Callable[[str], None]


def link_files(
    paths: Sequence[Path],
    *,
    project: LoadedProject,
    secret: bytes,
    index: Path | None = None,
    rebuild: bool = False,
    on_invalid: str = "error",
    progress: Progress | None = None,
    sources: Mapping[str, AnalysisSource] | None = None,
    executor: Executor | None = None,
) -> LinkResult:
    """Link the records of partners' files (CSV, Parquet or xlsx), afresh or into a linked index
    file.

    A file's stem names its source. When the stem is a partner id in the project, that partner's
    agreed column layout applies; otherwise columns must be named after the project's fields, and
    the record id column is ``record_id``. ``on_invalid`` is ``"error"`` (stop at the first
    malformed value, naming its row and column) or ``"missing"`` (count malformed values as
    missing). ``sources`` gives, by stem, what a partner's node.toml ``[source]`` would: its
    columns, and how to read its file (format, encoding, delimiter, sheet; by default UTF-8
    comma-separated CSV, or as the file's suffix says).

    Without ``index`` the files are linked afresh and entities are numbered ``e0000001``… in
    resolution order. With ``index``, the linked index at that path is created, or updated source
    by source in the order given: unchanged records keep their entity ids and are not matched
    again, new and changed records are matched against the other sources' records, and records
    missing from a file are removed (:class:`oda_fed.index.LinkedIndex`). ``rebuild`` links
    everything again, carrying old entity ids over by largest overlap. Sources the index holds but
    ``paths`` leaves out keep their records. ``executor`` runs a fresh link's candidate work
    (:func:`oda_fed.matching.executor.open_executor`: a Dask cluster); default: this process.

    Raises
    ------
    ProjectMismatchError
        ``index`` was built under another project (checked before any file is read).
    InputDataError
        A file cannot be used as it is, two files share a name, or there are fewer than two
        sources to link (an index may already hold the other).

    Examples
    --------
    >>> loaded = load_project(Path("project.toml"))  # doctest: +SKIP
    >>> result = link_files([Path("council.csv"), Path("police.csv")], project=loaded,
    ...                     secret=read_secret(Path("linkage.secret")))  # doctest: +SKIP
    >>> result.links().columns.tolist()  # doctest: +SKIP
    ['entity_id', 'source', 'record_id', 'score']
    """
    target = _index_target(project, index, rebuild=rebuild)
    if target is None and len(paths) < 2:
        raise InputDataError("give at least two files to link")
    extracts = encode_files(
        paths,
        project=project,
        secret=secret,
        on_invalid=on_invalid,
        progress=progress,
        sources=sources,
    )
    return run_linkage(
        extracts,
        settings=settings_for(project.project.linkage),
        index=target,
        entity_ids="numbered",
        progress=progress,
        executor=executor,
    )


def encode_files(
    paths: Sequence[Path],
    *,
    project: LoadedProject,
    secret: bytes,
    on_invalid: str = "error",
    progress: Progress | None = None,
    sources: Mapping[str, AnalysisSource] | None = None,
) -> dict[str, Extract]:
    """Each file's records encoded with its partner's layout (and ``sources``' settings, as
    :func:`link_files` takes them), keyed by the file's stem."""
    encoded = _encoded(
        by_stem(paths),
        project=project,
        secret=secret,
        on_invalid=on_invalid,
        progress=progress,
        sources=sources,
    )
    return {stem: extract_of(e) for stem, e in encoded.items()}


def _index_target(
    project: LoadedProject, index: Path | None, *, rebuild: bool = False
) -> IndexTarget | None:
    """The linked index to link into, checked against the project before any file is read."""
    if index is None:
        return None
    words = project.project.linkage.wire_bits // 64
    target = IndexTarget(
        path=Path(index), fingerprint=project.fingerprint, words=words, rebuild=rebuild
    )
    if target.path.exists():
        # A wrong index fails here, before minutes of encoding; it is not changed.
        LinkedIndex.open(target.path, fingerprint=target.fingerprint, words=words).close()
    return target


def by_stem(paths: Sequence[Path]) -> dict[str, Path]:
    """Files by the source their name gives (``council.csv`` is ``council``'s)."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise InputDataError(
            "input files must have different names; the name identifies the source"
        )
    return {stem: Path(p) for stem, p in zip(stems, paths, strict=True)}


def _encoded(
    files: Mapping[str, Path],
    *,
    project: LoadedProject,
    secret: bytes,
    on_invalid: str,
    progress: Progress | None,
    sources: Mapping[str, AnalysisSource] | None = None,
) -> dict[str, EncodedSource]:
    out = {}
    for name, path in files.items():
        if progress is not None:
            progress(f"standardising and encoding {path.name}")
        source = (sources or {}).get(name)
        layout = layout_for(project.project, name, source)
        out[name] = encode_file(
            path,
            project=project.project,
            layout=replace(layout, on_invalid=source.on_invalid if source else on_invalid),
            secret=secret,
        )
    return out


def extract_of(encoded: EncodedSource) -> Extract:
    """An encoded file as linkage takes it: record ids, CLKs and keyed tokens."""
    return Extract(
        record_ids=[str(r) for r in encoded.record_ids],
        clks=encoded.clks,
        tokens=encoded.tokens or None,
        evidence=encoded.evidence,
    )


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyse_files` released.

    Attributes
    ----------
    release_id
        This release, as the release ledger knows it (``analyse-<UTC time>``).
    products
        Each product's controlled table and its files (``csv``, ``png``, ...).
    held
        One line per cell the release ledger held (suppressed, because an earlier release of the
        same cell differs from it by less than the smallest publishable count).
    linked
        The linkage run the products were built on.
    population
        The linked entities and their derived attribute values, as the products were built
        from them (:class:`oda_fed.products.build.Population`): true values, never to be
        released; :func:`oda_fed.products.build.true_cells` tabulates them without control.
    records
        Each prioritised list and alert, with its file.
    """

    release_id: str
    products: list[tuple[ProductTable, dict[str, Path]]]
    held: list[str]
    linked: LinkResult
    population: Population
    records: list[tuple[RecordProduct, dict[str, Path]]] = field(default_factory=list)


def analyse_files(
    files: Mapping[str, Path],
    *,
    project: LoadedProject,
    secret: bytes,
    out_dir: Path,
    state_dir: Path,
    sources: Mapping[str, AnalysisSource] | None = None,
    index: Path | None = None,
    boundaries: Mapping[str, Path] | None = None,
    on_invalid: str = "error",
    progress: Progress | None = None,
) -> Analysis:
    """Link partners' files (partner to file) and release every product the project
    declares into ``out_dir``.

    The same derivations and disclosure control as a federated round: each file is encoded and its
    attributes derived as that partner's node would, with ``sources`` giving what its node.toml
    ``[source]`` would (columns, attributes, lookup and event tables). The files are linked, and
    each product is built and controlled against the release ledger in ``state_dir``, which also
    holds the key rounding is drawn with: keep it, and do not publish it. A cell the ledger holds
    is suppressed and named in :attr:`Analysis.held`. A prioritised list or an alert is written
    with the owner's record ids; an alert needs ``index``, a linked index whose entity ids stay
    the same from run to run (:func:`link_files`). ``boundaries`` gives the GeoJSON file of each
    boundary set a map is drawn on, as coordinator.toml ``[boundaries]`` does. Beside the products,
    ``dashboard.html`` holds every table and map with its chart and a note for its reader.

    Nothing is written to ``out_dir`` until every product is built; a file or attribute that
    cannot be used stops the run with nothing written and the ledger as it was.

    Raises
    ------
    InputDataError
        A file is not a partner's, fewer than two are given, an attribute's values
        are outside its domain, or an event or lookup table cannot be read.
    """
    from oda_fed.node.derive import derive_all
    from oda_fed.node.policy import shareable_attributes
    from oda_fed.products.boundaries import check_boundaries
    from oda_fed.products.build import Population, build_products
    from oda_fed.products.export import write_product
    from oda_fed.products.local import build_local
    from oda_fed.products.note import Provenance
    from oda_fed.products.pages import write_dashboard
    from oda_fed.products.records import build_records, write_decisions, write_records
    from oda_fed.products.releases import Releases

    spec = project.project
    files = {name: Path(path) for name, path in files.items()}
    for name, path in files.items():
        if name not in spec.partner_ids:
            raise InputDataError(
                f"{path.name}: oda-fed analyse takes one file per partner, named after it "
                f"({', '.join(f'{p}.csv' for p in spec.partner_ids)}), or given as its "
                "[source.<partner>] path in the --sources file"
            )
    if len(files) < 2:
        raise InputDataError("give at least two partners' files to analyse")
    for prod in spec.products:
        if prod.kind == LOCAL and prod.owner not in files:
            raise InputDataError(
                f"product '{prod.id}' counts {prod.owner}'s own records: give its file "
                f"({prod.owner}.csv)"
            )
    alerts = [p.id for p in spec.products if p.kind == "alert"]
    if alerts and index is None:
        raise InputDataError(
            f"alert '{alerts[0]}' names entities new since the last run, which needs entity ids "
            "that stay the same from run to run: give a linked index (--index FILE)"
        )
    target = _index_target(project, index)
    check_boundaries(spec, boundaries or {})
    encoded = _encoded(
        files,
        project=project,
        secret=secret,
        on_invalid=on_invalid,
        progress=progress,
        sources=sources,
    )
    derived = {}
    for partner, extract in encoded.items():
        if progress is not None:
            progress(f"deriving {partner}'s attributes")
        source = (sources or {}).get(partner)
        asked = [
            spec.attribute(partner=partner, name=name)
            for name in sorted(shareable_attributes(project, partner))
        ]
        derived[partner] = derive_all(
            asked,
            record_ids=[str(r) for r in extract.record_ids],
            columns=extract.attributes,
            date_format=layout_for(spec, partner, source).date_format,
            lookups=source.lookups if source else None,
            events=source.events if source else (),
            on_invalid=source.on_invalid if source else on_invalid,
        )
    linked = run_linkage(
        {p: extract_of(e) for p, e in encoded.items()},
        settings=settings_for(spec.linkage),
        index=target,
        entity_ids="numbered",
        progress=progress,
    )
    members = linked.members
    values = {}
    for partner, by_attribute in derived.items():
        own = members[members.source == partner]
        entity = pd.Series(own.entity_id.to_numpy(), index=own.record_id.astype(str).to_numpy())
        ids = entity.reindex([str(r) for r in encoded[partner].record_ids]).to_numpy()
        for name, column in by_attribute.items():
            values[f"{partner}.{name}"] = pd.Series(column, index=ids, dtype=object)
    owners = {p.owner for p in spec.products if p.owner is not None}
    population = Population(
        partners=linked.partners_per_entity(),
        values=values,
        records={
            o: members[members.source == o].set_index("entity_id")["record_id"].astype(str)
            for o in owners
        },
    )

    releases = Releases.in_folder(state_dir, spec, name=project.fingerprint.rpartition(":")[2][:16])
    release_id = "analyse-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    report_dir = Path(state_dir) / "reports" / release_id
    tables = [p for p in spec.products if p.kind not in (*RECORD_KINDS, LOCAL)]
    try:
        if progress is not None:
            progress(f"building {len(spec.products)} product(s)")
        listed = [
            build_records(spec, prod, population, releases=releases, release_id=release_id)
            for prod in spec.products
            if prod.kind in RECORD_KINDS
        ]
        # Controlled together, as a round's are: no product's suppressed cell follows from
        # another's.
        controlled = build_products(
            spec,
            [(prod, population) for prod in tables],
            releases=releases,
            release_id=release_id,
            report_dir=report_dir,
            boundaries=boundaries,
        )
        # Apart, from each owner's records alone, as the owner's node controls them.
        for owner in dict.fromkeys(p.owner for p in spec.products if p.kind == LOCAL):
            assert owner is not None  # a local product has one
            controlled |= build_local(
                spec,
                owner,
                record_ids=[str(r) for r in encoded[owner].record_ids],
                values=derived[owner],
                releases=releases,
                release_id=release_id,
                report_dir=report_dir,
            )
    except BaseException:
        releases.drop(release_id)
        raise
    built = [controlled[p.id] for p in spec.products if p.kind not in RECORD_KINDS]
    provenance = Provenance(
        project=spec,
        fingerprint=project.fingerprint,
        release_id=release_id,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        federated=False,
    )
    made = [
        (b.product, write_product(b.product, Path(out_dir), provenance=provenance)) for b in built
    ]
    if made:
        write_dashboard(Path(out_dir), products=made, provenance=provenance)
    records = []
    for product in listed:
        write_decisions(product, report_dir, releases=releases, release_id=release_id)
        records.append((product, write_records(product, out_dir, record_column="record_id")))
    releases.record(release_id)
    return Analysis(
        release_id=release_id,
        products=made,
        held=[line for b in built for line in b.held],
        linked=linked,
        population=population,
        records=records,
    )
