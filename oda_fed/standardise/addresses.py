"""Standardisation of UK address lines, and their split into flat, house number, street and rest.

The standardised form is lower case ASCII words separated by single spaces, with:

- the flat first, as ``flat <id>``, wherever the source wrote it and however it named it
  (flat, flt, apartment, apt, unit): "41 Mill Road, Apt. 3b" -> "flat 3b 41 mill road";
- "3/41 Mill Rd" read as flat 3 at number 41; when another house number follows ("2/1, 41 Mill
  Road", the Scottish floor/flat form) the pair is the flat's id, "flat 2/1";
- a flat known only by its floor kept in words ("Ground Floor Flat, 41 Mill Road" ->
  "ground floor flat 41 mill road");
- a house number with its letter joined ("41 A" -> "41a"), a range written ``41-43``, and a
  "No." before it dropped;
- street-type and other common abbreviations expanded ("rd" -> "road", "gdns" -> "gardens"), and
  "st" read as "saint" where it starts a name ("St Mary's Road") and as "street" where it ends one;
- a trailing UK postcode removed, because the postcode is a field of its own.

:func:`address_parts` splits a standardised address again, so that an encoder can give the house
number an exact token and the street n-grams.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oda_fed.standardise.fieldtypes import InvalidValue, present
from oda_fed.standardise.identifiers import standardise_postcode
from oda_fed.standardise.names import fold_accents

if TYPE_CHECKING:
    import pandas as pd

# Apostrophes join ("St Mary's" -> "st marys"); removed before NFKD, as for names.
_APOSTROPHES = dict.fromkeys(map(ord, "'\u2018\u2019\u02bc`\u00b4"))
_SEGMENT_BREAK = re.compile(r"[,;:|\n\r]+")

# A trailing postcode: two to four characters with a digit, then a digit (or its O/I look-alike)
# and two letters; or the special cases. Confirmed with standardise_postcode before it is removed.
_TRAILING_POSTCODE = re.compile(
    r"(?:^|[\s,;:|])((?=[a-z0-9]{0,3}\d)[a-z][a-z0-9]{1,3}\s*[0-9oi][a-z]{2}|gir\s*0aa|bfpo\s*\d{1,4})"
    r"[\s,;:|.]*$"
)

# Tokens within one comma-separated segment: "3/41" (flat / number), "41-43" (a range), or a
# word. Anything else separates tokens.
_TOKEN = re.compile(
    r"(?<![a-z0-9])(?P<slash>\d+[a-z]?\s*/\s*\d+[a-z]?)(?![a-z0-9])"
    r"|(?<![a-z0-9])(?P<range>\d+[a-z]?\s*-\s*\d+[a-z]?)(?![a-z0-9])"
    r"|[a-z0-9]+"
)
_SPACES = re.compile(r"\s+")

_HOUSE_NUMBER = re.compile(r"\d+[a-z]?(?:-\d+[a-z]?)?")
_DIGITS = re.compile(r"\d+")
_LETTER = re.compile(r"[a-z]")
_FLAT_ID = re.compile(r"[a-z]?\d+[a-z]?|[a-z]|\d+[a-z]?/\d+[a-z]?")
_SLASH = re.compile(r"\d+[a-z]?/\d+[a-z]?")

_FLAT_MARKERS = frozenset({"flat", "flt", "apartment", "apt", "appt", "unit"})
# "Ground floor flat, 41 Mill Road": a flat described by its floor, with no id of its own.
_FLOOR_WORDS = frozenset(
    {"basement", "ground", "first", "second", "third", "top", "upper", "lower", "floor", "garden"}
)
_NUMBER_WORDS = frozenset({"no", "number"})  # "No. 41 Mill Road"

_STREET_TYPES = frozenset(
    {
        "road", "street", "lane", "avenue", "crescent", "court", "drive", "place", "square",
        "gardens", "terrace", "close", "grove", "park", "way", "walk", "mount", "view", "rise",
        "green", "parade", "heights", "mews", "hill", "row", "gate", "vale", "boulevard",
        "approach", "yard", "wharf", "quay", "circus", "causeway", "wynd", "fold", "garth",
        "croft", "chase",
    }
)  # fmt: skip
"""Words that end a street name, used to tell the street from the town after it."""

# Abbreviation -> canonical word. "st" is not here: it is "saint" or "street" by position.
_ABBREVIATIONS = {
    "rd": "road", "ave": "avenue", "av": "avenue", "avn": "avenue", "ln": "lane",
    "cres": "crescent", "cresc": "crescent", "ct": "court", "crt": "court", "dr": "drive",
    "drv": "drive", "pl": "place", "sq": "square", "gdns": "gardens", "gdn": "gardens",
    "terr": "terrace", "ter": "terrace", "tce": "terrace", "cl": "close", "clo": "close",
    "gr": "grove", "gro": "grove", "grv": "grove", "pk": "park", "hse": "house", "wy": "way",
    "wk": "walk", "wlk": "walk", "mt": "mount", "vw": "view", "grn": "green", "pde": "parade",
    "hts": "heights", "mws": "mews", "blvd": "boulevard", "yd": "yard", "cswy": "causeway",
    "bldg": "building", "bldgs": "buildings", "cotts": "cottages", "est": "estate",
    "nth": "north", "sth": "south", "gt": "great", "lwr": "lower", "upr": "upper",
}  # fmt: skip


# A plain address: a house number and words in comma-separated segments, perhaps after "Flat 3, ";
# ASCII letters and digits only, single spaces. Explicit classes, not \d or IGNORECASE, which
# also match non-ASCII digits and letters ("K", the Kelvin sign).
_PLAIN = (
    r"(?:[Ff][Ll][Aa][Tt] [0-9]+[A-Za-z]?, )?[0-9]+[A-Za-z]? [A-Za-z]{2,}(?: [A-Za-z]+)*"
    r"(?:, [A-Za-z]+(?: [A-Za-z]+)*)*"
)
_PLAIN_FLAT = r"^flat [0-9]+[a-z]?, "
# Words a rule rewrites or reads; a plain address with one of them after its flat takes the rules.
_RULED_WORDS = r"\b(?:" + "|".join(sorted({*_ABBREVIATIONS, "st", *_FLAT_MARKERS})) + r")\b"


@dataclass(frozen=True)
class AddressParts:
    """A standardised address split into the parts an encoder treats differently.

    Parameters
    ----------
    flat
        The flat's id ("3", "3b", "a", "2/1"), or ``None``.
    number
        The house number, with its letter or as a range ("41", "41a", "41-43"), or ``None``.
    street
        The street, ending with its street type where there is one ("mill road"), or ``None``.
    rest
        Every other word in order: a building name before the number, the locality and town
        after the street; ``None`` when there are none.

    Examples
    --------
    >>> AddressParts(flat="3", number="41", street="mill road", rest="leeds").number
    '41'
    """

    flat: str | None
    number: str | None
    street: str | None
    rest: str | None


def _without_trailing_postcode(text: str) -> str:
    match = _TRAILING_POSTCODE.search(text)
    if match is None:
        return text
    try:
        standardise_postcode(match[1])
    except InvalidValue:
        return text
    return text[: match.start(1)]


def _segments(text: str) -> list[list[str]]:
    """Tokens of each comma-separated segment; "3 / 41" and "41 - 43" lose their spaces."""
    segments = []
    for part in _SEGMENT_BREAK.split(text):
        tokens: list[str] = []
        for match in _TOKEN.finditer(part):
            # Only a slash pair or a range (a named group) can hold spaces.
            token = _SPACES.sub("", match[0]) if match.lastgroup else match[0]
            # "41 A Mill Road": the letter belongs to the number before it.
            if tokens and _LETTER.fullmatch(token) and _DIGITS.fullmatch(tokens[-1]):
                tokens[-1] += token
            else:
                tokens.append(token)
        if not tokens:
            continue
        # "No. 41 Mill Road": the word says only that a number follows.
        kept = [
            token
            for token, following in zip(tokens, [*tokens[1:], ""], strict=True)
            if token not in _NUMBER_WORDS or not _HOUSE_NUMBER.fullmatch(following)
        ]
        segments.append(kept)
    return segments


def _number_after(segments: list[list[str]], seg: int, index: int) -> bool:
    """Whether a house number (or a flat/number pair) comes after token ``index`` of ``seg``."""
    later = segments[seg][index + 1 :] + [t for s in segments[seg + 1 :] for t in s]
    return any(_HOUSE_NUMBER.fullmatch(t) or _SLASH.fullmatch(t) for t in later)


def _take_flat(segments: list[list[str]]) -> str | None:
    """Remove the flat's marker and id from ``segments`` and return the id, or ``None``.

    A marker with no id stays as a word of the address after a floor word ("ground floor flat",
    written "flat") and before another word ("Flat Lane", as written); at the end of its segment
    ("Flat, 41 Mill Road") it says nothing and is dropped.
    """
    for seg, tokens in enumerate(segments):
        for i, token in enumerate(tokens):
            if token in _FLAT_MARKERS:
                after_floor = i > 0 and tokens[i - 1] in _FLOOR_WORDS
                following = tokens[i + 1] if i + 1 < len(tokens) else None
                if following is not None and _FLAT_ID.fullmatch(following):
                    if _SLASH.fullmatch(following):
                        return _split_slash(segments, seg, i + 1, drop=i)
                    # "Ground floor flat 41 Mill Road": 41 is the house number, not the flat.
                    if not after_floor or _number_after(segments, seg, i + 1):
                        del tokens[i : i + 2]
                        return following
                if after_floor:
                    tokens[i] = "flat"
                elif following is None:
                    del tokens[i]
                    return _take_flat(segments)
            elif _SLASH.fullmatch(token):
                return _split_slash(segments, seg, i, drop=None)
    return None


def _split_slash(segments: list[list[str]], seg: int, index: int, *, drop: int | None) -> str:
    """Read "3/41" as flat 3 at number 41, or as flat "2/1" when a house number follows."""
    tokens = segments[seg]
    flat, number = tokens[index].split("/")
    if _number_after(segments, seg, index):
        flat, replacement = tokens[index], []
    else:
        replacement = [number]
    tokens[index : index + 1] = replacement
    if drop is not None:
        del tokens[drop]
    return flat


def _expand(tokens: list[str]) -> list[str]:
    """Expand abbreviations; "st" is "saint" where a name follows it, else "street"."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        if token == "st":
            previous = out[-1] if out else None
            starts_name = (
                previous is None or previous in _STREET_TYPES or _HOUSE_NUMBER.fullmatch(previous)
            )
            has_name = i + 1 < len(tokens) and not _HOUSE_NUMBER.fullmatch(tokens[i + 1])
            out.append("saint" if starts_name and has_name else "street")
        else:
            out.append(_ABBREVIATIONS.get(token, token))
    return out


def standardise_address(value: str | None) -> str | None:
    """Standardise a UK address (one or more address lines joined) for linkage.

    Lower case, accents stripped, apostrophes removed ("mary's" -> "marys"), other punctuation
    turned into spaces; the flat moved to the front as ``flat <id>``; house numbers, letters and
    ranges written ``41``, ``41a``, ``41-43``; abbreviations expanded; a trailing postcode
    removed. The module docstring lists the rules.

    Parameters
    ----------
    value
        The raw address; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        The standardised address, or ``None`` when missing or nothing but a postcode.

    Examples
    --------
    >>> standardise_address("Flat 3, 41 Mill Road")
    'flat 3 41 mill road'
    >>> standardise_address("Apt. 3b, 41 Mill Rd, Leeds LS6 2AB")
    'flat 3b 41 mill road leeds'
    >>> standardise_address("3/41 Mill Rd")
    'flat 3 41 mill road'
    >>> standardise_address("41a St Mary's Gdns")
    '41a saint marys gardens'
    """
    text = present(value)
    if text is None:
        return None
    folded = fold_accents(text.translate(_APOSTROPHES)).replace("&", " and ").replace(".", " ")
    segments = _segments(_without_trailing_postcode(folded))
    flat = _take_flat(segments)
    words = [word for tokens in segments for word in _expand(tokens)]
    if flat is not None:
        words[:0] = ["flat", flat]
    return " ".join(words) or None


def plain_addresses(values: pd.Series) -> pd.Series:
    """:func:`standardise_address` of the plain addresses of a string column, NA for the others.

    An address is plain when, its apostrophes removed, it is a house number (one letter at most
    joined) then words of ASCII letters, the first of two letters or more, in segments split by
    ", ", perhaps after "Flat <id>, "; and no word after the flat is one that a rule expands or
    reads (an abbreviation, "st", a flat marker). No rule but case and commas then changes it:
    a word holds no digit, so no trailing postcode, letter to join or flat/number pair. Most
    addresses are plain, and pyarrow's string kernels do them column-wide many times faster
    than one call per value.

    Examples
    --------
    >>> import pandas as pd
    >>> plain_addresses(pd.Series(["Flat 3, 41 Mill Road, Leeds", "41 Mill Rd"],
    ...                           dtype="string[pyarrow]")).tolist()
    ['flat 3 41 mill road leeds', <NA>]
    """
    text = values.str.replace("'", "", regex=False).str.replace("`", "", regex=False)
    lower = text.str.lower()
    after_flat = lower.str.replace(_PLAIN_FLAT, "", regex=True)
    plain = text.str.fullmatch(_PLAIN).fillna(False) & ~after_flat.str.contains(
        _RULED_WORDS
    ).fillna(True)
    return lower.str.replace(",", "", regex=False).where(plain)


def address_parts(standardised: str | None) -> AddressParts:
    """Split a standardised address into flat, house number, street and the rest.

    The flat is the id after a leading ``flat``. The house number is the first word that is
    one. The street is the run of words after it that ends with a street type ("road", "lane"…;
    a street type as the street's first word, as in "Park Lane", does not end it). Without a street
    type the end of the street is unknown, so every word after the number is the street. Without
    a house number the street runs from the start to the first street type. Everything else,
    in order, is the rest.

    Parameters
    ----------
    standardised
        An address as :func:`standardise_address` returns it; ``None`` or empty gives no parts.

    Returns
    -------
    AddressParts

    Examples
    --------
    >>> address_parts("flat 3 41 mill road leeds")
    AddressParts(flat='3', number='41', street='mill road', rest='leeds')
    >>> address_parts("rose cottage mill lane")
    AddressParts(flat=None, number=None, street='rose cottage mill lane', rest=None)
    """
    words = standardised.split() if standardised else []
    flat = None
    if len(words) >= 2 and words[0] == "flat" and _FLAT_ID.fullmatch(words[1]):
        flat, words = words[1], words[2:]
    number_at = next((i for i, w in enumerate(words) if _HOUSE_NUMBER.fullmatch(w)), None)
    if number_at is None:
        number, before, after = None, [], words
    else:
        number, before, after = words[number_at], words[:number_at], words[number_at + 1 :]
    end = next((i for i in range(1, len(after)) if after[i] in _STREET_TYPES), None)
    if end is None:
        street, rest = (after, before) if number is not None else ([], words)
    else:
        # "Grange Park Avenue": consecutive street types all belong to the street.
        while end + 1 < len(after) and after[end + 1] in _STREET_TYPES:
            end += 1
        street, rest = after[: end + 1], before + after[end + 1 :]
    return AddressParts(
        flat=flat,
        number=number,
        street=" ".join(street) or None,
        rest=" ".join(rest) or None,
    )
