"""One source's current records as the linked index sees them: record ids, CLKs, keyed tokens and,
with ``method = "fields"``, field evidence.

A record's *digest* is the SHA-256 of its CLK and keyed tokens. When a source sends a new extract,
a record whose id the index knows but whose digest differs has changed; the same digest means
the record is unchanged and is not matched again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from oda_fed.encoding.evidence import Evidence
from oda_fed.errors import InputDataError, ProjectMismatchError
from oda_fed.matching.candidates import check_clks

#: Separates the digest of this format from any other use of SHA-256 on the same bytes.
_DIGEST_CONTEXT = b"oda-fed index record v1\x00"

Token = bytes | str | None


@dataclass(frozen=True)
class Extract:
    """One source's records: ids, CLKs and keyed tokens (never raw values).

    Attributes
    ----------
    record_ids : sequence of str
        Unique within the source; the index keys records by ``(source, record_id)``.
    clks : numpy.ndarray
        Bit-packed ``uint64`` ``(n, words)``, C-contiguous, one row per record id.
    tokens : mapping of str to sequence, optional
        Keyed tokens of exact identifiers, field to one token (``bytes``, hex ``str`` or None)
        per record.

    Examples
    --------
    >>> clks = np.zeros((2, 16), dtype=np.uint64)
    >>> Extract(record_ids=["r1", "r2"], clks=clks).normalised("council").record_ids
    ['r1', 'r2']
    """

    record_ids: Sequence[str]
    clks: np.ndarray
    tokens: Mapping[str, Sequence[Token]] | None = None
    #: Field evidence for ``method = "fields"`` (:mod:`oda_fed.encoding.evidence`).
    evidence: Evidence | None = None

    def normalised(self, source: str, *, words: int | None = None) -> Records:
        """Check the extract and put it in the form the index stores.

        Raises
        ------
        InputDataError
            Lengths disagree, CLKs are malformed, or record ids repeat.
        ProjectMismatchError
            ``words`` is given and the CLKs have another width.
        """
        ids = [str(r) for r in self.record_ids]
        check_clks(self.clks, name=f"CLKs of source '{source}'")
        if len(ids) != len(self.clks):
            raise InputDataError(
                f"source '{source}': {len(ids)} record ids but {len(self.clks)} CLKs"
            )
        if words is not None and self.clks.shape[1] != words:
            raise ProjectMismatchError(
                f"source '{source}' has {self.clks.shape[1] * 64}-bit CLKs but the linked index "
                f"holds {words * 64}-bit ones; encode with the index's project"
            )
        _check_unique(ids, source=source)
        tokens: dict[str, list[str | None]] = {}
        for field, values in sorted((self.tokens or {}).items()):
            values = list(values)
            if len(values) != len(ids):
                raise InputDataError(
                    f"source '{source}': keyed tokens of '{field}' has {len(values)} entries for "
                    f"{len(ids)} records"
                )
            tokens[field] = [_hex(v) for v in values]
        ev = self.evidence
        if ev is not None and (ev.filters or ev.tokens) and len(ev) != len(ids):
            raise InputDataError(
                f"source '{source}': field evidence for {len(self.evidence)} records but "
                f"{len(ids)} record ids; encode the extract again"
            )
        return Records(
            source=source,
            record_ids=ids,
            clks=self.clks,
            tokens=tokens,
            digests=digests(self.clks, tokens),
            evidence=self.evidence,
        )


@dataclass(frozen=True)
class Records:
    """A checked extract: tokens as hex strings, with each record's digest."""

    source: str
    record_ids: list[str]
    clks: np.ndarray
    tokens: dict[str, list[str | None]]
    digests: list[str]
    evidence: Evidence | None = None

    def __len__(self) -> int:
        return len(self.record_ids)

    def subset(self, rows: Sequence[int]) -> Records:
        """The records at ``rows``, in that order."""
        take = np.asarray(rows, dtype=np.int64)
        return Records(
            source=self.source,
            record_ids=[self.record_ids[i] for i in take],
            clks=np.ascontiguousarray(self.clks[take]),
            tokens={f: [v[i] for i in take] for f, v in self.tokens.items()},
            digests=[self.digests[i] for i in take],
            evidence=None if self.evidence is None else self.evidence.take(take),
        )

    def clk_bytes(self, row: int) -> bytes:
        return self.clks[row].astype("<u8", copy=False).tobytes()


def _check_unique(ids: list[str], *, source: str) -> None:
    seen: set[str] = set()
    for row, record in enumerate(ids):
        if record in seen:
            # The row, not the id, goes in the message: ids stay out of messages everywhere.
            raise InputDataError(
                f"source '{source}': record ids must be unique; record {row + 1} repeats an "
                "earlier id"
            )
        seen.add(record)


def _hex(token: Token) -> str | None:
    if token is None:
        return None
    if isinstance(token, bytes | bytearray):
        return bytes(token).hex()
    return str(token)


def digests(clks: np.ndarray, tokens: Mapping[str, Sequence[str | None]]) -> list[str]:
    """SHA-256 (hex) of each record's CLK bytes and keyed tokens, fields in name order.

    Examples
    --------
    >>> one = np.ones((1, 2), dtype=np.uint64)
    >>> digests(one, {}) == digests(one.copy(), {})
    True
    >>> digests(one, {}) == digests(one, {"nhs": ["ab"]})
    False
    """
    raw = np.ascontiguousarray(clks.astype("<u8", copy=False))
    width = raw.shape[1] * 8
    flat = raw.view(np.uint8).reshape(len(raw), width) if len(raw) else raw
    fields = sorted(tokens)
    out = []
    for i in range(len(raw)):
        h = hashlib.sha256(_DIGEST_CONTEXT)
        h.update(flat[i].tobytes())
        for field in fields:
            token = tokens[field][i]
            # "-" marks a missing token; a hex token never equals it.
            h.update(f"\x00{field}\x00{'-' if token is None else token}".encode())
        out.append(h.hexdigest())
    return out
