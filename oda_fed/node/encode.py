"""Turn a partner's records into CLKs with the project's encoding and the linkage secret.

Files are read, standardised and encoded a chunk at a time, so memory holds one chunk of raw values
plus the compact results (128 bytes of CLK per record at 1024 bits), whatever the file's size.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oda_fed.encoding import (
    FieldEncoding,
    default_field_encoding,
    encode_records,
)
from oda_fed.encoding.evidence import Evidence, EvidenceEncoder
from oda_fed.encoding.exact import derive_token_key, exact_tokens
from oda_fed.encoding.hardening import Hardening, harden, salts_for
from oda_fed.encoding.kernels import use_jit_for
from oda_fed.node.encoded import FORMATS, Progress
from oda_fed.node.encoded import EncodedSource as EncodedSource
from oda_fed.node.encoded import encode_clkhash_file as encode_clkhash_file
from oda_fed.node.sources import Layout, PreparedSource, count_rows, iter_prepared

if TYPE_CHECKING:
    from oda_fed.config import Project


def field_encodings(project: Project) -> list[FieldEncoding]:
    """The project's linkage fields with each type's defaults filled in."""
    out = []
    for field in project.linkage.fields:
        enc = default_field_encoding(field.name, field.type, weight=field.weight)
        if field.ngram is not None:
            enc = replace(enc, ngram=field.ngram)
        if field.bits_per_token is not None:
            enc = replace(enc, bits_per_token=field.bits_per_token)
        out.append(enc)
    return out


def hardening(project: Project) -> Hardening | None:
    """The project's hardening options, or None when all are off."""
    options = project.linkage.hardening
    chosen = Hardening(**options.model_dump())
    return None if chosen == Hardening() else chosen


def encode_source(
    source: PreparedSource, *, project: Project, secret: bytes, harden_clks: bool = True
) -> np.ndarray:
    """CLKs for every record of ``source``, in file order (``uint64``, ``(n, wire_bits // 64)``).

    With the project's hardening applied (salted tokens at encoding, then the post-encoding
    options), unless ``harden_clks`` is False, which gives the plain filter (for fill checks).
    """
    chosen = hardening(project) if harden_clks else None
    salted = {}
    if chosen is not None and chosen.salt_field is not None:
        salted["salts"] = salts_for(source.fields[chosen.salt_field], hardening=chosen)
    clks = encode_records(
        source.fields,
        fields=field_encodings(project),
        secret=secret,
        context=project.name,
        bits=project.linkage.bits,
        **salted,
    )
    if chosen is None:
        return clks
    return harden(clks, hardening=chosen, secret=secret, context=project.name)


def encode_file(
    path: Path,
    *,
    project: Project,
    layout: Layout,
    secret: bytes,
    chunk_rows: int = 100_000,
    progress: Progress | None = None,
) -> EncodedSource:
    """Read, standardise and encode ``path`` a chunk at a time.

    Raises
    ------
    InputDataError
        As :func:`oda_fed.node.sources.iter_prepared`; nothing is returned or written.

    Examples
    --------
    >>> enc = encode_file(Path("council.csv"), project=project, layout=layout,
    ...                   secret=secret)  # doctest: +SKIP
    >>> enc.clks.shape  # doctest: +SKIP
    (2105, 16)
    """
    total = count_rows(path, layout.read) if progress is not None else 0
    use_jit_for(total)  # the Numba kernels for a count of JIT_ROWS or more
    ids, clks = [], []
    attributes: dict[str, list[str]] = {a: [] for a in layout.attributes}
    missing = {f.name: 0 for f in project.linkage.fields}
    invalid = dict(missing)
    keys = {
        f.name: derive_token_key(secret, context=project.name, field=f.name)
        for f in project.linkage.fields
        if f.keyed_token
    }
    tokens: dict[str, list[bytes | None]] = {name: [] for name in keys}
    evidence = evidence_encoder(project, secret)
    found: list[Evidence] = []
    done = 0
    for chunk in iter_prepared(path, project=project, layout=layout, chunk_rows=chunk_rows):
        ids.append(chunk.record_ids)
        clks.append(encode_source(chunk, project=project, secret=secret))
        if evidence is not None:
            found.append(evidence.encode(chunk.fields))
        for name, values in chunk.attributes.items():
            attributes[name].extend(values)
        for name, key in keys.items():
            tokens[name].extend(exact_tokens(chunk.fields[name], key=key))
        for name in missing:
            missing[name] += chunk.missing[name]
            invalid[name] += chunk.invalid[name]
        done += len(chunk)
        if progress is not None:
            progress(done, max(total, done))
    words = project.linkage.wire_bits // 64
    return EncodedSource(
        path=Path(path),
        clks=np.concatenate(clks) if clks else np.zeros((0, words), dtype=np.uint64),
        attributes=attributes,
        missing=missing,
        invalid=invalid,
        tokens=tokens,
        evidence=None if evidence is None else Evidence.concat(found),
        ids=np.concatenate(ids) if ids else np.empty(0, dtype=object),
    )


def evidence_encoder(project: Project, secret: bytes) -> EvidenceEncoder | None:
    """The field evidence encoder of a project that links with ``method = "fields"``."""
    if project.linkage.method != "fields":
        return None
    return EvidenceEncoder(field_encodings(project), secret=secret, context=project.name)


def write_encoded(encoded: EncodedSource, out: Path, *, fmt: str) -> Path:
    """Write CLKs as ``npy`` (the bare uint64 array, file order) or ``arrow`` (an Arrow IPC file
    with ``record_id`` and ``clk`` (fixed-size binary, our bit layout) columns). Atomic."""
    from oda_fed.durable import write_atomic

    if fmt == "npy":
        return write_atomic(out, lambda tmp: np.save(tmp, encoded.clks))
    if fmt == "arrow":
        import pyarrow as pa
        import pyarrow.feather as feather

        width = encoded.clks.shape[1] * 8
        data = np.ascontiguousarray(encoded.clks.astype("<u8", copy=False)).view(np.uint8).ravel()
        clk = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), len(encoded), [None, pa.py_buffer(data.tobytes())]
        )
        table = pa.table(
            {"record_id": pa.array(encoded.record_ids.tolist(), pa.string()), "clk": clk}
        )
        return write_atomic(out, lambda tmp: feather.write_feather(table, tmp, compression="lz4"))
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
