"""One audit log entry: its fields, its canonical bytes, and its hash.

The format is documented field by field in ``docs/audit-log.md``; a DPO may have to read it years
from now with other tools, so everything here is deliberately plain: JSON, SHA-256, no options.

The entry hash is the RFC 9162 leaf hash ``SHA-256(0x00 || canonical JSON without "hash")``, so a
later Merkle tree over the log can use the stored hashes as its leaves unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from oda_fed.errors import AuditError
from oda_fed.pki.identity import NAME_PATTERN

FORMAT_VERSION = 1
ZERO_HASH = "0" * 64
LEAF_PREFIX = b"\x00"  # RFC 9162 section 2.1.1: leaf hashes are domain-separated from node hashes.

# Why detail is bounded: it is the one free-form field, so it is where personal data or the
# linkage secret could slip into a log that crosses a boundary and is kept for years. Flat scalars
# of at most DETAIL_MAX_CHARS can carry counts, ids, thresholds and reasons, but not a record, a row
# list or a file, and every value stays short enough for a DPO to review.
DETAIL_MAX_CHARS = 200
DETAIL_MAX_KEYS = 32
MAX_INT = 2**63 - 1

_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_KIND_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_ROUND_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_PROJECT_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")

DetailValue = str | int | float | bool
KEYS = frozenset(
    {
        "v",
        "seq",
        "time",
        "party",
        "sender",
        "recipient",
        "kind",
        "project",
        "round",
        "records",
        "bytes",
        "payload_sha256",
        "detail",
        "prev",
        "hash",
    }
)


#: Kinds that record what one party did or refused on its own: nothing crossed, so the other side
#: has no entry to match. Everything else is a crossing, logged by sender and recipient alike.
LOCAL_KIND_PREFIXES = ("refused:", "retention:", "operator:", "lifecycle:", "audit:")

#: The entry a log writes about itself when it cut a half-written last line on opening.
TORN_LINE_REPAIRED = "audit:torn_line_repaired"


def is_local_kind(kind: str) -> bool:
    """Whether entries of ``kind`` are one party's own record rather than a crossing.

    Examples
    --------
    >>> is_local_kind("refused:call"), is_local_kind("clk_chunk")
    (True, False)
    """
    return kind.startswith(LOCAL_KIND_PREFIXES)


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """Serialise ``obj`` as the log's canonical JSON: sorted keys, no spaces, ASCII only.

    Non-ASCII characters are written as ``\\uXXXX`` escapes, so the bytes do not depend on any
    Unicode normalisation or file encoding. NaN and infinities are refused.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": "é"})
    b'{"a":"\\\\u00e9","b":1}'
    """
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def leaf_hash(obj: Mapping[str, Any]) -> str:
    """Hex RFC 9162 leaf hash of an entry: ``SHA-256(0x00 || canonical JSON without "hash")``.

    Examples
    --------
    >>> leaf_hash({"v": 1}) == hashlib.sha256(b'\\x00{"v":1}').hexdigest()
    True
    """
    body = {k: v for k, v in obj.items() if k != "hash"}
    return hashlib.sha256(LEAF_PREFIX + canonical_json(body)).hexdigest()


def utc_now() -> str:
    """The current time as the log writes it: UTC, RFC 3339, microseconds, ``Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT


def detail_problems(detail: object) -> list[str]:
    """Say what is wrong with a ``detail`` mapping; an empty list means it may be logged.

    Messages name the offending key and the rule, never the value: a rejected value may be the
    very personal data the rule is there to keep out of the log.

    Examples
    --------
    >>> detail_problems({"chunks": 4, "reason": "fingerprint mismatch"})
    []
    >>> detail_problems({"rows": [1, 2]})
    ["detail 'rows' is a list: only strings, numbers and booleans are allowed (no nesting)"]
    """
    if not isinstance(detail, Mapping):
        return [f"detail must be a mapping, not {type(detail).__name__}"]
    problems = []
    if len(detail) > DETAIL_MAX_KEYS:
        problems.append(f"detail has {len(detail)} keys; at most {DETAIL_MAX_KEYS} are allowed")
    for key, value in detail.items():
        if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
            problems.append("detail key is not valid: use 1-64 of a-z, 0-9 and '_', starting a-z")
            continue
        if isinstance(value, str):
            if len(value) > DETAIL_MAX_CHARS:
                problems.append(
                    f"detail {key!r} is {len(value)} characters; at most {DETAIL_MAX_CHARS} are "
                    "allowed, so that no record or file can be logged"
                )
        elif isinstance(value, int):
            if abs(value) > MAX_INT:
                problems.append(f"detail {key!r} does not fit in 64 bits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                problems.append(f"detail {key!r} is not a finite number")
        else:
            problems.append(
                f"detail {key!r} is a {type(value).__name__}: only strings, numbers and booleans "
                "are allowed (no nesting)"
            )
    return problems


def field_problems(obj: Mapping[str, Any]) -> list[str]:
    """Say which fields of a parsed entry break the format; an empty list means none do.

    Examples
    --------
    >>> field_problems({"v": 1})[0]
    'missing fields: bytes, detail, hash, kind, party, payload_sha256, prev, project, ...'
    """
    missing, extra = sorted(KEYS - obj.keys()), sorted(obj.keys() - KEYS)
    problems = []
    if missing:
        shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        problems.append(f"missing fields: {shown}")
    if extra:
        problems.append(f"unknown fields: {', '.join(repr(k)[:40] for k in extra[:8])}")

    def bad(key: str, ok: bool, expected: str) -> None:
        if key in obj and not ok:
            problems.append(f"field {key!r} must be {expected}")

    def matches(pattern: re.Pattern[str], key: str) -> bool:
        value = obj.get(key)
        return isinstance(value, str) and pattern.fullmatch(value) is not None

    bad("seq", _is_int(obj.get("seq")), "a non-negative integer")
    bad("time", matches(_TIME_PATTERN, "time"), "UTC RFC 3339 with microseconds and Z")
    for key in ("party", "sender", "recipient"):
        bad(key, matches(NAME_PATTERN, key), "a party name ([a-z0-9][a-z0-9_-]{0,62})")
    bad("kind", matches(_KIND_PATTERN, "kind"), "a message kind such as 'clk_upload'")
    bad("project", matches(_PROJECT_PATTERN, "project"), "a fingerprint 'sha256:<64 hex>'")
    bad("round", obj.get("round") is None or matches(_ROUND_PATTERN, "round"), "a round id or null")
    bad("records", _is_int(obj.get("records")), "a non-negative integer")
    bad("bytes", _is_int(obj.get("bytes")), "a non-negative integer")
    for key in ("payload_sha256", "prev", "hash"):
        bad(key, matches(_HEX64, key), "64 lowercase hex digits")
    party = obj.get("party")
    if isinstance(party, str) and party not in (obj.get("sender"), obj.get("recipient")):
        problems.append(
            "field 'party' must be the sender or the recipient: a log records its own side"
        )
    if "detail" in obj:
        problems += detail_problems(obj["detail"])
    return problems


@dataclass(frozen=True)
class AuditEntry:
    """One boundary crossing, as one line of the audit log. Field names are the JSON keys.

    Examples
    --------
    >>> entry = AuditEntry.from_json(json.loads(line))  # doctest: +SKIP
    >>> entry.kind, entry.sender, entry.recipient  # doctest: +SKIP
    ('clk_upload', 'council', 'coordinator')
    """

    v: int
    seq: int
    time: str
    party: str
    sender: str
    recipient: str
    kind: str
    project: str
    round: str | None
    records: int
    bytes: int
    payload_sha256: str
    detail: Mapping[str, DetailValue]
    prev: str
    hash: str

    def __post_init__(self) -> None:
        # A read-only copy: the entry's hash must keep matching its content.
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    def __hash__(self) -> int:
        return hash(self.hash)

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict, ``hash`` included."""
        return {
            "v": self.v,
            "seq": self.seq,
            "time": self.time,
            "party": self.party,
            "sender": self.sender,
            "recipient": self.recipient,
            "kind": self.kind,
            "project": self.project,
            "round": self.round,
            "records": self.records,
            "bytes": self.bytes,
            "payload_sha256": self.payload_sha256,
            "detail": dict(self.detail),
            "prev": self.prev,
            "hash": self.hash,
        }

    def line(self) -> bytes:
        """The entry's line in the log file, without the newline."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AuditEntry:
        """Build an entry from a parsed log line, checking the format but not the hash.

        Raises
        ------
        AuditError
            If the version is not 1 or any field breaks the format.
        """
        if obj.get("v") != FORMAT_VERSION:
            raise AuditError(f"unknown audit format version {str(obj.get('v'))[:20]!r}")
        problems = field_problems(obj)
        if problems:
            raise AuditError("; ".join(problems))
        return cls(**{k: obj[k] for k in KEYS})
