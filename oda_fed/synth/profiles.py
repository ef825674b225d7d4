"""Partner profiles: how each kind of partner names, formats and numbers its records.

A profile is the part of a partner's data layout that another partner or the lead may rely on
(column names, date format). A style holds the cosmetic habits of the partner's system (upper-case
names, postcodes without a space, sex labels) that the node's standardiser must undo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["CANONICAL_FIELDS", "PROFILES", "STYLES", "PartnerProfile", "PartnerStyle"]

#: Fields every profile maps, in the order they are written; ``nhs_number`` is optional.
CANONICAL_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "date_of_birth",
    "sex",
    "address",
    "postcode",
    "nhs_number",
)


@dataclass(frozen=True)
class PartnerProfile:
    """Layout of one partner's extract.

    Parameters
    ----------
    id
        Partner id, also the CSV stem: ``"council"``, ``"police"``, ...
    label
        Human-readable name of the partner.
    record_id_column
        Column holding the partner's own record id.
    columns
        Canonical field name to this partner's column name.
    date_format
        ``strftime`` format the partner writes dates in (``%d %m %Y %b %B`` only).
    attributes
        Shareable attribute name to column, e.g. ``{"ward": "ward_code"}``.

    Examples
    --------
    >>> council = PROFILES[0]
    >>> council.columns["last_name"], council.date_format
    ('surname', '%d/%m/%Y')
    """

    id: str
    label: str
    record_id_column: str
    columns: Mapping[str, str]
    date_format: str
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class PartnerStyle:
    """Cosmetic habits of a partner's system; internal to the generator.

    Parameters
    ----------
    record_prefix
        Prefix of record ids, e.g. ``"C"`` gives ``"C0012345"``.
    sex_labels
        Labels written for (female, male).
    name_case
        ``"as_is"`` or ``"upper"`` (older case-management systems shout).
    ascii_only
        Whether the system drops diacritics (``Zoë`` becomes ``Zoe``).
    postcode_style
        ``"spaced"`` (``LS6 2AB``), ``"compact"`` (``LS62AB``) or ``"lower"`` (``ls6 2ab``).
    nhs_style
        ``"plain"`` (``4857773456``) or ``"spaced"`` (``485 777 3456``).
    coverage
        Probability that a person in the region is known to this partner.
    """

    record_prefix: str
    sex_labels: tuple[str, str]
    name_case: Literal["as_is", "upper"] = "as_is"
    ascii_only: bool = False
    postcode_style: Literal["spaced", "compact", "lower"] = "spaced"
    nhs_style: Literal["plain", "spaced"] = "plain"
    coverage: float = 0.6


def _columns(**names: str) -> Mapping[str, str]:
    return MappingProxyType(dict(names))


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})

#: The partner kinds a synthetic region can have; ``generate(partners=p)`` uses the first ``p``.
PROFILES: tuple[PartnerProfile, ...] = (
    PartnerProfile(
        id="council",
        label="City Council (housing and council tax)",
        record_id_column="person_ref",
        columns=_columns(
            first_name="forename",
            last_name="surname",
            date_of_birth="dob",
            sex="gender",
            address="address_line_1",
            postcode="post_code",
        ),
        date_format="%d/%m/%Y",
        attributes=MappingProxyType({"ward": "ward_code"}),
    ),
    PartnerProfile(
        id="police",
        label="Police (nominal records)",
        record_id_column="nominal_id",
        columns=_columns(
            first_name="first_names",
            last_name="family_name",
            date_of_birth="date_of_birth",
            sex="sex",
            address="home_address",
            postcode="postcode",
        ),
        date_format="%Y-%m-%d",
        attributes=_NO_ATTRIBUTES,
    ),
    PartnerProfile(
        id="social_care",
        label="Children's and Adult Social Care",
        record_id_column="client_id",
        columns=_columns(
            first_name="given_name",
            last_name="last_name",
            date_of_birth="birth_date",
            sex="sex",
            address="address",
            postcode="postcode",
            nhs_number="nhs_no",
        ),
        date_format="%d-%b-%Y",
        attributes=_NO_ATTRIBUTES,
    ),
    PartnerProfile(
        id="fire",
        label="Fire and Rescue Service (home safety visits)",
        record_id_column="occupant_id",
        columns=_columns(
            first_name="first_name",
            last_name="surname",
            date_of_birth="dob",
            sex="sex",
            address="premises_address",
            postcode="premises_postcode",
        ),
        date_format="%Y%m%d",
        attributes=_NO_ATTRIBUTES,
    ),
    PartnerProfile(
        id="nhs_trust",
        label="NHS Trust (patient administration)",
        record_id_column="mrn",
        columns=_columns(
            first_name="forename",
            last_name="surname",
            date_of_birth="date_of_birth",
            sex="sex",
            address="address",
            postcode="postcode",
            nhs_number="nhs_number",
        ),
        date_format="%d-%m-%Y",
        attributes=_NO_ATTRIBUTES,
    ),
    PartnerProfile(
        id="housing",
        label="Housing Association (tenancies)",
        record_id_column="tenant_ref",
        columns=_columns(
            first_name="tenant_forename",
            last_name="tenant_surname",
            date_of_birth="tenant_dob",
            sex="tenant_sex",
            address="property_address",
            postcode="property_postcode",
        ),
        date_format="%d %B %Y",
        attributes=_NO_ATTRIBUTES,
    ),
)

#: Cosmetic habits per partner id.
STYLES: Mapping[str, PartnerStyle] = MappingProxyType(
    {
        "council": PartnerStyle(record_prefix="C", sex_labels=("F", "M"), coverage=0.7),
        "police": PartnerStyle(
            record_prefix="NOM",
            sex_labels=("Female", "Male"),
            name_case="upper",
            ascii_only=True,
            coverage=0.55,
        ),
        "social_care": PartnerStyle(
            record_prefix="SC", sex_labels=("F", "M"), nhs_style="spaced", coverage=0.6
        ),
        "fire": PartnerStyle(
            record_prefix="F",
            sex_labels=("FEMALE", "MALE"),
            ascii_only=True,
            postcode_style="compact",
            coverage=0.5,
        ),
        "nhs_trust": PartnerStyle(record_prefix="RX", sex_labels=("Female", "Male"), coverage=0.65),
        "housing": PartnerStyle(
            record_prefix="T", sex_labels=("f", "m"), postcode_style="lower", coverage=0.5
        ),
    }
)
