"""What a CLK chunk must carry before the coordinator stores it, and how its extras are stored.

Each check returns why a chunk cannot be accepted, or ``""``; the handler refuses the chunk with
that reason (INVALID_ARGUMENT) before anything is stored or logged as received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from oda_fed.coordinator.chunks import RECORD_KEY_BYTES
from oda_fed.transport.messages import token_blob as stored_tokens
from oda_fed.transport.protocol import CHUNK_RECORDS


class TokenColumn(Protocol):
    """One keyed-token column of a chunk, as the generated ``TokenColumn`` has it."""

    @property
    def field(self) -> str: ...

    @property
    def values(self) -> Sequence[bytes]: ...


class EvidenceColumn(Protocol):
    """One column of field evidence of a chunk, as the generated ``EvidenceColumn`` has it."""

    @property
    def name(self) -> str: ...

    @property
    def data(self) -> bytes: ...


class ClkChunk(Protocol):
    """The fields of a CLK chunk the checks read; the generated ``ClkChunk`` has them all, and
    the checks need no generated code (or server) to be tested."""

    @property
    def chunk_index(self) -> int: ...

    @property
    def total_chunks(self) -> int: ...

    @property
    def first_ref(self) -> int: ...

    @property
    def records(self) -> int: ...

    @property
    def total_records(self) -> int: ...

    @property
    def clk_bits(self) -> int: ...

    @property
    def clks(self) -> bytes: ...

    @property
    def tokens(self) -> Sequence[TokenColumn]: ...

    @property
    def record_keys(self) -> Sequence[bytes]: ...

    @property
    def evidence(self) -> Sequence[EvidenceColumn]: ...


def clk_chunk_problem(chunk: ClkChunk, bits: int, *, max_records: int = 10_000_000) -> str:
    """Why a CLK chunk cannot be accepted, or '' when it is well formed and within the quota
    the project gives its partner (``max_records``)."""
    if chunk.total_records > max_records:
        return (
            f"the upload declares {chunk.total_records} records; the project allows this "
            f"partner at most {max_records} (max_records)"
        )
    if chunk.records > CHUNK_RECORDS or chunk.total_chunks > max(1, chunk.total_records):
        return (
            f"chunk {chunk.chunk_index} is cut wrongly: at most {CHUNK_RECORDS} records a chunk, "
            "and no more chunks than records"
        )
    if chunk.clk_bits != bits:
        return (
            f"CLKs are {chunk.clk_bits} bits long but the project uses {bits}-bit CLKs; "
            "encode with the project's settings"
        )
    if chunk.records == 0:
        return f"chunk {chunk.chunk_index} declares no records"
    if len(chunk.clks) != chunk.records * bits // 8:
        return (
            f"chunk {chunk.chunk_index} holds {len(chunk.clks)} bytes, but {chunk.records} CLKs "
            f"of {bits} bits need {chunk.records * bits // 8}; the upload was truncated or "
            "encoded with other settings"
        )
    if chunk.chunk_index >= chunk.total_chunks:
        return (
            f"chunk index {chunk.chunk_index} is not below the declared total {chunk.total_chunks}"
        )
    if chunk.first_ref + chunk.records > chunk.total_records:
        return "chunk refs run past the declared total number of records"
    return ""


def token_problem(chunk: ClkChunk, keyed: frozenset[str]) -> str:
    """Why a chunk's keyed tokens cannot be accepted, or '' when they are what the project agreed."""
    got = [c.field for c in chunk.tokens]
    if sorted(got) != sorted(keyed):
        return (
            f"the project agrees keyed tokens for {sorted(keyed) or 'no fields'}, but the chunk "
            f"carries {got or 'none'}; encode with the signed project"
        )
    for column in chunk.tokens:
        if len(column.values) != chunk.records:
            return (
                f"keyed tokens for '{column.field}': {len(column.values)} for {chunk.records} CLKs"
            )
        if any(len(v) not in (0, 32) for v in column.values):
            return f"keyed tokens for '{column.field}' must be 32-byte HMAC-SHA256 digests"
    return ""


def token_blob(chunk: ClkChunk) -> bytes | None:
    return stored_tokens(chunk.tokens)


def record_key_problem(chunk: ClkChunk, *, stable: bool) -> str:
    """Why a chunk's record keys cannot be accepted, or '' when they are what the project agreed.

    A project with ``stable_entity_ids`` needs one 32-byte record key per record; any other project
    must receive none, because record keys let the coordinator follow records across rounds and
    only a project the DPOs signed with that option allows it.
    """
    got = len(chunk.record_keys)
    if not stable:
        if got:
            return (
                f"the chunk carries {got} record key(s), but the project does not set "
                "stable_entity_ids, so record keys must not be sent; encode with the signed project"
            )
        return ""
    if got != chunk.records:
        return (
            f"the project sets stable_entity_ids, so every record needs a record key, but chunk "
            f"{chunk.chunk_index} carries {got} for {chunk.records} CLKs"
        )
    if any(len(k) != RECORD_KEY_BYTES for k in chunk.record_keys):
        return f"record keys must be {RECORD_KEY_BYTES}-byte HMAC-SHA256 digests"
    if len(set(chunk.record_keys)) != got:
        return (
            f"chunk {chunk.chunk_index} repeats a record key; each record id must be unique "
            "within a partner's data"
        )
    return ""


def evidence_problem(chunk: ClkChunk, layout: Sequence[tuple[str, int]]) -> str:
    """Why a chunk's field evidence cannot be accepted, or '' when it is what the project agreed:
    exactly the columns of ``layout`` (:func:`oda_fed.encoding.evidence.linkage_layout`), in its
    order, each of its width for every record. A project that does not link with
    ``method = "fields"`` has an empty layout, and then no evidence may cross."""
    got = [c.name for c in chunk.evidence]
    if not layout:
        if got:
            return (
                f"the chunk carries field evidence ({len(got)} column(s)), but the project does "
                'not link with method = "fields", so none may be sent; encode with the signed '
                "project"
            )
        return ""
    want = [name for name, _ in layout]
    if got != want:
        return (
            f"the project's fields give the evidence columns {want}, but the chunk carries "
            f"{got or 'none'}; encode with the signed project"
        )
    for column, (name, width) in zip(chunk.evidence, layout, strict=True):
        if len(column.data) != chunk.records * width:
            return (
                f"evidence '{name}' of chunk {chunk.chunk_index} holds {len(column.data)} bytes, "
                f"but {chunk.records} records need {chunk.records * width}; the upload was "
                "truncated or encoded with other settings"
            )
    return ""
