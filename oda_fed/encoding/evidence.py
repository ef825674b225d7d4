"""Field-level evidence for probabilistic linkage: what a node computes besides the CLK.

The CLK (one Bloom filter per record) stays the blocking key. For field-aware linkage
(:mod:`oda_fed.matching.probabilistic`) a node also computes, per record:

- **field filters**: a small Bloom filter of each name, address and postcode field's bigrams,
  so the coordinator can compare fields one by one (a house move costs a little, a different
  surname a lot). All name fields share one key and one token namespace, so a given name can be
  compared with a family name: swapped names are recognised.
- **keyed tokens**: 64-bit keyed hashes of parts of values that are compared for equality:
  the date of birth whole, as year and month, year alone, month and day, and with day and month
  sorted (survives a day/month swap); the postcode's unit, sector and district; a name's
  phonetic code (Metaphone, from ``jellyfish``) and first initial; sex and identifiers whole.

Keys come from the linkage secret (HKDF, ``info = b"oda-fed/evidence/v1/" + kind``), so only the
partners can make or test them. What each encoding reveals to the coordinator, and how it is
hardened, is in ``docs/hardening.md``.

Missing values give an all-zero filter and token 0; a token that hashes to 0 is stored as 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from oda_fed.encoding.clk import ClkEncoder
from oda_fed.encoding.fields import FieldEncoding
from oda_fed.encoding.keys import derive_key
from oda_fed.errors import InputDataError

#: Bits of each field filter. Field filters of 256 bits lost almost nothing against exact bigram
#: sets in the experiment behind issue 11.
FILTER_BITS = 256
EVIDENCE_INFO = b"oda-fed/evidence/v1/"
#: Bit positions set per bigram of a field filter: a six-bigram name sets about 60 of 256.
FILTER_K = 10

#: Bytes a record of a token column (a 64-bit keyed hash) and of a filter column.
TOKEN_BYTES = 8
FILTER_BYTES = FILTER_BITS // 8

#: Every name field is encoded under this one key and token namespace (see the module doc).
_NAMES = "name"


#: The columns of field evidence: (name, bytes a record), in wire order.
Layout = Sequence[tuple[str, int]]


@dataclass(frozen=True)
class Evidence:
    """One source's field evidence, in record order.

    Attributes
    ----------
    filters : mapping of str to numpy.ndarray
        Filter name (the project field) to ``uint64[n, FILTER_BITS // 64]``.
    tokens : mapping of str to numpy.ndarray
        Token name (``field:part``) to ``uint64[n]``; 0 where the value is missing.
    """

    filters: Mapping[str, np.ndarray]
    tokens: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        for column in (*self.filters.values(), *self.tokens.values()):
            return len(column)
        return 0

    def take(self, order: np.ndarray) -> Evidence:
        """The evidence of records ``order`` (a permutation or a selection), in that order."""
        return Evidence(
            filters={k: np.ascontiguousarray(v[order]) for k, v in self.filters.items()},
            tokens={k: np.ascontiguousarray(v[order]) for k, v in self.tokens.items()},
        )

    def columns(self, layout: Layout, start: int, stop: int) -> list[tuple[str, bytes]]:
        """Records ``start:stop`` as the wire carries them: (name, little-endian bytes) per column
        of ``layout``, in its order."""
        out = []
        for name, width in layout:
            column = self.filters[name] if width == FILTER_BYTES else self.tokens[name]
            out.append((name, column[start:stop].astype("<u8", copy=False).tobytes()))
        return out

    @staticmethod
    def from_blobs(layout: Layout, blobs: Sequence[tuple[bytes, int]]) -> Evidence:
        """The evidence of stored chunks, each (its columns' bytes one after the other in
        ``layout`` order, its number of records), in order."""
        parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in layout}
        for blob, records in blobs:
            at = 0
            for name, width in layout:
                size = records * width
                words = np.frombuffer(blob, dtype="<u8", count=size // 8, offset=at)
                parts[name].append(words.astype(np.uint64).reshape(records, width // 8))
                at += size
            if at != len(blob):
                raise ValueError(f"stored evidence holds {len(blob)} bytes, expected {at}")
        joined = {
            name: np.concatenate(parts[name])
            if parts[name]
            else np.zeros((0, width // 8), np.uint64)
            for name, width in layout
        }
        return Evidence(
            filters={n: joined[n] for n, w in layout if w == FILTER_BYTES},
            tokens={n: joined[n].reshape(-1) for n, w in layout if w == TOKEN_BYTES},
        )

    @staticmethod
    def concat(parts: Sequence[Evidence]) -> Evidence:
        """The evidence of consecutive chunks as one."""
        if not parts:
            return Evidence({}, {})
        first = parts[0]
        return Evidence(
            filters={k: np.concatenate([p.filters[k] for p in parts]) for k in first.filters},
            tokens={k: np.concatenate([p.tokens[k] for p in parts]) for k in first.tokens},
        )


def _metaphone(value: str) -> str:
    import jellyfish

    return jellyfish.metaphone(value.split()[0]) if value.strip() else ""


#: Parts of a value that become tokens, per field type: (part name, value -> part or "").
_DOB_PARTS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("ymd", lambda v: v),
    ("ym", lambda v: v[:7]),
    ("y", lambda v: v[:4]),
    ("md", lambda v: v[5:]),
    # Day and month sorted: 1980-02-01 and 1980-01-02 agree, a swap the data entry made (and
    # 1980-31-12, kept by on_invalid = "keep", agrees with 1980-12-31).
    ("swap", lambda v: v[:4] + "-" + "-".join(sorted((v[5:7], v[8:10])))),
)
_POSTCODE_PARTS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("unit", lambda v: v),
    ("sector", lambda v: v[:-2] if " " in v else ""),
    ("district", lambda v: v.split(" ")[0]),
)
_NAME_PARTS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("phonetic", _metaphone),
    ("initial", lambda v: v[:1]),
)
_WHOLE: tuple[tuple[str, Callable[[str], str]], ...] = (("value", lambda v: v),)

_TOKEN_PARTS: dict[str, tuple[tuple[str, Callable[[str], str]], ...]] = {
    "date_of_birth": _DOB_PARTS,
    "postcode": _POSTCODE_PARTS,
    "name": _NAME_PARTS,
    "sex": _WHOLE,
    "nhs_number": _WHOLE,
    "uprn": _WHOLE,
}
_FILTERED = frozenset({"name", "address", "postcode", "free_text"})


class _Field(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...


class _Linkage(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def fields(self) -> Sequence[_Field]: ...


def evidence_names(fields: Sequence[_Field]) -> tuple[list[str], list[str]]:
    """The filters and tokens :class:`EvidenceEncoder` makes for ``fields``, in order."""
    filters = [f.name for f in fields if f.type in _FILTERED]
    tokens = [f"{f.name}:{part}" for f in fields for part, _ in _TOKEN_PARTS.get(f.type, ())]
    return filters, tokens


def evidence_layout(fields: Sequence[_Field]) -> Layout:
    """The columns of field evidence for ``fields`` as the wire carries them: (name, bytes a
    record), filters first, then tokens, each in field order.

    Examples
    --------
    >>> from oda_fed.encoding.fields import default_field_encoding as f
    >>> evidence_layout([f("surname", "name"), f("sex", "sex")])
    [('surname', 32), ('surname:phonetic', 8), ('surname:initial', 8), ('sex:value', 8)]
    """
    filters, tokens = evidence_names(fields)
    return [(f, FILTER_BYTES) for f in filters] + [(t, TOKEN_BYTES) for t in tokens]


def linkage_layout(linkage: _Linkage) -> Layout:
    """The evidence a project's ``[linkage]`` has its nodes send: none unless it links with
    ``method = "fields"``."""
    return evidence_layout(linkage.fields) if linkage.method == "fields" else []


class EvidenceEncoder:
    """Computes :class:`Evidence` for chunks of standardised records.

    Parameters
    ----------
    fields
        The project's linkage fields.
    secret
        The partners' linkage secret.
    context
        The project name.

    Examples
    --------
    >>> from oda_fed.encoding.fields import default_field_encoding as f
    >>> enc = EvidenceEncoder([f("first_name", "name"), f("dob", "date_of_birth")],
    ...                       secret=b"s" * 32, context="demo")
    >>> ev = enc.encode({"first_name": ["john", None], "dob": ["1980-02-01", "1980-01-02"]})
    >>> sorted(ev.filters), ev.tokens["dob:swap"][0] == ev.tokens["dob:swap"][1]
    (['first_name'], True)
    """

    def __init__(self, fields: Sequence[FieldEncoding], *, secret: bytes, context: str) -> None:
        self.fields = list(fields)
        evidence = f"{context}/evidence"
        names = FieldEncoding(_NAMES, "name", ngram=2, bits_per_token=FILTER_K)
        self._filters: dict[str, ClkEncoder] = {}
        for field in self.fields:
            if field.type not in _FILTERED:
                continue
            shared = (
                names
                if field.type == "name"
                else FieldEncoding(field.name, field.type, ngram=2, bits_per_token=FILTER_K)
            )
            self._filters[field.name] = ClkEncoder(
                [shared], secret=secret, context=evidence, bits=FILTER_BITS
            )
        self._keys: dict[str, bytes] = {}
        for field in self.fields:
            for part, _ in _TOKEN_PARTS.get(field.type, ()):
                # Name parts share a key across name fields, so they compare across them too.
                kind = f"name:{part}" if field.type == "name" else f"{field.name}:{part}"
                self._keys[f"{field.name}:{part}"] = derive_key(
                    secret, context=context, info=EVIDENCE_INFO + kind.encode("utf-8")
                )

    def encode(self, table: Mapping[str, Sequence[str | None]]) -> Evidence:
        """The evidence of one chunk (field name -> standardised values, all one length)."""
        lengths = {len(table[f.name]) for f in self.fields if f.name in table}
        missing = [f.name for f in self.fields if f.name not in table]
        if missing or len(lengths) > 1:
            raise InputDataError(f"evidence needs one column per field of one length: {missing}")
        filters = {}
        for name, encoder in self._filters.items():
            key = _NAMES if encoder.fields[0].name == _NAMES else name
            filters[name] = encoder.encode({key: list(table[name])})
        tokens = {}
        for field in self.fields:
            for part, cut in _TOKEN_PARTS.get(field.type, ()):
                name = f"{field.name}:{part}"
                tokens[name] = _tokens(table[field.name], cut, key=self._keys[name])
        return Evidence(filters=filters, tokens=tokens)


def _tokens(values: Sequence[str | None], cut: Callable[[str], str], *, key: bytes) -> np.ndarray:
    """Keyed 64-bit tokens of ``cut(value)``, each distinct value hashed once; 0 if missing."""
    import hashlib

    codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), use_na_sentinel=True)
    hashed = np.zeros(len(uniques) + 1, dtype=np.uint64)  # the last slot: missing
    for i, value in enumerate(uniques):
        part = cut(value) if isinstance(value, str) and value else ""
        if not part:
            continue
        digest = hashlib.blake2b(part.encode("utf-8"), key=key, digest_size=8).digest()
        hashed[i] = int.from_bytes(digest, "little") or 1
    return hashed[np.where(codes >= 0, codes, len(uniques))]
