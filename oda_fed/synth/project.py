"""The project agreement of a synthetic region: its partners, linkage fields and products.

It is a plain, TOML-ready ``dict`` (this package imports nothing of oda-fed's but its errors), so
``oda-fed synth`` writes the same agreement the demo signs, which ``oda_fed.config`` then loads.
With ``analysis``, it also declares the demo's analysis of the partners' event tables: attributes
derived from them, a cross-tabulation, a rate by ward, a prioritised list and an alert.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import tomli_w

from oda_fed.synth.events import END, EVENT_PROFILES
from oda_fed.synth.generator import Synthetic, SynthParameterError
from oda_fed.synth.lexicon import load_lexicon
from oda_fed.synth.profiles import PartnerProfile

__all__ = [
    "ALERT_ID",
    "ANALYSIS_PARTNERS",
    "CROSSTAB_ID",
    "LIST_ID",
    "PRODUCT_ID",
    "RATE_ID",
    "TABLES_AT",
    "analysis_columns",
    "project_document",
    "ward_codes",
    "write_project",
]

#: The product the synthetic agreement declares: residents known to 1, 2 or 3 services, by ward.
PRODUCT_ID = "known_to_services_by_ward"

_LINKAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("first_name", "name"),
    ("last_name", "name"),
    ("date_of_birth", "date_of_birth"),
    ("sex", "sex"),
    ("postcode", "postcode"),
)


#: The analysis's products: residents known to two or more services by age band and police
#: incidents; the share referred to social care, by ward; the council's list of residents to
#: visit first; social care's alert of its clients newly in a domestic abuse incident.
CROSSTAB_ID = "age_by_police_incidents"
RATE_ID = "social_care_referrals_by_ward"
LIST_ID = "early_help_visits"
ALERT_ID = "new_domestic_abuse"
#: And the council's own complaints caseload by ward: a local product, made at the council's node.
LOCAL_ID = "council_complaints_by_ward"
#: The partners the analysis needs: the council holds the wards and the list, social care the
#: ages and the alert, the police the incidents.
ANALYSIS_PARTNERS = ("council", "police", "social_care")
#: The day the analysis's tables are drawn at (the first extract's day). The alert looks at the
#: 90 days to the end of the history (:data:`~oda_fed.synth.events.END`), so that a later extract's
#: new incidents can fire it without changing the tables.
TABLES_AT = dt.date(2026, 3, 1)


def _source(profile: PartnerProfile) -> dict:
    """Where this partner's extract holds each linkage field and shareable attribute."""
    linked = {name for name, _ in _LINKAGE_FIELDS}
    return {
        "record_id": profile.record_id_column,
        "columns": {k: v for k, v in profile.columns.items() if k in linked},
        "attributes": dict(profile.attributes),
        "date_format": profile.date_format,
    }


def project_document(
    profiles: tuple[PartnerProfile, ...],
    *,
    threshold: float | str = "auto",
    sources: bool = False,
    analysis: bool = False,
) -> dict:
    """The synthetic partners' project agreement, as a TOML-ready dict.

    Parameters
    ----------
    profiles
        The partners, in order; the first one's wards are the product's areas.
    threshold
        The linkage threshold, or ``"auto"`` to let the quality estimate choose it.
    sources
        Also give each partner its ``[partners.source]`` column layout, so that files named
        after the partners link with no node configuration (what ``oda-fed synth`` writes).
        Without it, each node says where its columns are (what the demo does).
    analysis
        Also declare the analysis of the partners' event tables (see the module docstring), with
        stable entity ids for its alert. Needs the council, the police and social care; each
        node gives its event table in ``[[source.events]]`` and the columns of
        :func:`analysis_columns` in ``[source.attributes]``.

    Returns
    -------
    dict
        The agreement, ready for ``tomli_w.dumps``.

    Examples
    --------
    >>> from oda_fed.synth import PROFILES
    >>> doc = project_document(PROFILES[:2], sources=True)
    >>> [p["id"] for p in doc["partners"]], doc["partners"][1]["source"]["record_id"]
    (['council', 'police'], 'nominal_id')
    """
    partners = []
    for profile in profiles:
        entry: dict = {"id": profile.id, "name": profile.label}
        if sources:
            entry["source"] = _source(profile)
        partners.append(entry)
    doc = {
        "version": 1,
        "name": "known-to-services-demo",
        "title": "Residents known to several services, by ward (demonstration)",
        "purpose": "Count residents known to one, two or three services in each ward, to plan "
        "joined-up support. Synthetic data only.",
        "legal_gateway": "Demonstration only: no real personal data is processed.",
        "partners": partners,
        "linkage": {
            "bits": 1024,
            "threshold": threshold,
            "one_record_per_partner": True,
            "fields": [{"name": name, "type": type_} for name, type_ in _LINKAGE_FIELDS],
        },
        "attributes": [
            {
                "name": "ward",
                "partner": profiles[0].id,
                "title": "Electoral ward of the address",
                "derive": "value",
                # The region's ward codes: anything else (a mis-mapped column) cannot leave.
                "domain": {"codes": ward_codes()},
            }
        ],
        "products": [
            {
                "id": PRODUCT_ID,
                "kind": "partner_count_by_area",
                "title": "Residents known to 1, 2 or 3 services, by ward",
                "area": {"partner": profiles[0].id, "attribute": "ward"},
                "recipients": [*[p.id for p in profiles], "coordinator"],
            }
        ],
        "disclosure": {"min_cell": 10, "rounding_base": 5},
        "retention": {"clk_days": 30},
    }
    if analysis:
        _add_analysis(doc, [p.id for p in profiles])
    return doc


def analysis_columns(profile: PartnerProfile) -> dict[str, str]:
    """The attributes of :func:`project_document`'s analysis that ``profile``'s node derives from
    a column of its extract (not from events), to the column.

    Examples
    --------
    >>> from oda_fed.synth import PROFILES
    >>> analysis_columns(PROFILES[2])
    {'age': 'birth_date'}
    """
    return {"age": profile.columns["date_of_birth"]} if profile.id == "social_care" else {}


def _spelt(day: dt.date) -> str:
    """``1 March 2026``, for titles (Python leaves LC_TIME as C, so the month is in English)."""
    return f"{day.day} {day:%B %Y}"


def _event_attribute(partner: str, name: str, title: str, **rule: object) -> dict:
    return {
        "name": name,
        "partner": partner,
        "title": title,
        "events": EVENT_PROFILES[partner].name,
        **rule,
    }


def _add_analysis(doc: dict, partners: list[str]) -> None:
    missing = [p for p in ANALYSIS_PARTNERS if p not in partners]
    if missing:
        raise SynthParameterError(
            f"the analysis needs partners {', '.join(ANALYSIS_PARTNERS)}; missing {', '.join(missing)}"
        )
    at, alert_at = TABLES_AT.isoformat(), END.isoformat()
    when = f"in the year to {_spelt(TABLES_AT)}"
    # An alert follows entities across rounds by their linked-index ids.
    doc["linkage"]["stable_entity_ids"] = True
    doc["attributes"] += [
        {"name": "age", "partner": "social_care", "title": f"Age band on {_spelt(TABLES_AT)}",
         "derive": "age_band", "at": at, "bands": [0, 18, 65]},
        _event_attribute("police", "incidents_12m", f"Police incidents {when}",
                         derive="event_count", at=at, window_days=365, bands=[0, 1, 3]),
        _event_attribute("police", "domestic_abuse_90d",
                         f"A domestic abuse incident in the 90 days to {_spelt(END)}",
                         derive="event_any", event_types=["domestic_abuse"], at=alert_at,
                         window_days=90),
        _event_attribute("social_care", "referred_12m", f"Referred to social care {when}",
                         derive="event_any", at=at, window_days=365),
        _event_attribute("council", "housing_complaint",
                         f"A disrepair or overcrowding complaint {when}", derive="event_any",
                         event_types=["disrepair", "overcrowding"], at=at, window_days=365),
    ]  # fmt: skip
    everyone = [*partners, "coordinator"]
    doc["products"] += [
        {
            "id": CROSSTAB_ID,
            "kind": "count",
            "title": f"Residents known to two or more services, by age and police incidents {when}",
            "by": ["social_care.age", "police.incidents_12m"],
            "cohort": {"min_partners": 2},
            "recipients": everyone,
        },
        {
            "id": RATE_ID,
            "kind": "rate",
            "title": f"Residents known to two or more services: the share referred to social "
            f"care {when}, by ward",
            "by": ["council.ward"],
            "cohort": {"min_partners": 2},
            "numerator": {"social_care.referred_12m": ["yes"]},
            "recipients": ["council", "social_care", "coordinator"],
        },
        {
            "id": LIST_ID,
            "kind": "list",
            "title": "Council residents to offer an early-help visit first",
            "owner": "council",
            "recipients": ["council"],
            "indicators": [
                {
                    "attribute": "police.incidents_12m",
                    "points": {"1-2": 1, "3+": 3},
                    "group": "police",
                },
                {"attribute": "police.domestic_abuse_90d", "points": {"yes": 2}, "group": "police"},
                {
                    "attribute": "social_care.referred_12m",
                    "points": {"yes": 2},
                    "group": "social_care",
                },
                {
                    "attribute": "council.housing_complaint",
                    "points": {"yes": 1},
                    "group": "council",
                },
            ],  # fmt: skip
            "score_bands": [3, 5],
            "show_groups": True,
        },
        {
            "id": LOCAL_ID,
            "kind": "local",
            "title": f"Council residents with a disrepair or overcrowding complaint {when}, "
            "by ward (the council's own records)",
            "owner": "council",
            "by": ["council.ward"],
            "cohort": {"where": {"council.housing_complaint": ["yes"]}},
            "recipients": ["council", "coordinator"],
        },
        {
            "id": ALERT_ID,
            "kind": "alert",
            "title": "Social care clients newly involved in a domestic abuse incident",
            "owner": "social_care",
            "recipients": ["social_care"],
            "cohort": {"where": {"police.domestic_abuse_90d": ["yes"]}},
        },
    ]


def ward_codes() -> list[str]:
    """Every ward code of the synthetic region, as an authority would list its wards.

    Examples
    --------
    >>> ward_codes()[:2]
    ['E05100001', 'E05100002']
    """
    return sorted({d.ward_code for d in load_lexicon().districts})


def write_project(synthetic: Synthetic, path: Path, *, threshold: float | str = "auto") -> Path:
    """Write the agreement for ``synthetic``'s partners, with their column layouts, to ``path``.

    With the files :func:`~oda_fed.synth.write` makes beside it, ``oda-fed link`` and
    ``oda-fed encode`` need nothing else but a secret.

    Parameters
    ----------
    synthetic
        What :func:`~oda_fed.synth.generate` returned.
    path
        The ``project.toml`` to write; its folder must exist. An existing file is replaced.
    threshold
        As for :func:`project_document`.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> from oda_fed.synth import generate
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_project(generate(population=50, partners=2), Path(tmp) / "project.toml").name
    'project.toml'
    """
    doc = project_document(synthetic.profiles, threshold=threshold, sources=True)
    path = Path(path)
    path.write_bytes(tomli_w.dumps(doc).encode("utf-8"))
    return path
