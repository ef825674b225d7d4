"""Standardisation of personal names and free text.

Both fold case and accents so that "Zoë" and "ZOE" agree. They differ in punctuation: inside a
name, hyphens, apostrophes and dots join the parts ("O'Brien" -> "obrien", "Smith-Jones" ->
"smithjones"), because partners record double-barrelled names and prefixes inconsistently with and
without them; in free text every punctuation mark separates words.

A first-name field keeps every given name in order ("Mary-Jane Louise" -> "maryjane louise");
:func:`given_names` splits them and :func:`first_given_name` keeps only the first, for a project
that links on the first given name alone.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from oda_fed.standardise.fieldtypes import present

# Characters removed outright from names: hyphens and dashes, apostrophes and look-alikes, dots.
# Removed before NFKD, because NFKD turns a spacing acute accent into a space plus a combining mark.
_NAME_JOINERS = dict.fromkeys(
    map(ord, "-\u2010\u2011\u2012\u2013\u2014'\u2018\u2019\u02bc`\u00b4.")
)

# Letters NFKD does not decompose into a base letter plus marks; applied after case folding.
_LETTER_FOLDS = str.maketrans(
    {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ħ": "h"}
)

_NOT_ALNUM = re.compile(r"[^\w]|_")

# Spaces around a hyphen or apostrophe inside a name are typing slips ("Smith - Jones", "O' Brien"):
# removed first, so that the parts join as they do without the spaces.
_SPACED_JOINER = re.compile(r"\s*([\-\u2010-\u2014'\u2018\u2019\u02bc`\u00b4])\s*")

# Commas separate the parts of an inverted name ("Smith Jr, Mr John"); titles are dropped from
# each part's ends, so a title or suffix next to the comma goes too.
_NAME_PARTS = re.compile(r"[,;]")

# Titles dropped before the first and after the last remaining word. The trailing set is narrower:
# "Lord", "Dame" and "Master" are also surnames, and trailing position is where surnames sit.
# Generational suffixes (Jr, Snr, II, III, IV) are trailing titles: they are not part of the surname.
# Post-nominals are left alone, because some are surnames too ("KC" is a Nepali surname).
_LEADING_TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "master", "mstr", "dr", "prof", "professor",
        "rev", "revd", "reverend", "fr", "sir", "dame", "lord", "lady", "cllr", "rt", "hon",
        "capt", "sgt",
    }
)  # fmt: skip
_TRAILING_TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "revd",
        "jr", "jnr", "junior", "sr", "snr", "senior", "ii", "iii", "iv", "esq", "phd",
    }
)  # fmt: skip


def fold_accents(value: str) -> str:
    """Case-fold ``value`` and strip accents, mapping letters such as "ø" and "ß" to ASCII.

    Examples
    --------
    >>> fold_accents("Zoë Søren STRAßE")
    'zoe soren strasse'
    """
    if value.isascii():
        # Nothing to decompose or fold beyond case; most values take this path, and it is
        # an order of magnitude cheaper than NFKD.
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", value)
    base = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return base.casefold().translate(_LETTER_FOLDS)


def _words(value: str) -> list[str]:
    return _NOT_ALNUM.sub(" ", value).split()


def _strip_titles(words: list[str]) -> list[str]:
    """Drop leading and trailing titles, keeping at least one word."""
    start, end = 0, len(words)
    while end - start > 1 and words[start] in _LEADING_TITLES:
        start += 1
    while end - start > 1 and words[end - 1] in _TRAILING_TITLES:
        end -= 1
    return words[start:end]


def standardise_name(value: str | None) -> str | None:
    """Standardise a personal name (a first name, a surname, or a full name).

    Lower case, accents stripped (NFKD), hyphens, apostrophes and dots removed (with any spaces
    around a hyphen or apostrophe, so "Smith - Jones" and "Smith-Jones" agree), any other
    punctuation turned into a space, whitespace collapsed to single spaces. Titles ("Mr", "Mrs",
    "Dr", "Prof", "Rev", "Sir", "Dame"…) are dropped from the start and titles and generational
    suffixes ("Jr", "Snr", "II", "III") from the end of the name, and of each comma-separated part
    of an inverted name ("Smith Jr, Mr John"). Titles are kept when nothing else is left, so a
    surname that is also a title ("Lord") survives on its own. Every given name is kept, in order.
    A value with no letters or digits left is missing.

    Parameters
    ----------
    value
        The raw name; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        The standardised name, or ``None`` when missing.

    Examples
    --------
    >>> standardise_name("Mr John  SMITH-Jones")
    'john smithjones'
    >>> standardise_name("O'Brien, Zoë")
    'obrien zoe'
    >>> standardise_name("Mary-Jane Louise")
    'maryjane louise'
    """
    text = present(value)
    if text is None:
        return None
    joined = _SPACED_JOINER.sub(r"\1", text).translate(_NAME_JOINERS)
    words = [
        word
        for part in _NAME_PARTS.split(joined)
        for word in _strip_titles(_words(fold_accents(part)))
    ]
    # Again over the whole name, for a part that was nothing but a title ("Smith, Ms").
    return " ".join(_strip_titles(words)) or None


def given_names(value: str | None) -> list[str]:
    """Return the standardised given names of a first-name value, in order.

    Parameters
    ----------
    value
        A raw or standardised first-name value; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    list of str
        One standardised name per given name; empty when the value is missing.

    Examples
    --------
    >>> given_names("Mary-Jane Louise")
    ['maryjane', 'louise']
    >>> given_names(None)
    []
    """
    standardised = standardise_name(value)
    return standardised.split() if standardised else []


def first_given_name(value: str | None) -> str | None:
    """Return only the first standardised given name of a first-name value.

    The standardised first name keeps every given name, which suits records that agree on
    them all. A project whose partners record only the first given name, or record middle names
    inconsistently, can encode this instead, so that "Mary-Jane Louise" and "Mary-Jane" agree.

    Parameters
    ----------
    value
        A raw or standardised first-name value; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        The first given name, or ``None`` when the value is missing.

    Examples
    --------
    >>> first_given_name("Mary-Jane Louise")
    'maryjane'
    >>> first_given_name("maryjane louise")
    'maryjane'
    """
    names = given_names(value)
    return names[0] if names else None


@functools.cache
def _nickname_table() -> tuple[Mapping[str, int], Mapping[str, frozenset[str]]]:
    """How many nicknames each full name has, and each nickname's full names, from the
    ``nicknames`` package."""
    from nicknames import NickNamer

    namer = NickNamer()
    counts = {name: len(nicks) for name, nicks in namer.nickname_lookup.items()}
    full = {name: frozenset(names) for name, names in namer.canonical_lookup.items()}
    return MappingProxyType(counts), MappingProxyType(full)


@functools.cache
def canonical_given_name(name: str) -> str:
    """Return the full given name a standardised name is a nickname of, or the name itself.

    From the nickname table of the ``nicknames`` package: of the name itself and the full names
    it is a nickname of, the one with the most nicknames (the commonest root: "maggie" is
    Margaret rather than Magdelina), then the most like it by Jaro-Winkler similarity, then
    the first in alphabetical order, so that every node maps it alike. A name not in the table
    is returned unchanged.

    Examples
    --------
    >>> canonical_given_name("bob"), canonical_given_name("robert")
    ('robert', 'robert')
    >>> canonical_given_name("maggie"), canonical_given_name("smith")
    ('margaret', 'smith')
    """
    import jellyfish

    counts, full = _nickname_table()
    if name not in full:
        return name
    return min(
        {name, *full[name]},
        key=lambda c: (-counts.get(c, 0), -jellyfish.jaro_winkler_similarity(name, c), c),
    )


def standardise_text(value: str | None) -> str | None:
    """Standardise free text such as an address line.

    Lower case, accents stripped, every punctuation mark turned into a space, whitespace
    collapsed. A value with no letters or digits left is missing.

    Parameters
    ----------
    value
        The raw text; ``None``, empty or whitespace-only means missing.

    Returns
    -------
    str or None
        The standardised text, or ``None`` when missing.

    Examples
    --------
    >>> standardise_text("Flat 2,  14 St. Mary's Rd.")
    'flat 2 14 st mary s rd'
    """
    text = present(value)
    if text is None:
        return None
    return " ".join(_words(fold_accents(text))) or None
