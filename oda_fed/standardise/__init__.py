"""Standardisation of identifiers before encoding: names, dates, UK postcodes, sex, NHS numbers.

Each ``standardise_*`` function takes one raw value and returns its canonical string, ``None``
for missing (``None``, empty or whitespace-only), or raises ``InvalidValue``.
``standardise_column`` does a whole column without raising.
"""

from oda_fed.standardise.column import STANDARDISERS, standardise_column
from oda_fed.standardise.dates import standardise_date
from oda_fed.standardise.fieldtypes import FIELD_TYPES, FieldType, InvalidValue
from oda_fed.standardise.identifiers import (
    standardise_nhs_number,
    standardise_postcode,
    standardise_sex,
)
from oda_fed.standardise.names import standardise_name, standardise_text

__all__ = [
    "FIELD_TYPES",
    "STANDARDISERS",
    "FieldType",
    "InvalidValue",
    "standardise_column",
    "standardise_date",
    "standardise_name",
    "standardise_nhs_number",
    "standardise_postcode",
    "standardise_sex",
    "standardise_text",
]
