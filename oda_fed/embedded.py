"""Embedded mode: every role in one process, no network, for trying oda-fed on files.

Each file is read, standardised and encoded as a node does (:func:`oda_fed.node.encode.encode_file`),
then linked by the one linkage run the coordinator uses (:func:`oda_fed.linkage.run_linkage`), so
the results agree with what a federated round would find for the same inputs and settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from oda_fed.config import LoadedProject
from oda_fed.errors import InputDataError
from oda_fed.index import Extract, LinkedIndex
from oda_fed.linkage import IndexTarget, LinkResult, run_linkage, settings_for
from oda_fed.node.encode import EncodedSource, encode_file
from oda_fed.node.sources import layout_for

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
) -> LinkResult:
    """Link the records of CSV files, afresh or into a linked index file.

    A file's stem names its source. When the stem is a partner id in the project, that partner's
    agreed column layout applies; otherwise columns must be named after the project's fields, and
    the record id column is ``record_id``. ``on_invalid`` is ``"error"`` (stop at the first
    malformed value, naming its row and column) or ``"missing"`` (count malformed values as
    missing).

    Without ``index`` the files are linked afresh and entities are numbered ``e0000001``… in
    resolution order. With ``index``, the linked index at that path is created, or updated source
    by source in the order given: unchanged records keep their entity ids and are not matched
    again, new and changed records are matched against the other sources' records, and records
    missing from a file are removed (:class:`oda_fed.index.LinkedIndex`). ``rebuild`` links
    everything again, carrying old entity ids over by largest overlap. Sources the index holds but
    ``paths`` leaves out keep their records.

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
    words = project.project.linkage.wire_bits // 64
    target = None
    if index is not None:
        target = IndexTarget(
            path=Path(index), fingerprint=project.fingerprint, words=words, rebuild=rebuild
        )
        if target.path.exists():
            # A wrong index fails here, before minutes of encoding; it is not changed.
            LinkedIndex.open(target.path, fingerprint=target.fingerprint, words=words).close()
    elif len(paths) < 2:
        raise InputDataError("give at least two CSV files to link")
    extracts = encode_files(
        paths, project=project, secret=secret, on_invalid=on_invalid, progress=progress
    )
    return run_linkage(
        extracts,
        settings=settings_for(project.project.linkage),
        index=target,
        entity_ids="numbered",
        progress=progress,
    )


def encode_files(
    paths: Sequence[Path],
    *,
    project: LoadedProject,
    secret: bytes,
    on_invalid: str = "error",
    progress: Progress | None = None,
) -> dict[str, Extract]:
    """Each file's records encoded with its partner's layout, keyed by the file's stem."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise InputDataError(
            "input files must have different names; the name identifies the source"
        )
    out = {}
    for path, stem in zip(paths, stems, strict=True):
        if progress is not None:
            progress(f"standardising and encoding {Path(path).name}")
        encoded = encode_file(
            Path(path),
            project=project.project,
            layout=replace(layout_for(project.project, stem), on_invalid=on_invalid),
            secret=secret,
        )
        out[stem] = extract_of(encoded)
    return out


def extract_of(encoded: EncodedSource) -> Extract:
    """An encoded file as linkage takes it: record ids, CLKs and keyed tokens."""
    return Extract(
        record_ids=[str(r) for r in encoded.record_ids],
        clks=encoded.clks,
        tokens=encoded.tokens or None,
    )
