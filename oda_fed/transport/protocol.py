"""The wire protocol's vocabulary, shared by the node and the coordinator: defined once, here.

- :class:`AuditKind`: every kind of audit entry either side writes. The DPO's cross-check pairs
  entries by kind, so both sides take their kinds from this one enum and never spell one out.
- :class:`RoundState`: the states a round passes through, as the coordinator stores them and the
  operator and the nodes are told them.
- The round-id rule (:func:`new_round_id`, :func:`check_round_id`) and the limits both sides keep.
- :func:`chunks`: how a long upload or download is cut into numbered chunks.

Nothing here imports generated protobuf code; :mod:`oda_fed.transport.serde` converts between
these values and the wire.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from oda_fed.audit.entry import is_local_kind
from oda_fed.errors import ProtocolError

#: The coordinator's name in audit logs and as the recipient of uploads.
COORDINATOR = "coordinator"

#: Records per chunk of CLKs, attribute values or entity ids (a node's config may lower it for
#: CLKs; the coordinator asks for this many).
CHUNK_RECORDS = 10_000
#: Reasons and errors that cross the wire, or go into an audit entry, are cut to this length.
MAX_REASON = 200
#: Calls one partner (or operator) may have in progress at once: its control stream, one
#: upload or download, a status query, and room for a reconnect that overlaps the old stream.
CALLS_PER_CALLER = 6
#: Longest attribute value, label or table coordinate a node may send, in characters. A value
#: longer than any code, band or label is a mis-mapped column or an attack (a 2 MiB "area").
MAX_VALUE_CHARS = 100
#: Longest name or id in a node's message, in characters: a partner, product, attribute or token
#: field, a round or instruction id, a project fingerprint, a key check, a software version.
MAX_NAME_CHARS = 128
#: Longest error a node reports for an instruction (the coordinator keeps :data:`MAX_REASON`).
MAX_ERROR_CHARS = 1_000
#: Length of a keyed token, a record key or a Merkle hash (HMAC-SHA256, SHA-256), in bytes.
DIGEST_BYTES = 32
#: The widest CLK on the wire, in bytes: ``[linkage] bits`` at most 8192, doubled by balancing.
MAX_CLK_BYTES = 2 * 8192 // 8
#: Most keyed-token columns in one CLK chunk (one per linkage field).
MAX_TOKEN_COLUMNS = 64
#: Most columns of field evidence in one CLK chunk (a filter and up to five tokens a field), and
#: the widest, in bytes a record (a 256-bit field filter).
MAX_EVIDENCE_COLUMNS = 6 * 64
MAX_EVIDENCE_BYTES = 32
#: Most cells in a ``local`` product's table, and most dimensions of a cell (as
#: ``oda_fed.config.MAX_DIMENSIONS``). A table of more cells is no table to publish.
MAX_TABLE_CELLS = 10_000
MAX_TABLE_DIMENSIONS = 3
#: Most partners whose wrapped secrets one key version carries.
MAX_PARTNERS = 256
#: A signed audit checkpoint (up to 16 signatures, each with its PEM certificate), a
#: certificate, and a signature, in bytes.
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_CERTIFICATE_BYTES = 8 * 1024
MAX_SIGNATURE_BYTES = 8 * 1024


@dataclass(frozen=True)
class Bound:
    """The most one field of a node's message may hold: ``items`` values (1 for a field that is
    not repeated), each at most ``size`` characters (a string) or bytes (bytes); ``size`` 0 for
    a field of messages, whose own fields have bounds."""

    size: int = 0
    items: int = 1


_NAME = Bound(MAX_NAME_CHARS)
_KEY = Bound(DIGEST_BYTES)  # an X25519 key (32 bytes), an HKDF salt (16), an AEAD nonce (12)
#: What the coordinator accepts in each string, bytes or repeated field of a message a node
#: sends (``Message.field``; :data:`oda_fed.transport.serde.NODE_MESSAGES` are those
#: messages). A test fails when a field has no entry here, so a field added to the protocol
#: gets a bound chosen for it; until then :data:`DEFAULT_BOUND` holds it.
FIELD_BOUNDS: dict[str, Bound] = {
    "Hello.partner_id": _NAME,
    "Hello.project_fingerprint": _NAME,
    "Hello.software_version": _NAME,
    "Hello.key_check": _NAME,
    "InstructionResult.instruction_id": _NAME,
    "InstructionResult.error": Bound(MAX_ERROR_CHARS),
    "Witness.checkpoint": Bound(MAX_CHECKPOINT_BYTES),
    "Witness.consistency": Bound(DIGEST_BYTES, items=64),  # a proof of a log of 2**64 entries
    "Witness.cosignature": Bound(MAX_SIGNATURE_BYTES),
    "ClkChunk.round_id": _NAME,
    "ClkChunk.project_fingerprint": _NAME,
    "ClkChunk.clks": Bound(CHUNK_RECORDS * MAX_CLK_BYTES),
    "ClkChunk.tokens": Bound(items=MAX_TOKEN_COLUMNS),
    "ClkChunk.record_keys": Bound(DIGEST_BYTES, items=CHUNK_RECORDS),
    "TokenColumn.field": _NAME,
    "TokenColumn.values": Bound(DIGEST_BYTES, items=CHUNK_RECORDS),
    "ClkChunk.evidence": Bound(items=MAX_EVIDENCE_COLUMNS),
    "EvidenceColumn.name": _NAME,
    "EvidenceColumn.data": Bound(CHUNK_RECORDS * MAX_EVIDENCE_BYTES),
    "UploadStatusRequest.round_id": _NAME,
    "UploadStatusRequest.project_fingerprint": _NAME,
    "UploadStatusRequest.upload": Bound(2 * MAX_NAME_CHARS + 16),  # attribute:<product>:<name>
    "AttributeChunk.round_id": _NAME,
    "AttributeChunk.project_fingerprint": _NAME,
    "AttributeChunk.product_id": _NAME,
    "AttributeChunk.attribute": _NAME,
    "AttributeChunk.values": Bound(MAX_VALUE_CHARS, items=CHUNK_RECORDS),
    "FetchEntitiesRequest.round_id": _NAME,
    "FetchEntitiesRequest.project_fingerprint": _NAME,
    "LocalTable.round_id": _NAME,
    "LocalTable.project_fingerprint": _NAME,
    "LocalTable.product_id": _NAME,
    "LocalTable.cells": Bound(items=MAX_TABLE_CELLS),
    "LocalCell.coordinates": Bound(MAX_VALUE_CHARS, items=MAX_TABLE_DIMENSIONS),
    "AgreementKey.project_fingerprint": _NAME,
    "AgreementKey.partner_id": _NAME,
    "AgreementKey.public_key": _KEY,
    "AgreementKey.certificate": Bound(MAX_CERTIFICATE_BYTES),
    "AgreementKey.signature": Bound(MAX_SIGNATURE_BYTES),
    "KeysRequest.project_fingerprint": _NAME,
    "WrappedSecret.project_fingerprint": _NAME,
    "WrappedSecret.sender": _NAME,
    "WrappedSecret.recipient": _NAME,
    "WrappedSecret.sender_key": _KEY,
    "WrappedSecret.recipient_key": _KEY,
    "WrappedSecret.salt": _KEY,
    "WrappedSecret.nonce": _KEY,
    "WrappedSecret.ciphertext": Bound(256),  # a 32-byte secret and its AEAD tag
    "WrappedSecrets.project_fingerprint": _NAME,
    "WrappedSecrets.key_check": _NAME,
    "WrappedSecrets.secrets": Bound(items=MAX_PARTNERS),
    "SecretRequest.project_fingerprint": _NAME,
}
#: The bound of a field :data:`FIELD_BOUNDS` does not name: a name, and a few items.
DEFAULT_BOUND = Bound(MAX_NAME_CHARS, items=8)
#: Uploads the coordinator takes at once, from all partners together (its memory bound), and
#: how long an upload waits for one before it is refused, to be retried.
UPLOADS_AT_ONCE = 4
UPLOAD_SLOT_WAIT = 120.0
#: Seconds a node waits for a connection before it backs off and retries.
CONNECT_TIMEOUT = 10.0
#: Seconds the operator's client waits for one answer from its coordinator.
ADMIN_TIMEOUT = 30.0


class AuditKind(StrEnum):
    """Every kind of audit entry. Crossings are logged on both sides under the same kind; local
    kinds (``refused:``, ``retention:``, ``operator:``, ``lifecycle:``, ``audit:``) record
    something one party did or refused on its own, so they have no counterpart in the other
    side's log."""

    # Crossings: logged by the sender and by the recipient.
    HELLO = "hello"
    INSTRUCTION_RESULT = "instruction_result"
    CLK_CHUNK = "clk_chunk"
    ATTRIBUTE_CHUNK = "attribute_chunk"
    ENTITY_CHUNK = "entity_chunk"
    LOCAL_TABLE = "local_table"
    ENCODE_AND_UPLOAD = "instruction:encode_and_upload"
    SHARE_ATTRIBUTE = "instruction:share_attribute"
    ENTITIES_READY = "instruction:entities_ready"
    PRODUCT_RELEASE = "instruction:product_release"
    ROUND_CLOSED = "instruction:round_closed"
    COMPUTE_TABLE = "instruction:compute_table"
    EMPTY_INSTRUCTION = "instruction:empty"
    AGREEMENT_KEY = "agreement_key"
    WRAPPED_SECRETS = "wrapped_secrets"
    WRAPPED_SECRET = "wrapped_secret"

    # Refusals: the coordinator's of a call, the node's of an instruction.
    REFUSED_CALL = "refused:call"
    REFUSED_HELLO = "refused:hello"
    REFUSED_CLK_UPLOAD = "refused:clk_upload"
    REFUSED_UPLOAD_STATUS = "refused:upload_status"
    REFUSED_ATTRIBUTE_UPLOAD = "refused:attribute_upload"
    REFUSED_FETCH_ENTITIES = "refused:fetch_entities"
    REFUSED_TABLE_UPLOAD = "refused:table_upload"
    REFUSED_ENCODE_AND_UPLOAD = "refused:encode_and_upload"
    REFUSED_SHARE_ATTRIBUTE = "refused:share_attribute"
    REFUSED_ENTITIES_READY = "refused:entities_ready"
    REFUSED_PRODUCT_RELEASE = "refused:product_release"
    REFUSED_ROUND_CLOSED = "refused:round_closed"
    REFUSED_COMPUTE_TABLE = "refused:compute_table"
    REFUSED_INSTRUCTION = "refused:instruction"
    REFUSED_KEY_CHECK = "refused:key_check"
    REFUSED_KEYS = "refused:keys"
    REFUSED_AGREEMENT = "refused:agreement"
    # A checkpoint of the other side's log that failed its checks, so was not cosigned.
    REFUSED_WITNESS = "refused:witness"

    # The coordinator's own acts.
    CLKS_DELETED = "retention:clks_deleted"
    START_ROUND = "operator:start_round"
    RELEASE_ROUND = "operator:release_round"
    CANCEL_ROUND = "operator:cancel_round"
    ACCEPT_EMPTY_STATE = "operator:accept_empty_state"
    AUTO_RELEASE = "lifecycle:auto_release"
    DEADLINE_PASSED = "lifecycle:deadline_passed"
    # A partner's node certificate pinned at its first call, or moved to a new one once the
    # pinned one was revoked or expired.
    CERTIFICATE_PINNED = "lifecycle:certificate_pinned"
    DISCLOSURE_CHECKED = "lifecycle:disclosure_checked"

    # The log's own upkeep.
    TORN_LINE_REPAIRED = "audit:torn_line_repaired"

    @property
    def local(self) -> bool:
        """True for an entry only its writer holds (nothing crossed)."""
        return is_local_kind(self.value)


#: An instruction's kind, and the kind of a node's refusal of it, by body name.
INSTRUCTION_KINDS: dict[str, tuple[AuditKind, AuditKind]] = {
    "encode_and_upload": (AuditKind.ENCODE_AND_UPLOAD, AuditKind.REFUSED_ENCODE_AND_UPLOAD),
    "share_attribute": (AuditKind.SHARE_ATTRIBUTE, AuditKind.REFUSED_SHARE_ATTRIBUTE),
    "entities_ready": (AuditKind.ENTITIES_READY, AuditKind.REFUSED_ENTITIES_READY),
    "product_release": (AuditKind.PRODUCT_RELEASE, AuditKind.REFUSED_PRODUCT_RELEASE),
    "round_closed": (AuditKind.ROUND_CLOSED, AuditKind.REFUSED_ROUND_CLOSED),
    "compute_table": (AuditKind.COMPUTE_TABLE, AuditKind.REFUSED_COMPUTE_TABLE),
}


class RoundState(StrEnum):
    """Where a round stands. The coordinator's lifecycle moves it; see
    :data:`oda_fed.coordinator.lifecycle.TRANSITIONS` for the moves it allows."""

    OPEN = "open"  # waiting for the first upload
    UPLOADING = "uploading"  # some partners' CLKs are in; waiting for the rest
    MATCHING = "matching"  # every partner's CLKs are in; linking
    ANALYSING = "analysing"  # entity ids out; the products' attributes coming in
    AWAITING_RELEASE = "awaiting_release"  # products made and checked; held for the operator
    RELEASED = "released"  # products on their way to their recipients
    CLOSED = "closed"  # every delivery acknowledged
    CANCELLED = "cancelled"  # by an operator, or when its deadline passed
    FAILED = "failed"  # could not go on (a coordinator error)

    @property
    def finished(self) -> bool:
        """True once nothing more will happen to the round."""
        return self in (RoundState.CLOSED, RoundState.CANCELLED, RoundState.FAILED)


# --- round ids ------------------------------------------------------------------------------------

#: A round id as it may appear on the wire, in a file name and in an audit entry.
ROUND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def new_round_id(now: datetime | None = None) -> str:
    """A fresh round id: its UTC start time and four random hex digits.

    Examples
    --------
    >>> new_round_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))[:17]
    'r20260102T030405-'
    >>> is_round_id(new_round_id())
    True
    """
    return (now or datetime.now(UTC)).strftime("r%Y%m%dT%H%M%S-") + secrets.token_hex(2)


def is_round_id(text: str | None) -> bool:
    """Whether ``text`` is a usable round id (no path separators, no leading dot, short)."""
    return bool(text) and ROUND_ID.fullmatch(text) is not None and ".." not in text


def check_round_id(text: str) -> str:
    """``text``, or a :class:`~oda_fed.errors.ProtocolError` naming what is wrong with it.

    Examples
    --------
    >>> check_round_id("../../etc")
    Traceback (most recent call last):
    ...
    oda_fed.errors.ProtocolError: unusable round id '../../etc'
    """
    if not is_round_id(text):
        raise ProtocolError(f"unusable round id {text[:MAX_REASON]!r}")
    return text


def loggable_round(round_id: str | None) -> str | None:
    """``round_id`` if it may go into an audit entry, else None (an odd id from the wire is
    still refused and logged, without the id)."""
    return round_id if is_round_id(round_id) else None


# --- chunks ---------------------------------------------------------------------------------------


def chunks(total: int, size: int) -> Iterator[tuple[int, int, int]]:
    """``(index, start, stop)`` of each chunk of ``total`` records, ``size`` at a time.

    An empty upload is one empty chunk, so the other side still learns the total.

    Examples
    --------
    >>> list(chunks(5, 2))
    [(0, 0, 2), (1, 2, 4), (2, 4, 5)]
    >>> list(chunks(0, 2))
    [(0, 0, 0)]
    """
    size = max(1, size)
    for index in range(chunk_count(total, size)):
        yield index, index * size, min(total, (index + 1) * size)


def chunk_count(total: int, size: int) -> int:
    """How many chunks :func:`chunks` makes: at least one."""
    return max(1, -(-total // max(1, size)))


def largest_node_message(
    *,
    clk_bits: int,
    token_columns: int,
    record_keys: bool,
    attributes: bool,
    table_dimensions: int,
    evidence: tuple[int, ...] = (),
) -> int:
    """The most bytes one message from a node of a project needs on the wire, with room for ids
    and framing: the largest of a chunk of :data:`CHUNK_RECORDS` CLKs of ``clk_bits`` (with its
    ``token_columns`` keyed tokens, its columns of field evidence of ``evidence`` bytes a record
    each, and, when the project keeps entity ids stable, record keys), a
    chunk of attribute values (``attributes``), and a ``local`` table of ``table_dimensions``
    (0: the project has none), every value at its longest. Anything else a node sends (a Hello,
    a result with its audit checkpoint, a key or wrapped secrets) fits in 1 MiB.

    Examples
    --------
    >>> largest_node_message(clk_bits=1024, token_columns=1, record_keys=False,
    ...                      attributes=False, table_dimensions=0)
    1686064
    >>> largest_node_message(clk_bits=2048, token_columns=2, record_keys=True,
    ...                      attributes=False, table_dimensions=0)
    3646592
    """
    digest = DIGEST_BYTES + 2  # a repeated bytes item: its tag, its length, the digest
    value = 4 * MAX_VALUE_CHARS + 3  # a string at its longest in UTF-8, its tag and length
    column = CHUNK_RECORDS * digest + 4 * MAX_NAME_CHARS + 16
    clks = CHUNK_RECORDS * (clk_bits // 8) + token_columns * column
    if record_keys:
        clks += CHUNK_RECORDS * digest
    clks += sum(CHUNK_RECORDS * width + 4 * MAX_NAME_CHARS + 16 for width in evidence)
    sizes = [clks, 1 << 20]
    if attributes:
        sizes.append(CHUNK_RECORDS * value)
    if table_dimensions:
        sizes.append(MAX_TABLE_CELLS * (table_dimensions * value + 16))  # + count, flag, framing
    return max(sizes) + (64 << 10)


def printable(text: str) -> str:
    """``text`` with every control, format or unassigned character (terminal escape codes,
    bidirectional overrides, NULs) shown as ``\\uXXXX``: text from another party can then be
    printed to a terminal, a log or a page without acting on it.

    Examples
    --------
    >>> printable("ok\\x1b[2Jcleared")
    'ok\\\\u001b[2Jcleared'
    """
    return "".join(ch if unicodedata.category(ch)[0] != "C" else f"\\u{ord(ch):04x}" for ch in text)


def cut(text: str) -> str:
    """``text`` cut to :data:`MAX_REASON` characters and made :func:`printable`, for a reason
    that crosses or is logged."""
    return printable(text[:MAX_REASON])[:MAX_REASON]
