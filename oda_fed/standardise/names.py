"""Standardisation of personal names and free text.

Both fold case and accents so that "Zoë" and "ZOE" agree. They differ in punctuation: inside a
name, hyphens, apostrophes and dots join the parts ("O'Brien" -> "obrien", "Smith-Jones" ->
"smithjones"), because partners record double-barrelled names and prefixes inconsistently with and
without them; in free text every punctuation mark separates words.
"""

from __future__ import annotations

import re
import unicodedata

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

# Titles dropped before the first and after the last remaining word. The trailing set is narrower:
# "Lord", "Dame" and "Master" are also surnames, and trailing position is where surnames sit.
_LEADING_TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "master", "dr", "prof", "professor",
        "rev", "revd", "reverend", "sir", "dame", "lord", "lady", "cllr",
    }
)  # fmt: skip
_TRAILING_TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "revd",
        "jr", "jnr", "sr", "snr", "esq", "phd",
    }
)  # fmt: skip


def fold_accents(value: str) -> str:
    """Case-fold ``value`` and strip accents, mapping letters such as "ø" and "ß" to ASCII.

    Examples
    --------
    >>> fold_accents("Zoë Søren STRAßE")
    'zoe soren strasse'
    """
    decomposed = unicodedata.normalize("NFKD", value)
    base = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return base.casefold().translate(_LETTER_FOLDS)


def _words(value: str) -> list[str]:
    return _NOT_ALNUM.sub(" ", value).split()


def standardise_name(value: str | None) -> str | None:
    """Standardise a personal name (a first name, a surname, or a full name).

    Lower case, accents stripped (NFKD), hyphens, apostrophes and dots removed, any other
    punctuation turned into a space, whitespace collapsed to single spaces, and leading or trailing
    titles ("Mr", "Mrs", "Dr", "Jnr"…) dropped. Titles are kept when nothing else is left, so a
    surname that is also a title ("Lord") survives on its own. A value with no letters or digits
    left is missing.

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
    """
    text = present(value)
    if text is None:
        return None
    words = _words(fold_accents(text.translate(_NAME_JOINERS)))
    start, end = 0, len(words)
    while end - start > 1 and words[start] in _LEADING_TITLES:
        start += 1
    while end - start > 1 and words[end - 1] in _TRAILING_TITLES:
        end -= 1
    return " ".join(words[start:end]) or None


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
