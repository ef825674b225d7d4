"""Field types a project can link on, and the error for a value that cannot be standardised."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

from oda_fed.errors import InputDataError

FieldType = Literal[
    "name",
    "date_of_birth",
    "postcode",
    "address",
    "sex",
    "nhs_number",
    "uprn",
    "free_text",
    # Deprecated aliases, kept so that projects written before the rename still load.
    "date",
    "text",
]
"""Every field type name a project may use: the vocabulary, then the deprecated aliases.

Each has its own standardiser (:data:`oda_fed.standardise.STANDARDISERS`). ``"date"`` and
``"text"`` are deprecated aliases of ``"date_of_birth"`` and ``"free_text"``; new projects should
use the new names, and code that dispatches on a type should first map it with
:func:`canonical_field_type`.
"""

FIELD_TYPES: tuple[FieldType, ...] = get_args(FieldType)
"""Every accepted field type name, canonical names first, then the deprecated aliases."""

FIELD_TYPE_ALIASES: Mapping[str, FieldType] = MappingProxyType(
    {"date": "date_of_birth", "text": "free_text"}
)
"""Deprecated field type name to the canonical name that replaces it."""

CANONICAL_FIELD_TYPES: tuple[FieldType, ...] = tuple(
    name for name in FIELD_TYPES if name not in FIELD_TYPE_ALIASES
)
"""The project vocabulary: every field type that is not a deprecated alias."""

# Values are echoed in messages to help a partner fix their data; the message never leaves the
# node, but a long free-text value has no business in a log line either.
_MAX_ECHO = 32


def canonical_field_type(field_type: str) -> FieldType:
    """Return the canonical name of a field type, resolving the deprecated aliases.

    Parameters
    ----------
    field_type
        A field type name from a project, e.g. ``"date"`` or ``"date_of_birth"``.

    Returns
    -------
    FieldType
        The name from the project vocabulary, e.g. ``"date_of_birth"``.

    Raises
    ------
    ValueError
        When the name is not a field type at all.

    Examples
    --------
    >>> canonical_field_type("date")
    'date_of_birth'
    >>> canonical_field_type("postcode")
    'postcode'
    """
    if field_type in FIELD_TYPE_ALIASES:
        return FIELD_TYPE_ALIASES[field_type]
    if field_type not in FIELD_TYPES:
        raise ValueError(
            f"unknown field type {field_type!r}; expected one of {', '.join(CANONICAL_FIELD_TYPES)}"
        )
    return field_type  # type: ignore[return-value]  # checked against the Literal just above


class InvalidValue(InputDataError):
    """A value is present but cannot be standardised as its field type.

    The message names the field type and what was expected, and echoes a shortened copy of the
    value. It is meant for the partner's own operators: it must not be forwarded off the node.

    Parameters
    ----------
    field_type
        The field type the value was standardised as, e.g. ``"date"``.
    problem
        What is wrong and what is expected, e.g. ``"not a date (expected e.g. 31/12/1980)"``.
    value
        The offending value, echoed shortened; ``None`` leaves it out.

    Examples
    --------
    >>> str(InvalidValue("sex", "not a recognised sex (expected m, f or u)", value="q"))
    "sex: not a recognised sex (expected m, f or u): 'q'"
    """

    def __init__(self, field_type: FieldType, problem: str, *, value: str | None = None) -> None:
        self.field_type = field_type
        self.problem = problem
        message = f"{field_type}: {problem}"
        if value is not None:
            shown = value if len(value) <= _MAX_ECHO else value[: _MAX_ECHO - 1] + "…"
            message += f": {shown!r}"
        super().__init__(message)


def present(value: str | None) -> str | None:
    """Return ``value`` stripped of surrounding whitespace, or ``None`` when nothing is left.

    Every standardiser starts here, so empty and whitespace-only input means missing everywhere.

    Examples
    --------
    >>> present("  LS6 2AB ")
    'LS6 2AB'
    >>> present(" \\t") is None
    True
    """
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None
