"""Count and rate products over attributes from several partners, in a real federation: each
partner derives its attribute at its node, and only controlled tables reach the recipients."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest
import tomli_w

from oda_fed.audit import read_entries
from oda_fed.transport.protocol import AuditKind, RoundState

pytestmark = pytest.mark.grpc


def add_age_and_products(doc: dict) -> None:
    doc["attributes"].append(
        {
            "name": "age",
            "partner": "social_care",
            "title": "Age band on 1 April 2026",
            "derive": "age_band",
            "at": "2026-04-01",
            "bands": [0, 18, 65],
        }
    )
    doc["products"] += [
        {
            "id": "ward_by_age",
            "kind": "count",
            "title": "Residents known to two or more services, by ward and age",
            "by": ["council.ward", "social_care.age"],
            "cohort": {"min_partners": 2},
            "recipients": ["council", "social_care", "coordinator"],
        },
        {
            "id": "older_share",
            "kind": "rate",
            "title": "Share aged 65 or over, by ward",
            "by": ["council.ward"],
            "numerator": {"social_care.age": ["65+"]},
            "recipients": ["police"],
        },
    ]


def map_age(fed) -> None:
    path = fed.node_config("social_care")
    doc = tomllib.loads(path.read_text())
    doc["source"]["attributes"]["age"] = fed.synthetic.profiles[2].columns["date_of_birth"]
    path.write_text(tomli_w.dumps(doc))


def test_a_cross_tabulation_and_a_rate_from_two_partners_attributes(federation) -> None:
    federation.amend_project(add_age_and_products)
    map_age(federation)
    threads = [federation.run_node(p) for p in federation.partners]
    admin = federation.admin()
    status = admin.wait(admin.start_round().round_id, timeout=120)
    admin.close()
    assert status.state is RoundState.CLOSED, status.message
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not errors, errors

    def released(partner: str, product: str) -> pd.DataFrame:
        folder = federation.workdir / "nodes" / partner / "state" / "releases" / status.round_id
        return pd.read_csv(folder / product / f"{product}.csv", dtype=str, keep_default_na=False)

    cross = released("social_care", "ward_by_age")
    assert list(cross.columns) == ["council.ward", "social_care.age", "count", "suppressed"]
    assert set(cross["social_care.age"]) == {"0-17", "18-64", "65+", "not known"}
    # Every ward the council lists has its rows, linked residents or not.
    assert cross["council.ward"].nunique() == 30 + 1  # the region's wards and "not known"
    hidden = cross[cross.suppressed == "true"]
    assert (hidden["count"] == "suppressed").all() and len(hidden) < len(cross)
    assert (cross[cross.suppressed == "false"]["count"].astype(int) % 5 == 0).all()
    # Only its recipients got it.
    assert not (federation.workdir / "nodes" / "police" / "state" / "releases" / status.round_id
                / "ward_by_age").exists()  # fmt: skip

    rate = released("police", "older_share")
    assert list(rate.columns) == ["council.ward", "count", "suppressed", "denominator", "rate"]
    shown = rate[rate.rate != "suppressed"]
    assert len(shown) > 0
    share = shown["count"].astype(float) / shown["denominator"].astype(float)
    assert (share - shown["rate"].astype(float)).abs().max() < 1e-4  # from what is published
    assert (rate[rate.suppressed == "true"]["rate"] == "suppressed").all()

    log = federation.workdir / "coordinator" / "audit" / "coordinator.jsonl"
    checked = [e.detail["product"] for e in read_entries(log)
               if e.kind == AuditKind.DISCLOSURE_CHECKED]  # fmt: skip
    assert sorted(checked) == [
        "known_to_services_by_ward",
        "older_share.denominator",
        "older_share.numerator",
        "ward_by_age",
    ]
    page = federation.workdir / "coordinator" / "products" / status.round_id / "report.html"
    text = page.read_text()
    assert "by ward and age" in text and "% of " in text
