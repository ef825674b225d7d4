"""The messages of the wire protocol as plain Python values.

Each mirrors one message of ``protos/oda_fed/proto/v1``; :mod:`oda_fed.transport.serde` is the one
place that converts between the two. The node, the coordinator and the operator's client work with
these values and never with generated code.

Privacy: none of these may carry names, dates of birth, addresses, record ids or the linkage
secret. Records are referred to by per-round refs (and, where the project sets
``stable_entity_ids``, keyed record pseudonyms).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from oda_fed.errors import ProtocolError
from oda_fed.transport.protocol import RoundState

T = TypeVar("T")


@dataclass(frozen=True)
class Received(Generic[T]):
    """A message as it arrived: its value, and the bytes both sides' audit logs hash."""

    message: T
    payload: bytes


# --- the control stream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """A node's first message: who it says it is (checked against its certificate)."""

    partner_id: str
    project_fingerprint: str
    software_version: str = ""
    # The secret it holds: version 0 for a secret file, 1, 2, ... for an agreed secret; and its
    # key-check value (a keyed hash of a constant, which reveals nothing of the secret).
    key_version: int = 0
    key_check: str = ""


@dataclass(frozen=True)
class Witness:
    """One side's part of cross-witnessing the audit logs at a round's end: its signed checkpoint
    (canonical JSON) and an RFC 9162 consistency proof from the size the other side last
    witnessed. Hashes only."""

    checkpoint: bytes
    since_size: int = 0
    consistency: tuple[bytes, ...] = ()
    cosignature: bytes = b""  # a node's signature on the coordinator's checkpoint
    witnessed_size: int = 0  # the size of the node's log the coordinator last witnessed


@dataclass(frozen=True)
class InstructionResult:
    """A node's answer to one instruction; ``error`` is a short reason with no personal data."""

    instruction_id: str
    ok: bool
    error: str = ""
    records: int = 0
    witness: Witness | None = None


@dataclass(frozen=True)
class EncodeAndUpload:
    chunk_records: int
    clk_bits: int


@dataclass(frozen=True)
class ShareAttribute:
    product_id: str
    attribute: str


@dataclass(frozen=True)
class EntitiesReady:
    pass


@dataclass(frozen=True)
class ReleasedFile:
    name: str
    media_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class ProductRelease:
    product_id: str
    title: str
    files: tuple[ReleasedFile, ...]
    released_by: str = ""


@dataclass(frozen=True)
class ComputeTable:
    """Compute a ``local`` product from this partner's own records, control it, and send it."""

    product_id: str


@dataclass(frozen=True)
class RoundClosed:
    status: str  # a finished RoundState's value; a string, as a newer coordinator may say more
    message: str = ""
    witness: Witness | None = None

    @property
    def state(self) -> RoundState | None:
        """The status as a :class:`RoundState`, or None when this node does not know it."""
        try:
            return RoundState(self.status)
        except ValueError:
            return None


Body = (
    EncodeAndUpload | ShareAttribute | EntitiesReady | ProductRelease | RoundClosed | ComputeTable
)

#: Each body's name on the wire (the ``Instruction.body`` oneof), which also names its audit kind.
BODY_NAMES: dict[type, str] = {
    EncodeAndUpload: "encode_and_upload",
    ShareAttribute: "share_attribute",
    EntitiesReady: "entities_ready",
    ProductRelease: "product_release",
    RoundClosed: "round_closed",
    ComputeTable: "compute_table",
}


@dataclass(frozen=True)
class Instruction:
    """Work the coordinator sends a node. ``body`` is None for a kind this node does not know."""

    instruction_id: str
    project_fingerprint: str
    round_id: str
    body: Body | None

    @property
    def body_name(self) -> str | None:
        return None if self.body is None else BODY_NAMES[type(self.body)]

    def audit_detail(self) -> dict[str, str]:
        """What a DPO needs to know of the instruction, the same in both logs: the product or
        attribute it concerns."""
        body = self.body
        detail = {}
        if isinstance(body, ShareAttribute | ProductRelease | ComputeTable):
            detail["product"] = body.product_id
        if isinstance(body, ShareAttribute):
            detail["attribute"] = body.attribute
        return detail


# --- uploads and downloads ------------------------------------------------------------------------


def token_blob(columns: Sequence[TokenColumn]) -> bytes | None:
    """A chunk's keyed tokens as the coordinator stores them: JSON of hex, None where missing."""
    if not columns:
        return None
    stored = {c.field: [v.hex() if v else None for v in c.values] for c in columns}
    return json.dumps(stored, sort_keys=True).encode("ascii")


def evidence_blob(columns: Sequence[EvidenceColumn]) -> bytes | None:
    """A chunk's field evidence as the coordinator stores it: the columns' bytes one after the
    other, in the order the project's fields give (checked before it is stored)."""
    if not columns:
        return None
    return b"".join(c.data for c in columns)


def content_sha256(
    data: bytes, tokens: bytes | None, record_keys: bytes | None, evidence: bytes | None = None
) -> str:
    """SHA-256 of what one stored chunk carries: the same on the node, which sent it, and on the
    coordinator, which tells a resent chunk from a contradicting one by it."""
    h = hashlib.sha256(data + (tokens or b""))
    # Only chunks with record keys or evidence hash them, so digests of older chunks are unchanged.
    if record_keys is not None:
        h.update(b"\x00record_keys\x00" + record_keys)
    if evidence is not None:
        h.update(b"\x00evidence\x00" + evidence)
    return h.hexdigest()


def upload_sha256(chunk_digests: Iterable[str]) -> str:
    """One digest of a whole upload: of its chunks' digests, in chunk order. The node compares it
    with what the coordinator holds before it says its upload is done."""
    return hashlib.sha256("\n".join(chunk_digests).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class TokenColumn:
    """Keyed tokens of one exact identifier: 32 bytes per record, empty where missing."""

    field: str
    values: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True)
class EvidenceColumn:
    """One column of field evidence (:mod:`oda_fed.encoding.evidence`): a field filter or a
    keyed token, a fixed number of bytes per record, records one after the other."""

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ClkChunk:
    """One chunk of a node's CLKs (row-major little-endian ``uint64`` words)."""

    round_id: str
    project_fingerprint: str
    chunk_index: int
    total_chunks: int
    first_ref: int
    records: int
    total_records: int
    clk_bits: int
    clks: bytes = field(repr=False)
    tokens: tuple[TokenColumn, ...] = ()
    record_keys: tuple[bytes, ...] = field(default=(), repr=False)
    evidence: tuple[EvidenceColumn, ...] = ()

    def content_sha256(self, *, stable: bool) -> str:
        """What the coordinator stores of this chunk, hashed as it hashes it (``stable``: the
        project keeps entity ids, so the record keys are stored too)."""
        keys = b"".join(self.record_keys) if stable else None
        return content_sha256(
            self.clks, token_blob(self.tokens), keys, evidence_blob(self.evidence)
        )

    def audit_detail(self) -> dict[str, int | bool]:
        """The chunk's audit detail, the same in the node's log and the coordinator's."""
        detail: dict[str, int | bool] = {"chunk": self.chunk_index, "of": self.total_chunks}
        if self.record_keys:
            # So a DPO reading either log sees that this crossing carried record pseudonyms.
            detail["record_keys"] = True
        if self.evidence:
            # Field evidence crosses only under a project with method = "fields"; say so.
            detail["evidence"] = True
        return detail


@dataclass(frozen=True)
class AttributeChunk:
    """One chunk of the values of an attribute the project lets a partner share, in ref order."""

    round_id: str
    project_fingerprint: str
    product_id: str
    attribute: str
    chunk_index: int
    total_chunks: int
    first_ref: int
    total_records: int
    values: tuple[str, ...] = field(repr=False)

    def stored_data(self) -> bytes:
        """The values as the coordinator stores them."""
        return json.dumps(list(self.values), ensure_ascii=False).encode("utf-8")

    def content_sha256(self) -> str:
        """What the coordinator stores of this chunk, hashed as it hashes it."""
        return content_sha256(self.stored_data(), None, None)


@dataclass(frozen=True)
class LocalCell:
    """One cell of a table a node computed and controlled: its coordinates (one value per
    dimension, in the product's order), and its count unless suppressed."""

    coordinates: tuple[str, ...]
    suppressed: bool
    count: int = 0


@dataclass(frozen=True)
class LocalTable:
    """A ``local`` product as its node sends it: controlled there, one cell per combination."""

    round_id: str
    project_fingerprint: str
    product_id: str
    cells: tuple[LocalCell, ...] = field(repr=False)


@dataclass(frozen=True)
class Upload:
    """Which upload of a round: the CLKs, one product's attribute, or a table a node computed.

    Its :attr:`name` is how ``UploadStatusRequest.upload`` and the coordinator's database name it.

    Examples
    --------
    >>> Upload(product_id="p", attribute="ward").name
    'attribute:p:ward'
    >>> Upload(product_id="caseload", table=True).name
    'table:caseload'
    >>> Upload.from_name("clks") == CLKS
    True
    """

    product_id: str = ""
    attribute: str = ""
    table: bool = False

    @property
    def is_clks(self) -> bool:
        return not self.attribute and not self.table

    @property
    def name(self) -> str:
        if self.table:
            return f"table:{self.product_id}"
        return "clks" if self.is_clks else f"attribute:{self.product_id}:{self.attribute}"

    @classmethod
    def from_name(cls, name: str) -> Upload:
        """The upload ``name`` names ("" also means the CLKs).

        Raises
        ------
        ProtocolError
            Neither ``clks`` nor ``attribute:<product>:<attribute>``.
        """
        if name in ("", "clks"):
            return cls()
        kind, _, rest = name.partition(":")
        if kind == "table" and rest and ":" not in rest:
            return cls(product_id=rest, table=True)
        product_id, _, attribute = rest.partition(":")
        if kind != "attribute" or not product_id or not attribute:
            raise ProtocolError(
                f"unknown upload {name[:80]!r}: expected 'clks', 'attribute:<product>:<attribute>' "
                "or 'table:<product>'"
            )
        return cls(product_id=product_id, attribute=attribute)


#: The CLK upload of a round.
CLKS = Upload()


@dataclass(frozen=True)
class UploadStatusRequest:
    round_id: str
    project_fingerprint: str
    upload: Upload = CLKS


@dataclass(frozen=True)
class UploadReceipt:
    """Where an upload stands, so an interrupted one resumes with the chunks still missing."""

    round_id: str
    chunks_stored: int = 0
    records_stored: int = 0
    complete: bool = False
    stored_chunks: tuple[int, ...] = ()
    # upload_sha256 of the chunks stored, in chunk order: what the node checks its upload against.
    sha256: str = ""


@dataclass(frozen=True)
class FetchEntitiesRequest:
    round_id: str
    project_fingerprint: str


@dataclass(frozen=True)
class EntityChunk:
    """Entity ids of the calling node's refs ``first_ref`` onwards."""

    first_ref: int
    entity_ids: tuple[str, ...] = field(repr=False)


# --- agreeing the linkage secret (the Keys service) -----------------------------------------------


@dataclass(frozen=True)
class AgreementKey:
    """A node's X25519 public key, signed with its TLS certificate's key for the project."""

    project_fingerprint: str
    partner_id: str
    public_key: bytes
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)


@dataclass(frozen=True)
class KeysRequest:
    project_fingerprint: str


@dataclass(frozen=True)
class KeyDirectory:
    """Every partner's published agreement key, and the latest agreed key version (0: none)."""

    keys: tuple[AgreementKey, ...] = ()
    key_version: int = 0

    def key_of(self, partner: str) -> AgreementKey | None:
        return next((k for k in self.keys if k.partner_id == partner), None)


@dataclass(frozen=True)
class WrappedSecret:
    """One key version's secret, wrapped by ``sender`` for ``recipient``: ciphertext only."""

    project_fingerprint: str
    key_version: int
    sender: str
    recipient: str
    sender_key: bytes
    recipient_key: bytes
    salt: bytes
    nonce: bytes
    ciphertext: bytes = field(repr=False)
    # Set by the coordinator when it hands the secret out: the sender's key as it was published.
    sender_signed_key: AgreementKey | None = None


@dataclass(frozen=True)
class WrappedSecrets:
    """The dealer's new key version: one wrapped secret per partner and the key-check value."""

    project_fingerprint: str
    key_version: int
    key_check: str
    secrets: tuple[WrappedSecret, ...]


@dataclass(frozen=True)
class SecretRequest:
    project_fingerprint: str
    key_version: int


# --- the operator's interface ---------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerProgress:
    partner: str
    connected: bool
    records: int
    uploaded: bool
    entities_delivered: bool
    # "<instruction>: <the node's reason>" for the last instruction it could not do; "" if none.
    last_error: str = ""


@dataclass(frozen=True)
class ProductSummary:
    """A product of a round: what will be, or was, released and to whom."""

    product_id: str
    title: str
    recipients: tuple[str, ...]
    cells: int
    suppressed: int


@dataclass(frozen=True)
class RoundStatus:
    """A round as the operator sees it."""

    round_id: str
    state: RoundState
    message: str
    entities: int = 0
    linked_entities: int = 0
    partners: tuple[PartnerProgress, ...] = ()
    product_files: tuple[str, ...] = ()
    report_path: str = ""
    deadline: str = ""
    quality_report_path: str = ""
    products: tuple[ProductSummary, ...] = ()
    released_by: str = ""

    @property
    def finished(self) -> bool:
        return self.state.finished
