"""Standardisation of identifiers before encoding.

Each ``standardise_*`` function takes one raw value and returns its canonical string, ``None``
for missing (``None``, empty or whitespace-only), or raises ``InvalidValue``.
``standardise_column`` does a whole column without raising: it counts invalid values instead.

The field types are ``name``, ``date_of_birth``, ``postcode``, ``address``, ``sex``,
``nhs_number``, ``uprn`` and ``free_text``; ``date`` and ``text`` are deprecated aliases of
``date_of_birth`` and ``free_text`` (see :func:`canonical_field_type`).
"""

from oda_fed.standardise.addresses import AddressParts, address_parts, standardise_address
from oda_fed.standardise.column import STANDARDISERS, standardise_column
from oda_fed.standardise.dates import standardise_date
from oda_fed.standardise.fieldtypes import (
    CANONICAL_FIELD_TYPES,
    FIELD_TYPE_ALIASES,
    FIELD_TYPES,
    FieldType,
    InvalidValue,
    canonical_field_type,
)
from oda_fed.standardise.identifiers import (
    standardise_nhs_number,
    standardise_postcode,
    standardise_sex,
    standardise_uprn,
)
from oda_fed.standardise.names import (
    first_given_name,
    given_names,
    standardise_name,
    standardise_text,
)

__all__ = [
    "CANONICAL_FIELD_TYPES",
    "FIELD_TYPES",
    "FIELD_TYPE_ALIASES",
    "STANDARDISERS",
    "AddressParts",
    "FieldType",
    "InvalidValue",
    "address_parts",
    "canonical_field_type",
    "first_given_name",
    "given_names",
    "standardise_address",
    "standardise_column",
    "standardise_date",
    "standardise_name",
    "standardise_nhs_number",
    "standardise_postcode",
    "standardise_sex",
    "standardise_text",
    "standardise_uprn",
]
