"""The project agreement of a synthetic region: its partners, linkage fields and one product.

It is a plain, TOML-ready ``dict`` (this package imports nothing of oda-fed's but its errors), so
``oda-fed synth`` writes the same agreement the demo signs, which ``oda_fed.config`` then loads.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w

from oda_fed.synth.generator import Synthetic
from oda_fed.synth.lexicon import load_lexicon
from oda_fed.synth.profiles import PartnerProfile

__all__ = ["PRODUCT_ID", "project_document", "ward_codes", "write_project"]

#: The product the synthetic agreement declares: residents known to 1, 2 or 3 services, by ward.
PRODUCT_ID = "known_to_services_by_ward"

_LINKAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("first_name", "name"),
    ("last_name", "name"),
    ("date_of_birth", "date_of_birth"),
    ("sex", "sex"),
    ("postcode", "postcode"),
)


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
    return {
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
