"""The tokens a standardised value contributes to a CLK.

Every token starts with the field name and a colon, so that equal strings in two fields stay
distinct tokens even before keyed hashing separates them. Tokens of one kind within a field are
plain (``"first_name:_j"``); a field with several kinds marks the extra ones ``kind=``
(``"dob:y=1980"``, ``"postcode:out=LS6"``). Standardised values never contain ``=``, so the kinds
cannot collide.
"""

from __future__ import annotations

import re

from oda_fed.encoding.fields import FieldEncoding
from oda_fed.standardise import InvalidValue

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_PAD = "_"


def ngrams(value: str, n: int) -> list[str]:
    """Return the distinct n-grams of ``value`` padded with ``_`` at each end, in first-seen order.

    The padding (one character each side when n > 1, as clkhash does) gives the first and last
    letters tokens of their own. A value shorter than ``n`` after padding is one token.

    Examples
    --------
    >>> ngrams("john", 2)
    ['_j', 'jo', 'oh', 'hn', 'n_']
    >>> ngrams("anna", 1)
    ['a', 'n']
    """
    padded = f"{_PAD}{value}{_PAD}" if n > 1 else value
    if len(padded) <= n:
        return [padded]
    return list(dict.fromkeys(padded[i : i + n] for i in range(len(padded) - n + 1)))


def _date_tokens(value: str) -> list[str]:
    match = _ISO_DATE.fullmatch(value)
    if match is None:
        raise InvalidValue("date", "not a standardised date (expected YYYY-MM-DD)", value=value)
    year, month, day = match.groups()
    low, high = sorted((day, month))
    # Ordered day and month agree only when both are right; the unordered pair also survives
    # a day/month swap, and the year alone survives any error in the day and month.
    return [f"y={year}", f"d={day}", f"m={month}", f"dm={low}/{high}"]


def _postcode_tokens(value: str, n: int) -> list[str]:
    compact = value.replace(" ", "")
    # The outward code (district) is all but the last three characters (the inward code).
    outward, inward = (compact[:-3], compact[-3:]) if len(compact) > 3 else (compact, "")
    canonical = f"{outward} {inward}" if inward else outward
    return [*ngrams(canonical, n), f"out={outward}"]


def tokens(value: str, encoding: FieldEncoding) -> list[str]:
    """Return the distinct tokens of a standardised value, in a deterministic order.

    - name, text: padded n-grams (``"_john_"`` gives ``_j jo oh hn n_`` for n = 2).
    - date (``YYYY-MM-DD``): the year, the ordered day, the ordered month, and the unordered
      {day, month} pair, so that a day/month swap still agrees on two tokens of four.
      ``ngram`` is not used.
    - postcode: the n-grams of the canonical postcode, plus the outward code as one token.
    - sex, nhs_number: the whole value as one token.

    Each token is prefixed with ``"<field name>:"``. An empty value has no tokens.

    Parameters
    ----------
    value
        A value as the standardiser of ``encoding.type`` returns it.
    encoding
        The field's encoding.

    Returns
    -------
    list of str

    Raises
    ------
    InvalidValue
        When a date is not in ``YYYY-MM-DD`` form.

    Examples
    --------
    >>> from oda_fed.encoding.fields import FieldEncoding
    >>> tokens("1980-04-03", FieldEncoding("dob", "date"))
    ['dob:y=1980', 'dob:d=03', 'dob:m=04', 'dob:dm=03/04']
    >>> tokens("LS6 2AB", FieldEncoding("postcode", "postcode", ngram=3))[-2:]
    ['postcode:AB_', 'postcode:out=LS6']
    """
    if not value:
        return []
    kind = encoding.type
    if kind in ("name", "text"):
        parts = ngrams(value, encoding.ngram)
    elif kind == "date":
        parts = _date_tokens(value)
    elif kind == "postcode":
        parts = _postcode_tokens(value, encoding.ngram)
    else:
        parts = [value]
    prefix = f"{encoding.name}:"
    return [prefix + part for part in parts]
