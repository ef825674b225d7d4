"""Standardisation of identifiers before encoding.

Each ``standardise_*`` function takes one raw value and returns its canonical string, ``None``
for missing (``None``, empty or whitespace-only), or raises ``InvalidValue``.
``standardise_column`` does a whole column without raising: it counts invalid values instead.

The field types are ``name``, ``date_of_birth``, ``postcode``, ``address``, ``sex``,
``nhs_number``, ``uprn`` and ``free_text``; ``date`` and ``text`` are deprecated aliases of
``date_of_birth`` and ``free_text`` (see :func:`canonical_field_type`).

Names load on first use, so a project file (which needs only the field vocabulary) can be read
without loading pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

_HOME = {
    "AddressParts": "oda_fed.standardise.addresses",
    "CANONICAL_FIELD_TYPES": "oda_fed.standardise.fieldtypes",
    "FIELD_TYPES": "oda_fed.standardise.fieldtypes",
    "FIELD_TYPE_ALIASES": "oda_fed.standardise.fieldtypes",
    "FieldType": "oda_fed.standardise.fieldtypes",
    "InvalidValue": "oda_fed.standardise.fieldtypes",
    "STANDARDISERS": "oda_fed.standardise.column",
    "address_parts": "oda_fed.standardise.addresses",
    "canonical_field_type": "oda_fed.standardise.fieldtypes",
    "first_given_name": "oda_fed.standardise.names",
    "given_names": "oda_fed.standardise.names",
    "standardise_address": "oda_fed.standardise.addresses",
    "standardise_column": "oda_fed.standardise.column",
    "standardise_date": "oda_fed.standardise.dates",
    "standardise_name": "oda_fed.standardise.names",
    "standardise_nhs_number": "oda_fed.standardise.identifiers",
    "standardise_postcode": "oda_fed.standardise.identifiers",
    "standardise_sex": "oda_fed.standardise.identifiers",
    "standardise_text": "oda_fed.standardise.names",
    "standardise_uprn": "oda_fed.standardise.identifiers",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oda_fed.standardise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
