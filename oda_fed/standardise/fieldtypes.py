"""Field types a project can link on, and the error for a value that cannot be standardised."""

from __future__ import annotations

from typing import Literal, get_args

from oda_fed.errors import InputDataError

FieldType = Literal["name", "date", "postcode", "sex", "nhs_number", "text"]
"""The kinds of identifier a linkage field can hold; each has its own standardiser and tokens."""

FIELD_TYPES: tuple[FieldType, ...] = get_args(FieldType)

# Values are echoed in messages to help a partner fix their data; the message never leaves the
# node, but a long free-text value has no business in a log line either.
_MAX_ECHO = 32


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
