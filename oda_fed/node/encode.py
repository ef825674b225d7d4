"""Turn a partner's prepared records into CLKs with the project's encoding and the linkage secret."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from oda_fed.config import Project
from oda_fed.encoding import FieldEncoding, default_field_encoding, encode_records
from oda_fed.node.sources import PreparedSource


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


def encode_source(source: PreparedSource, *, project: Project, secret: bytes) -> np.ndarray:
    """CLKs for every record of ``source``, in file order (``uint64``, shape ``(n, bits // 64)``)."""
    return encode_records(
        source.fields,
        fields=field_encodings(project),
        secret=secret,
        context=project.name,
        bits=project.linkage.bits,
    )
