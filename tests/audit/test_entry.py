"""The entry format: canonical bytes, the RFC 9162 leaf hash, and what detail may hold."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from oda_fed.audit import AuditEntry, canonical_json, leaf_hash
from oda_fed.audit.entry import detail_problems, field_problems
from oda_fed.errors import AuditError

PROJECT = "sha256:" + "3f" * 32
PAYLOAD = hashlib.sha256(b"hello").hexdigest()

# Written out by hand, not produced by the code under test: this is the documented format.
BODY = (
    '{"bytes":5,"detail":{"chunk":0,"reason":"caf\\u00e9"},"kind":"clk_chunk","party":"council",'
    f'"payload_sha256":"{PAYLOAD}","prev":"{"0" * 64}","project":"{PROJECT}",'
    '"recipient":"coordinator","records":3,"round":null,"sender":"council","seq":0,'
    '"time":"2026-01-02T03:04:05.000006Z","v":1}'
)


def _fields() -> dict:
    return {
        "v": 1,
        "seq": 0,
        "time": "2026-01-02T03:04:05.000006Z",
        "party": "council",
        "sender": "council",
        "recipient": "coordinator",
        "kind": "clk_chunk",
        "project": PROJECT,
        "round": None,
        "records": 3,
        "bytes": 5,
        "payload_sha256": PAYLOAD,
        "detail": {"reason": "café", "chunk": 0},
        "prev": "0" * 64,
    }


def test_canonical_json_and_leaf_hash_match_the_documented_format() -> None:
    fields = _fields()
    assert canonical_json(fields) == BODY.encode()
    expected = hashlib.sha256(b"\x00" + BODY.encode()).hexdigest()
    assert leaf_hash(fields) == expected
    assert leaf_hash({**fields, "hash": "f" * 64}) == expected  # the hash key is excluded
    entry = AuditEntry.from_json({**fields, "hash": expected})
    line = entry.line().decode()
    assert line == BODY.replace('"kind"', f'"hash":"{expected}","kind"')
    assert line.isascii()


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_entry_is_immutable_and_hashable() -> None:
    fields = _fields()
    entry = AuditEntry.from_json({**fields, "hash": leaf_hash(fields)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.records = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.detail["chunk"] = 1  # type: ignore[index]
    fields["detail"]["chunk"] = 99  # the caller's dict is copied, not shared
    assert entry.detail["chunk"] == 0
    assert {entry: 1}[entry] == 1
    assert entry.to_json()["hash"] == entry.hash


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "unknown audit format version"),
        ({"seq": -1}, "'seq' must be a non-negative integer"),
        ({"seq": True}, "'seq' must be a non-negative integer"),
        ({"records": 2**63}, "'records' must be a non-negative integer"),
        ({"time": "2026-01-02 03:04:05"}, "'time' must be UTC RFC 3339"),
        ({"sender": "Council"}, "'sender' must be a party name"),
        ({"project": "sha256:abc"}, "'project' must be a fingerprint"),
        ({"round": ""}, "'round' must be a round id or null"),
        ({"kind": "clk upload"}, "'kind' must be a message kind"),
        ({"payload_sha256": PAYLOAD.upper()}, "'payload_sha256' must be 64 lowercase hex"),
        ({"sender": "police"}, "'party' must be the sender or the recipient"),
        ({"extra": 1}, "unknown fields: 'extra'"),
    ],
)
def test_from_json_rejects_fields_that_break_the_format(change: dict, message: str) -> None:
    fields = {**_fields(), "hash": "0" * 64, **change}
    with pytest.raises(AuditError, match=message):
        AuditEntry.from_json(fields)


def test_missing_fields_are_named() -> None:
    assert field_problems({"v": 1, "seq": 0})[0].startswith("missing fields: bytes, detail")


def test_detail_accepts_small_flat_scalars() -> None:
    ok = {"chunk": 3, "of": 10, "threshold": 0.85, "resumed": False, "reason": "x" * 200}
    assert detail_problems(ok) == []
    assert detail_problems({}) == []


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        (
            {"rows": ["John Nicholson", "1984-03-02"]},
            "is a list: only strings, numbers and booleans",
        ),
        ({"record": {"name": "John Nicholson"}}, "is a dict"),
        ({"note": None}, "is a NoneType"),
        ({"blob": b"raw bytes"}, "is a bytes"),
        ({"note": "x" * 201}, "201 characters; at most 200"),
        ({"ratio": float("inf")}, "not a finite number"),
        ({"big": 2**64}, "does not fit in 64 bits"),
        ({"Bad Key": 1}, "detail key is not valid"),
        ({f"k{i}": i for i in range(33)}, "33 keys; at most 32"),
    ],
)
def test_detail_rejects_what_could_carry_personal_data(detail: dict, message: str) -> None:
    problems = detail_problems(detail)
    assert any(message in p for p in problems), problems


def test_detail_problems_never_echo_the_value() -> None:
    value = "John Nicholson, 12 Acacia Avenue, NE1 4XY, born 1984-03-02 " * 5
    problems = detail_problems({"note": value, "rows": [value]})
    assert len(problems) == 2
    assert not any("Nicholson" in p or "NE1" in p for p in problems)
