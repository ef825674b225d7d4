"""Standardisation of a whole column, each distinct value once."""

from __future__ import annotations

import datetime as dt
import numbers
import re
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from oda_fed.standardise.addresses import plain_addresses, standardise_address
from oda_fed.standardise.dates import loose_date, standardise_date
from oda_fed.standardise.fieldtypes import (
    CANONICAL_FIELD_TYPES,
    FIELD_TYPE_ALIASES,
    FieldType,
    InvalidValue,
    canonical_field_type,
)
from oda_fed.standardise.identifiers import (
    plain_postcodes,
    standardise_nhs_number,
    standardise_postcode,
    standardise_sex,
    standardise_uprn,
)
from oda_fed.standardise.names import standardise_name, standardise_text

_CANONICAL_STANDARDISERS: dict[FieldType, Callable[[str | None], str | None]] = {
    "name": standardise_name,
    "date_of_birth": standardise_date,
    "postcode": standardise_postcode,
    "address": standardise_address,
    "sex": standardise_sex,
    "nhs_number": standardise_nhs_number,
    "uprn": standardise_uprn,
    "free_text": standardise_text,
}

STANDARDISERS: dict[FieldType, Callable[[str | None], str | None]] = {
    **_CANONICAL_STANDARDISERS,
    **{alias: _CANONICAL_STANDARDISERS[name] for alias, name in FIELD_TYPE_ALIASES.items()},
}
"""The single-value standardiser of each field type, deprecated aliases included.

Each raises ``InvalidValue`` for a present value it cannot standardise; ``standardise_column``
counts those instead.
"""

# Column-wide standardisers of the values that need no rule a call per value applies (most
# addresses and postcodes, which are mostly distinct); NA for the rest, done one at a time.
_PLAIN_STANDARDISERS: dict[FieldType, Callable[[pd.Series], pd.Series]] = {
    "address": plain_addresses,
    "postcode": plain_postcodes,
}


def _as_text(value: object) -> str | None:
    """Turn a cell as a reader typed it back into text; ``None`` for a missing cell."""
    if isinstance(value, str):
        return value
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    # Readers type date and number columns; turn them back into what a partner wrote.
    if isinstance(value, dt.date | np.datetime64):
        stamp = pd.Timestamp(value)
        return None if pd.isna(stamp) else stamp.date().isoformat()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        real = float(value)
        if np.isnan(real):
            return None
        # An integer column with gaps comes back as float: 9434765919.0 is an NHS number.
        if real.is_integer():
            return str(int(real))
    return str(value)


def kept_value(value: str, field_type: FieldType) -> str | None:
    """What ``on_invalid = "keep"`` encodes of a present value its standardiser refused: the
    characters that still say something, in the form valid values of the type take, so the
    CLK and the field evidence can still compare them.

    A date keeps its digits in ISO form when it has a date's shape (:func:`loose_date`), and is
    missing otherwise (``"n/k"`` says nothing of a birthday); an
    identifier its digits; a postcode its letters and digits, upper case; anything else its
    words, folded as free text.

    Examples
    --------
    >>> kept_value("29/02/2009", "date_of_birth"), kept_value("ls6 2a!", "postcode")
    ('2009-02-29', 'LS6 2A')
    >>> kept_value("943 476 5918", "nhs_number")
    '9434765918'
    """
    kind = canonical_field_type(field_type)
    if kind == "date_of_birth":
        return loose_date(value)
    if kind in ("nhs_number", "uprn"):
        return re.sub(r"\D", "", value) or None
    if kind == "postcode":
        return " ".join(re.sub(r"[^A-Z0-9 ]", "", value.upper()).split()) or None
    return standardise_text(value)


def standardise_column(
    values: pd.Series, field_type: FieldType, *, fmt: str | None = None, keep: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Standardise every value of a column without raising on bad values.

    Each distinct value is standardised once, so a million rows of repeating names, dates and
    postcodes cost as much as their distinct values.

    Parameters
    ----------
    values
        The raw column. Cells may be strings, or numbers and dates where a reader typed them.
        ``None``, NaN, NaT, empty and whitespace-only cells are missing.
    field_type
        How to standardise the values; a deprecated alias ("date", "text") works as the type it
        names.
    fmt
        For date fields only (``"date_of_birth"`` or its alias ``"date"``): an exact
        ``strptime`` format (see ``standardise_date``).
    keep
        Give an invalid value's :func:`kept_value` instead of ``None`` (it is still flagged
        invalid).

    Returns
    -------
    standardised : pandas.Series
        Object dtype, same index and name as ``values``: the standardised strings, with
        ``None`` for missing and for invalid cells.
    invalid : pandas.Series
        Boolean, same index: ``True`` where a present value could not be standardised. Missing
        cells are not invalid. The caller decides whether to reject the file (the index gives
        the rows) or to count invalid cells as missing. No field type raises on a bad value:
        an impossible date (31/02/2000), a failed NHS number check digit or a malformed
        postcode is counted here.

    Raises
    ------
    ValueError
        When ``field_type`` is unknown, or ``fmt`` is given for a field that is not a date.

    Examples
    --------
    >>> clean, invalid = standardise_column(pd.Series(["ls62ab", "", "nowhere"]), "postcode")
    >>> clean.tolist(), invalid.tolist()
    (['LS6 2AB', None, None], [False, False, True])
    """
    if field_type not in STANDARDISERS:
        raise ValueError(
            f"unknown field type {field_type!r}; expected one of {', '.join(CANONICAL_FIELD_TYPES)}"
        )
    standardise = STANDARDISERS[field_type]
    if fmt is not None:
        if canonical_field_type(field_type) != "date_of_birth":
            raise ValueError(f"fmt applies to date fields only, not {field_type!r}")
        standardise = partial(standardise_date, fmt=fmt)
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=object)

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    # One extra slot at the end, so that the sentinel code -1 of missing cells reads (None, False).
    results = np.full(len(uniques) + 1, None, dtype=object)
    bad = np.zeros(len(uniques) + 1, dtype=bool)
    raws = uniques.tolist()  # iterating an Arrow-backed index boxes each value: many times slower
    todo = range(len(raws))
    plain_of = _PLAIN_STANDARDISERS.get(canonical_field_type(field_type))
    if plain_of is not None and pd.api.types.infer_dtype(uniques, skipna=False) == "string":
        plain = plain_of(pd.Series(uniques, dtype="string[pyarrow]"))
        done = plain.notna().to_numpy(dtype=bool)
        results[:-1][done] = plain[done].to_numpy(dtype=object)
        todo = np.flatnonzero(~done).tolist()
    for i in todo:
        raw = raws[i]
        try:
            results[i] = standardise(_as_text(raw))
        except InvalidValue:
            bad[i] = True
            if keep:
                results[i] = kept_value(str(_as_text(raw)), field_type)
    standardised = pd.Series(results[codes], index=values.index, name=values.name, dtype=object)
    invalid = pd.Series(bad[codes], index=values.index, name=values.name, dtype=bool)
    return standardised, invalid
