"""Field-level evidence for probabilistic linkage: what a node computes besides the CLK.

The CLK (one Bloom filter per record) stays the blocking key. For field-aware linkage
(:mod:`oda_fed.matching.probabilistic`) a node also computes, per record:

- **field filters**: a small Bloom filter of each address and free-text field's bigrams, so
  the coordinator can compare fields one by one (a house move costs a little, a
  different date of birth a lot), and **one filter over all the name fields together** (the
  union of their bigrams, ``@names``).
- **keyed tokens**: 64-bit keyed hashes of parts of values that are compared for equality:
  the date of birth whole, as year and month, as month and day, and with day and month sorted
  (survives a day/month swap); the postcode's unit and sector; the names' phonetic codes
  (Metaphone, from ``jellyfish``, of a nickname's full name: "bob" sounds as "robert", by
  :func:`~oda_fed.standardise.names.canonical_given_name`) as the unordered set over the name
  fields (``@names:phonetic``); each name's phonetic code and initial with the date of birth and
  with the postcode, for blocking (``@names:born:<i>``, ``@names:born_initial:<i>``,
  ``@names:placed:<i>``, ``@names:placed_initial:<i>``); sex and identifiers whole.

Names are encoded together because a filter or token per name field gives 6-14 % of records a
name by frequency alignment, where the whole-record CLK gives none: a common family name makes a
common filter. Joined, a record's names are about as rare as the person, and swapped given and
family names still agree. Coarse tokens a frequency list reads directly (a year of birth, a
postcode district, initials) are not made. ``docs/hardening.md`` has the measurements.

Keys come from the linkage secret (HKDF, ``info = b"oda-fed/evidence/v2/" + token name``), so
only the partners can make or test them. What each encoding reveals to the coordinator, and how it is
hardened, is in ``docs/hardening.md``.

Missing values give an all-zero filter and token 0; a token that hashes to 0 is stored as 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from oda_fed.encoding.clk import ClkEncoder
from oda_fed.encoding.fields import FieldEncoding
from oda_fed.encoding.keys import derive_key
from oda_fed.errors import InputDataError
from oda_fed.standardise.names import canonical_given_name

#: Bits of each field filter. Field filters of 256 bits lost almost nothing against exact bigram
#: sets in the experiment behind issue 11.
FILTER_BITS = 256
EVIDENCE_INFO = b"oda-fed/evidence/v2/"
#: Bit positions set per bigram of a field filter. The names' filter holds two or three names'
#: bigrams and an address twenty or more: at 10 a bigram they fill half the filter or more, and
#: unrelated values look alike (random addresses had Dice >= 0.6 in 87 % of pairs, so a house
#: move and a typo were one level; ukpop-medium 100k F1 0.9732 at 10, 0.9767 at 4; names on
#: ukpop-high 0.9546 at 10, 0.9564 at 4).
FILTER_K = 4

#: Bytes a record of a token column (a 64-bit keyed hash) and of a filter column.
TOKEN_BYTES = 8
FILTER_BYTES = FILTER_BITS // 8

#: The evidence of all name fields together: its filter and its tokens' prefix. Not a valid field
#: name, so it never collides with one.
NAMES = "@names"
#: Tokens of each name's sound with the date of birth, one column per name field, sorted by
#: value within a record so no column is the given or the family name. For blocking only: they
#: find a person whose family name changed and who moved, and each is about as rare as a person.
BORN = f"{NAMES}:born"
#: The same with each name's initial: finds a person who moved and whose names were misspelt.
BORN_INITIAL = f"{NAMES}:born_initial"
#: Each name's sound, and its initial, with the postcode (the first postcode field), likewise:
#: they find a person who did not move but whose date of birth is missing or mistyped and one
#: of whose names changed (ukpop 1M x 1M: a quarter of the matches no other rule found), and
#: each is about as rare as a household.
PLACED = f"{NAMES}:placed"
PLACED_INITIAL = f"{NAMES}:placed_initial"

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

    def rows(self, layout: Layout) -> list[bytes]:
        """Each record's columns of ``layout``, one after the other, as one value: how the
        linked index stores a record's evidence beside its CLK."""
        matrix = np.hstack(
            [np.empty((len(self), 0), np.uint8)]
            + [
                np.ascontiguousarray(c.astype("<u8", copy=False)).view(np.uint8).reshape(-1, w)
                for c, w in ((self._column(name, width), width) for name, width in layout)
            ]
        )
        return [row.tobytes() for row in matrix]

    @staticmethod
    def from_rows(layout: Layout, rows: Sequence[bytes]) -> Evidence:
        """The evidence of records stored by :meth:`rows`, in order."""
        width = sum(w for _, w in layout)
        if any(len(r) != width for r in rows):
            raise ValueError(f"stored evidence rows must hold {width} bytes each")
        matrix = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), width)
        columns, at = {}, 0
        for name, w in layout:
            part = np.ascontiguousarray(matrix[:, at : at + w]).view("<u8").astype(np.uint64)
            columns[name] = part if w == FILTER_BYTES else part.reshape(-1)
            at += w
        return Evidence(
            filters={n: columns[n] for n, w in layout if w == FILTER_BYTES},
            tokens={n: columns[n] for n, w in layout if w == TOKEN_BYTES},
        )

    def _column(self, name: str, width: int) -> np.ndarray:
        return self.filters[name] if width == FILTER_BYTES else self.tokens[name].reshape(-1, 1)

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
    """The sound of a name's first word, a nickname first made its full name ("bob" sounds
    as "robert")."""
    import jellyfish

    return jellyfish.metaphone(canonical_given_name(value.split()[0])) if value.strip() else ""


#: Parts of a value that become tokens, per field type: (part name, value -> part or "").
_DOB_PARTS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("ymd", lambda v: v),
    ("ym", lambda v: v[:7]),
    ("md", lambda v: v[5:]),
    # Day and month sorted: 1980-02-01 and 1980-01-02 agree, a swap the data entry made (and
    # 1980-31-12, kept by on_invalid = "keep", agrees with 1980-12-31).
    ("swap", lambda v: v[:4] + "-" + "-".join(sorted((v[5:7], v[8:10])))),
)
_POSTCODE_PARTS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("unit", lambda v: v),
    ("sector", lambda v: v[:-2] if " " in v else ""),
)


def _initial(value: str) -> str:
    return value[:1]


#: The families of one name's part with another field's value: (family, the part of each name,
#: the type of the field whose value goes with it).
_ANCHORED: tuple[tuple[str, Callable[[str], str], str], ...] = (
    (BORN, _metaphone, "date_of_birth"),
    (BORN_INITIAL, _initial, "date_of_birth"),
    (PLACED, _metaphone, "postcode"),
    (PLACED_INITIAL, _initial, "postcode"),
)

#: Parts of the name fields that become one token each, over the unordered set of names.
_NAME_PARTS: tuple[tuple[str, Callable[[str], str]], ...] = (("phonetic", _metaphone),)
_WHOLE: tuple[tuple[str, Callable[[str], str]], ...] = (("value", lambda v: v),)

_TOKEN_PARTS: dict[str, tuple[tuple[str, Callable[[str], str]], ...]] = {
    "date_of_birth": _DOB_PARTS,
    "postcode": _POSTCODE_PARTS,
    "sex": _WHOLE,
    "nhs_number": _WHOLE,
    "uprn": _WHOLE,
}
#: Fields sent as filters. A postcode is compared by its tokens (unit, sector) alone, so no
#: filter of it leaves the node.
_FILTERED = frozenset({"address", "free_text"})


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
    """The filters and tokens :class:`EvidenceEncoder` makes for ``fields``, in order: the
    names' first when there are name fields."""
    names = sum(f.type == "name" for f in fields)
    filters = [NAMES] * bool(names) + [f.name for f in fields if f.type in _FILTERED]
    tokens = [f"{NAMES}:{part}" for part, _ in _NAME_PARTS if names]
    types = {f.type for f in fields}
    tokens += [f"{family}:{i}" for family, _, kind in _ANCHORED if kind in types
               for i in range(names)]  # fmt: skip
    tokens += [f"{f.name}:{part}" for f in fields for part, _ in _TOKEN_PARTS.get(f.type, ())]
    return filters, tokens


def evidence_layout(fields: Sequence[_Field]) -> Layout:
    """The columns of field evidence for ``fields`` as the wire carries them: (name, bytes a
    record), filters first, then tokens, each in field order.

    Examples
    --------
    >>> from oda_fed.encoding.fields import default_field_encoding as f
    >>> evidence_layout([f("surname", "name"), f("sex", "sex")])
    [('@names', 32), ('@names:phonetic', 8), ('sex:value', 8)]
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
    >>> enc = EvidenceEncoder([f("first_name", "name"), f("last_name", "name"),
    ...                        f("dob", "date_of_birth")], secret=b"s" * 32, context="demo")
    >>> ev = enc.encode({"first_name": ["john", "smith"], "last_name": ["smith", "john"],
    ...                  "dob": ["1980-02-01", "1980-01-02"]})
    >>> sorted(ev.filters), bool((ev.filters["@names"][0] == ev.filters["@names"][1]).all())
    (['@names'], True)
    >>> bool(ev.tokens["dob:swap"][0] == ev.tokens["dob:swap"][1])
    True
    """

    def __init__(self, fields: Sequence[FieldEncoding], *, secret: bytes, context: str) -> None:
        self.fields = list(fields)
        self._names = [f.name for f in self.fields if f.type == "name"]
        filtered = [(NAMES, "name")] * bool(self._names)
        filtered += [(f.name, f.type) for f in fields if f.type in _FILTERED]
        self._filters = {
            name: ClkEncoder(
                [FieldEncoding(name, kind, ngram=2, bits_per_token=FILTER_K)],
                secret=secret,
                context=f"{context}/evidence",
                bits=FILTER_BITS,
            )
            for name, kind in filtered
        }
        _, tokens = evidence_names(self.fields)
        self._keys = {
            token: derive_key(secret, context=context, info=EVIDENCE_INFO + token.encode("utf-8"))
            for token in [*tokens, *(family for family, _, _ in _ANCHORED)]
        }
        self._anchors = {
            family: next((f.name for f in self.fields if f.type == kind), None)
            for family, _, kind in _ANCHORED
        }

    def encode(self, table: Mapping[str, Sequence[str | None]]) -> Evidence:
        """The evidence of one chunk (field name -> standardised values, all one length)."""
        lengths = {len(table[f.name]) for f in self.fields if f.name in table}
        missing = [f.name for f in self.fields if f.name not in table]
        if missing or len(lengths) > 1:
            raise InputDataError(f"evidence needs one column per field of one length: {missing}")
        filters = {}
        for name, encoder in self._filters.items():
            if name == NAMES:
                # The union of every name field's bigrams: each under the one names key, OR-ed.
                each = [encoder.encode({NAMES: list(table[n])}) for n in self._names]
                filters[name] = np.bitwise_or.reduce(each) if len(each) > 1 else each[0]
            else:
                filters[name] = encoder.encode({name: list(table[name])})
        coded = {
            f.name: _coded(table[f.name])
            for f in self.fields
            if f.type == "name" or f.type in _TOKEN_PARTS
        }
        cuts: dict[tuple[str, Callable[[str], str]], _Coded] = {}

        def cut_of(field: str, cut: Callable[[str], str]) -> _Coded:
            # The names' sounds serve both the phonetic and the born tokens: cut them once.
            if (field, cut) not in cuts:
                cuts[field, cut] = _cut(coded[field], cut)
            return cuts[field, cut]

        tokens = {}
        for part, cut in _NAME_PARTS:
            if self._names:
                joined = _joined([cut_of(n, cut) for n in self._names], _unordered)
                tokens[f"{NAMES}:{part}"] = _hashed(joined, key=self._keys[f"{NAMES}:{part}"])
        for family, cut, _ in _ANCHORED:
            anchor = self._anchors[family]
            if not self._names or anchor is None:
                continue
            # Each name's part with the anchor's value, largest token first.
            each = [
                _hashed(
                    _joined([coded[anchor], cut_of(n, cut)], _pair),
                    key=self._keys[family],
                )
                for n in self._names
            ]
            ordered = np.sort(np.vstack(each), axis=0)[::-1]
            tokens.update(
                {f"{family}:{i}": np.ascontiguousarray(ordered[i]) for i in range(len(each))}
            )
        for field in self.fields:
            for part, cut in _TOKEN_PARTS.get(field.type, ()):
                name = f"{field.name}:{part}"
                tokens[name] = _hashed(cut_of(field.name, cut), key=self._keys[name])
        return Evidence(filters=filters, tokens=tokens)


#: A column as ``(codes, distinct)``: row ``i`` holds ``distinct[codes[i]]`` (an object array of
#: str), "" where missing. Parts are cut, joined and hashed once per distinct value, not per record.
_Coded = tuple[np.ndarray, np.ndarray]


def _coded(values: Sequence[str | None]) -> _Coded:
    codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), use_na_sentinel=True)
    distinct = [value if isinstance(value, str) else "" for value in uniques.tolist()]
    return np.where(codes >= 0, codes, len(distinct)), np.array([*distinct, ""], dtype=object)


def _cut(column: _Coded, cut: Callable[[str], str]) -> _Coded:
    """``cut`` of each distinct value ("" stays ""), the parts made distinct again."""
    codes, distinct = column
    parts = np.array([cut(value) if value else "" for value in distinct.tolist()], dtype=object)
    part_codes, uniques = pd.factorize(parts)
    return part_codes[codes], np.asarray(uniques, dtype=object)


def _joined(columns: Sequence[_Coded], join: Callable[..., Sequence[str]]) -> _Coded:
    """Each row's values of ``columns`` made one by ``join`` (given one array of values per
    column), once per distinct combination."""
    combined = np.zeros(len(columns[0][0]), dtype=np.int64)
    for codes, distinct in columns:
        combined = pd.factorize(combined * len(distinct) + codes)[0]
    _, first = np.unique(combined, return_index=True)
    joined = join(*(distinct[codes[first]] for codes, distinct in columns))
    return combined, np.asarray(joined, dtype=object)


def _unordered(*columns: np.ndarray) -> list[str]:
    """Per row, its values that are not "", sorted and joined: the same for swapped names."""
    return ["\x1f".join(sorted(v for v in values if v)) for values in zip(*columns, strict=True)]


def _pair(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per row, both values joined, or "" when either is missing."""
    return np.where((first == "") | (second == ""), "", first + "\x1f" + second)


def _hashed(column: _Coded, *, key: bytes) -> np.ndarray:
    """Keyed 64-bit tokens of each row's value; 0 for "", and 1 for a value that hashes to 0."""
    codes, distinct = column
    # Copying the keyed state skips hashing the key block for each value: half the time.
    keyed = hashlib.blake2b(key=key, digest_size=8)
    digests = []
    for value in distinct.tolist():
        state = keyed.copy()
        state.update(value.encode("utf-8"))
        digests.append(state.digest())
    hashed = np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64)
    hashed[hashed == 0] = 1
    hashed[distinct == ""] = 0
    return hashed[codes]
