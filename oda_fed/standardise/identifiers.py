"""Standardisation of coded identifiers: UK postcodes, sex, and NHS numbers."""

from __future__ import annotations

import re

from oda_fed.standardise.fieldtypes import InvalidValue, present

# The letter rules of the UK postcode format (BS 7666): the first letter is never Q, V or X; a
# second letter is never I, J or Z; a letter in third place (A9A) and fourth place (AA9A) comes
# from short fixed sets; the two inward letters are never C, I, K, M, O or V.
_POSTCODE = re.compile(
    r"(?P<outward>[A-PR-UWYZ](?:[0-9][0-9]?|[A-HK-Y][0-9][0-9]?|[0-9][A-HJKPSTUW]"
    r"|[A-HK-Y][0-9][ABEHMNPRVWXY]))"
    r"(?P<inward>[0-9][ABD-HJLNP-UW-Z]{2})"
)
_GIROBANK = "GIR0AA"

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


def standardise_postcode(value: str | None) -> str | None:
    """Validate a UK postcode and write it in upper case with one space before the inward code.

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
    """
    text = present(value)
    if text is None:
        return None
    compact = "".join(text.split()).upper()
    if compact == _GIROBANK:
        return "GIR 0AA"
    match = _POSTCODE.fullmatch(compact)
    if match is None:
        raise InvalidValue("postcode", "not a UK postcode (expected e.g. LS6 2AB)", value=text)
    return f"{match['outward']} {match['inward']}"


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
