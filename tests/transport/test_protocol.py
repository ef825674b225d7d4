"""The wire protocol's vocabulary is defined once and both sides use it: audit kinds, round
states, round ids and chunks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from oda_fed.audit.entry import is_local_kind
from oda_fed.coordinator.states import CANCELLABLE, OFFERED, TRANSITIONS
from oda_fed.errors import ProtocolError
from oda_fed.transport.messages import BODY_NAMES
from oda_fed.transport.protocol import (
    INSTRUCTION_KINDS,
    AuditKind,
    RoundState,
    check_round_id,
    chunks,
    loggable_round,
    new_round_id,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "oda_fed"


def _kinds_used(folder: str) -> tuple[set[AuditKind], bool]:
    """The ``AuditKind.X`` a package names, and whether it logs instructions by body."""
    used: set[AuditKind] = set()
    by_body = False
    for path in (PACKAGE / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            if named and node.value.id == "AuditKind":
                used.add(AuditKind[node.attr])
            if isinstance(node, ast.Name) and node.id == "INSTRUCTION_KINDS":
                by_body = True
    return used, by_body


def test_the_node_and_the_coordinator_log_the_same_crossings() -> None:
    node, node_bodies = _kinds_used("node")
    coordinator, coordinator_bodies = _kinds_used("coordinator")
    crossings = {k for k in AuditKind if not k.local}
    assert {k for k in node if not k.local} == {k for k in coordinator if not k.local}
    # Instructions are logged by body on both sides, through the one table.
    assert node_bodies and coordinator_bodies
    assert {k for k in crossings if not k.startswith("instruction:")} <= node & coordinator


def test_no_audit_kind_is_spelled_out_anywhere_else() -> None:
    """Every kind a log gets comes from AuditKind: no string literal that looks like one is
    passed as a kind, outside the protocol module and the audit format itself."""
    values = {k.value for k in AuditKind}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ("transport/protocol.py",) or rel.startswith(("proto/", "audit/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "record":
                kinds = [k.value for k in node.keywords if k.arg == "kind"]
                if any(isinstance(k, ast.Constant | ast.JoinedStr) for k in kinds):
                    offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Constant) and node.value in values and ":" in str(node.value):
                offenders.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_local_kinds_follow_the_audit_format() -> None:
    for kind in AuditKind:
        assert kind.local == is_local_kind(kind.value)
        prefix = kind.value.split(":")[0]
        assert kind.local == (prefix in ("refused", "retention", "operator", "lifecycle", "audit"))
    # Every instruction body has its kind and its refusal kind.
    assert set(INSTRUCTION_KINDS) == set(BODY_NAMES.values())
    for sent, refused in INSTRUCTION_KINDS.values():
        assert not sent.local and refused.local


def test_the_dpo_documentation_lists_every_kind() -> None:
    page = (ROOT / "docs" / "audit-log.md").read_text()
    missing = [k.value for k in AuditKind if f"`{k.value}`" not in page]
    assert not missing, f"docs/audit-log.md does not describe: {missing}"


def test_round_states_form_one_state_machine() -> None:
    assert set(TRANSITIONS) == set(RoundState)
    for state, targets in TRANSITIONS.items():
        assert bool(targets) != state.finished, state
        if not state.finished:
            assert RoundState.FAILED in targets
    # Every state is reachable from open, and every round can finish.
    seen, todo = set(), [RoundState.OPEN]
    while todo:
        state = todo.pop()
        seen.add(state)
        todo += [t for t in TRANSITIONS[state] if t not in seen]
    assert seen == set(RoundState)
    assert RoundState.RELEASED not in CANCELLABLE and RoundState.AWAITING_RELEASE in CANCELLABLE
    # Every kind of delivery is offered in some state; only the end is offered once ended.
    assert all(OFFERED.values())
    for kind, states in OFFERED.items():
        if any(s in (RoundState.CANCELLED, RoundState.FAILED) for s in states):
            assert kind.value == "round_closed"


def test_round_states_are_spelled_once() -> None:
    """The states' names appear as strings only where they are defined or documented."""
    names = {s.value for s in RoundState} - {"open", "closed", "failed", "released", "cancelled"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ("transport/protocol.py", "coordinator/schema.py") or rel.startswith("proto/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_round_ids() -> None:
    rid = new_round_id()
    assert re.fullmatch(r"r\d{8}T\d{6}-[0-9a-f]{4}", rid) and check_round_id(rid) == rid
    for bad in ("", "../x", ".hidden", "a/b", "x" * 200, "a..b", "r1\n"):
        with pytest.raises(ProtocolError, match="unusable round id"):
            check_round_id(bad)
        assert loggable_round(bad) is None


def test_chunks_cover_every_record_once() -> None:
    for total in (0, 1, 9, 10, 11, 25):
        parts = list(chunks(total, 10))
        assert [i for i, _, _ in parts] == list(range(len(parts)))
        covered = [r for _, start, stop in parts for r in range(start, stop)]
        assert covered == list(range(total))
        assert len(parts) == max(1, -(-total // 10))
