"""Standardisation of coded identifiers: UK postcodes, sex, NHS numbers and UPRNs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from oda_fed.standardise.fieldtypes import InvalidValue, present

if TYPE_CHECKING:
    import pandas as pd

# The letter rules of the UK postcode format (BS 7666): the first letter is never Q, V or X; a
# second letter is never I, J or Z; a letter in third place (A9A) and fourth place (AA9A) comes
# from short fixed sets; the two inward letters are never C, I, K, M, O or V.
_POSTCODE = re.compile(
    r"(?P<outward>[A-PR-UWYZ](?:[0-9][0-9]?|[A-HK-Y][0-9][0-9]?|[0-9][A-HJKPSTUW]"
    r"|[A-HK-Y][0-9][ABEHMNPRVWXY]))"
    r"(?P<inward>[0-9][ABD-HJLNP-UW-Z]{2})"
)
_GIROBANK = "GIR0AA"
# British Forces Post Office addresses are written "BFPO" and a number of up to four digits.
_BFPO = re.compile(r"BFPO(\d{1,4})")

# Typing and OCR slips between look-alike characters, fixed only where the postcode format allows
# a digit alone or a letter alone, so that the fix cannot turn one valid postcode into another.
_TO_DIGIT = str.maketrans("OI", "01")
_TO_LETTER = str.maketrans("01", "OI")

_UPRN_DIGITS = 12

_SEXES = {
    **dict.fromkeys(("m", "male", "man", "boy", "1"), "m"),
    **dict.fromkeys(("f", "female", "woman", "girl", "2"), "f"),
    **dict.fromkeys(
        (
            "u", "unknown", "not known", "nk", "x", "o", "other", "i", "indeterminate",
            "n", "not specified", "not stated", "unspecified", "0", "9",
        ),
        "u",
    ),
}  # fmt: skip

_NHS_SEPARATORS = re.compile(r"[\s\-]")
_NHS_WEIGHTS = range(10, 1, -1)


def _fix_look_alikes(compact: str) -> str:
    """Fix O/0 and I/1 slips in the positions whose character class the format fixes.

    Those positions are: the first character (always a letter); the first inward character
    (always a digit); the second character of a two-character outward code (A9: a digit); and
    the second and third of a four-character outward code (AA99, AA9A: a letter, then a digit).
    Elsewhere a letter and a digit are both possible (A9A versus A99 versus AA9), and nothing is
    changed. The inward letters are never O or I, so a 0 or 1 there stays invalid.
    """
    if not 5 <= len(compact) <= 7:
        return compact
    outward, inward = list(compact[:-3]), compact[-3:]
    outward[0] = outward[0].translate(_TO_LETTER)
    if len(outward) == 2:
        outward[1] = outward[1].translate(_TO_DIGIT)
    elif len(outward) == 4:
        outward[1] = outward[1].translate(_TO_LETTER)
        outward[2] = outward[2].translate(_TO_DIGIT)
    return "".join(outward) + inward[0].translate(_TO_DIGIT) + inward[1:]


def standardise_postcode(value: str | None) -> str | None:
    """Validate a UK postcode and write it in upper case with one space before the inward code.

    Letter O typed for digit 0 and letter I for digit 1 (and the reverse) are fixed, but only in
    the positions where the format allows just one of the two: the first character is always a
    letter, the first character of the inward code always a digit, and so on (see the module
    source). So "LS6 OAB" becomes "LS6 0AB", while "W1A" and "W1O", each a possible outward code
    shape, are left as written. Two special cases are accepted: the Girobank postcode
    ``GIR 0AA``, and British Forces Post Office numbers, written ``BFPO 123``.

    Parameters
    ----------
    value
        The raw postcode, in any case and spacing; ``None``, empty or whitespace-only means
        missing.

    Returns
    -------
    str or None
        The canonical postcode, e.g. ``"LS6 2AB"``, or ``None`` when missing.

    Raises
    ------
    InvalidValue
        When the value is not in the UK postcode format.

    Examples
    --------
    >>> standardise_postcode("ls62ab")
    'LS6 2AB'
    >>> standardise_postcode(" sw1a  2aa ")
    'SW1A 2AA'
    >>> standardise_postcode("LS6 OAB")
    'LS6 0AB'
    >>> standardise_postcode("bfpo 57")
    'BFPO 57'
    """
    text = present(value)
    if text is None:
        return None
    compact = "".join(text.split()).upper()
    if (bfpo := _BFPO.fullmatch(compact)) and int(bfpo[1]) > 0:
        # Numbers are not zero-padded; "BFPO 057" is BFPO 57.
        return f"BFPO {int(bfpo[1])}"
    compact = _fix_look_alikes(compact)
    if compact == _GIROBANK:
        return "GIR 0AA"
    match = _POSTCODE.fullmatch(compact)
    if match is None:
        raise InvalidValue("postcode", "not a UK postcode (expected e.g. LS6 2AB)", value=text)
    return f"{match['outward']} {match['inward']}"


def plain_postcodes(values: pd.Series) -> pd.Series:
    """:func:`standardise_postcode` of the plain postcodes of a string column, NA for the others.

    A postcode is plain when it holds ASCII letters, digits and spaces only and, without its
    spaces and in upper case, is in the format already. No look-alike then needs fixing (the
    format puts a letter or a digit exactly where a fix would), it is no BFPO or Girobank code,
    and its inward code is its last three characters. pyarrow's string kernels do them
    column-wide many times faster than one call per value.

    Examples
    --------
    >>> import pandas as pd
    >>> plain_postcodes(pd.Series(["ls62ab", " LS6 2AB", "LS6 OAB"],
    ...                           dtype="string[pyarrow]")).tolist()
    ['LS6 2AB', 'LS6 2AB', <NA>]
    """
    compact = values.str.replace(" ", "", regex=False).str.upper()
    plain = values.str.fullmatch("[A-Za-z0-9 ]+").fillna(False) & compact.str.fullmatch(
        _POSTCODE.pattern
    ).fillna(False)
    return (compact.str.slice(stop=-3) + " " + compact.str.slice(start=-3)).where(plain)


def standardise_sex(value: str | None) -> str | None:
    """Standardise a recorded sex or gender to ``"m"``, ``"f"`` or ``"u"``.

    ``"u"`` stands for every recorded value that is neither male nor female: unknown, not
    stated, indeterminate, other, ``"x"``. The NHS Data Dictionary codes are read as written
    there: 1 male, 2 female, 0 not known, 9 not specified. Because ``"u"`` is a value rather than
    a gap, two records that both say "unknown" agree on it; a project that wants unknown to count
    as missing maps ``"u"`` to ``None`` before encoding.

    Parameters
    ----------
    value
        The raw value, any case; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        ``"m"``, ``"f"``, ``"u"``, or ``None`` when missing.

    Raises
    ------
    InvalidValue
        When the value is none of the recognised spellings.

    Examples
    --------
    >>> standardise_sex("Female")
    'f'
    >>> standardise_sex("X")
    'u'
    """
    text = present(value)
    if text is None:
        return None
    key = " ".join(text.lower().split())
    try:
        return _SEXES[key]
    except KeyError:
        raise InvalidValue(
            "sex", "not a recognised sex (expected m/male, f/female or u/unknown/x)", value=text
        ) from None


def standardise_nhs_number(value: str | None) -> str | None:
    """Validate an NHS number and return its ten digits without separators.

    Spaces and dashes are removed ("943 476 5919"). The tenth digit must be the modulus-11 check
    digit of the first nine. Numbers made of one repeated digit ("0000000000", "1111111111")
    pass the check but are placeholders, and are rejected so that they cannot link unrelated
    people.

    Parameters
    ----------
    value
        The raw NHS number; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        The ten digits, or ``None`` when missing.

    Raises
    ------
    InvalidValue
        When the value is not ten digits, its check digit is wrong, or it is a placeholder.

    Examples
    --------
    >>> standardise_nhs_number("943 476 5919")
    '9434765919'
    """
    text = present(value)
    if text is None:
        return None
    digits = _NHS_SEPARATORS.sub("", text)
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise InvalidValue("nhs_number", "not an NHS number (expected ten digits)", value=text)
    if len(set(digits)) == 1:
        raise InvalidValue("nhs_number", "a placeholder, not an NHS number", value=text)
    total = sum(int(d) * w for d, w in zip(digits[:9], _NHS_WEIGHTS, strict=True))
    check = (11 - total % 11) % 11
    if check == 10 or check != int(digits[9]):
        raise InvalidValue("nhs_number", "check digit does not match", value=text)
    return digits


def standardise_uprn(value: str | None) -> str | None:
    """Validate a Unique Property Reference Number (UPRN) and return its digits.

    A UPRN is a whole number of one to twelve digits, issued by Ordnance Survey for every
    addressable place in Great Britain. Surrounding whitespace is ignored and leading zeros are
    stripped, because some systems store UPRNs zero-padded to twelve digits and others as plain
    integers. Zero is not a UPRN: it is a placeholder, and is rejected so that it cannot link
    unrelated places.

    Parameters
    ----------
    value
        The raw UPRN; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        The digits without leading zeros, or ``None`` when missing.

    Raises
    ------
    InvalidValue
        When the value has anything but digits, has more than twelve digits, or is zero.

    Examples
    --------
    >>> standardise_uprn("000100023336956")
    '100023336956'
    >>> standardise_uprn(" 10023336956 ")
    '10023336956'
    """
    text = present(value)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise InvalidValue("uprn", "not a UPRN (expected up to twelve digits)", value=text)
    digits = text.lstrip("0")
    if not digits:
        raise InvalidValue("uprn", "zero is a placeholder, not a UPRN", value=text)
    if len(digits) > _UPRN_DIGITS:
        raise InvalidValue("uprn", "not a UPRN (expected up to twelve digits)", value=text)
    return digits
