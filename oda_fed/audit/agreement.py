"""Whether what the logs say crossed is what the signed project allows: the DPO's question.

Each entry must be under the project's fingerprint and between parties the project names. Each
kind of crossing is then held to the clause that allows it: CLKs (with record keys only where
the project keeps entity ids), an attribute a product declares for that partner, a local
product's table from its owner, a released product to a recipient the project names. A deletion
of CLKs must be for a round that received them, of as many as it received, and no sooner than
the retention period allows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from oda_fed.audit.entry import AuditEntry, is_local_kind

if TYPE_CHECKING:
    from oda_fed.config import LoadedProject

__all__ = ["check_agreement"]

COORDINATOR = "coordinator"


def _time(entry: AuditEntry) -> dt.datetime:
    return dt.datetime.strptime(entry.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _where(entry: AuditEntry) -> str:
    return f"{entry.party}'s entry seq {entry.seq} ({entry.kind}, round {entry.round or '-'})"


def _crossing_problem(loaded: LoadedProject, e: AuditEntry) -> str | None:
    project = loaded.project
    partners = set(project.partner_ids)
    product_ids = {p.id for p in project.products}
    detail = e.detail
    product = detail.get("product")
    if e.kind == "clk_chunk":
        if e.sender not in partners or e.recipient != COORDINATOR:
            return "CLKs may only go from a partner to the coordinator"
        if detail.get("record_keys") and not project.linkage.stable_entity_ids:
            return "record keys crossed, but the project does not keep stable entity ids"
    elif e.kind == "attribute_chunk":
        attribute = str(detail.get("attribute", ""))
        if product is None:
            allowed = any(
                attribute == ref.name and ref.partner == e.sender
                for p in project.products
                for ref in p.attributes()
            )
        else:
            allowed = project.attribute_allowed(
                partner=e.sender, product_id=str(product), attribute=attribute
            )
        if not allowed or e.recipient != COORDINATOR:
            return f"attribute '{attribute}' of {e.sender} is not one the project lets it share"
    elif e.kind == "local_table":
        if product not in product_ids:
            return f"a table of '{product}', a product the project does not declare"
        declared = project.product(str(product))
        if declared.kind != "local" or declared.owner != e.sender:
            return f"'{product}' is not a local product of {e.sender}"
    elif e.kind == "instruction:product_release" and product is not None:
        if product not in product_ids:
            return f"released '{product}', a product the project does not declare"
        if e.recipient not in project.product(str(product)).recipients:
            return f"released '{product}' to {e.recipient}, whom the project does not name"
    elif e.kind == "entity_chunk" and e.recipient not in partners:
        return "entity ids may only go to a partner"
    return None


def _retention_problems(loaded: LoadedProject, entries: Sequence[AuditEntry]) -> list[str]:
    received: dict[str | None, int] = {}
    first: dict[str | None, dt.datetime] = {}
    for e in entries:
        if e.kind == "clk_chunk" and e.recipient == COORDINATOR and not e.detail.get("resend"):
            received[e.round] = received.get(e.round, 0) + e.records
            first.setdefault(e.round, _time(e))
    days = loaded.project.retention.clk_days
    problems = []
    for e in entries:
        if e.kind != "retention:clks_deleted":
            continue
        if e.round not in received:
            problems.append(f"{_where(e)}: the log shows no CLKs received in that round")
        elif e.records != received[e.round]:
            problems.append(
                f"{_where(e)}: says {e.records} CLKs were deleted, but {received[e.round]} were "
                "received in that round"
            )
        elif _time(e) < first[e.round] + dt.timedelta(days=days):
            problems.append(
                f"{_where(e)}: dated before the project's retention of {days} days had passed "
                "since the round's CLKs arrived"
            )
    return problems


def check_agreement(loaded: LoadedProject, logs: Mapping[str, Sequence[AuditEntry]]) -> list[str]:
    """Every entry of every party's log that the project does not allow, with the reason.

    Parameters
    ----------
    loaded
        The signed project (with its fingerprint).
    logs
        Each party's entries, by party.
    """
    named = {*loaded.project.partner_ids, COORDINATOR}
    problems = []
    for party, entries in sorted(logs.items()):
        if party not in named:
            problems.append(f"{party} hands in a log but is not a party to the project")
        for e in entries:
            if e.project != loaded.fingerprint:
                problems.append(
                    f"{_where(e)}: under project {e.project[:23]}…, not this project "
                    f"({loaded.fingerprint[:23]}…)"
                )
                continue
            if is_local_kind(e.kind):
                continue  # a party's own act: a refused caller or an operator may be anyone
            strangers = {e.sender, e.recipient} - named
            if strangers:
                problems.append(f"{_where(e)}: {', '.join(sorted(strangers))} is not a party")
                continue
            problem = _crossing_problem(loaded, e)
            if problem:
                problems.append(f"{_where(e)}: {problem}")
        if party == COORDINATOR:
            problems += _retention_problems(loaded, entries)
    return problems
