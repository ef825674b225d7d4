"""The tokens a standardised value contributes to a CLK, one value at a time or in batches.

Every token starts with the field name and a colon, so that equal strings in two fields stay
distinct tokens even before keyed hashing separates them. Tokens of one kind within a field are
plain (``"first_name:_j"``); a field with several kinds marks the extra ones ``kind=``
(``"dob:y=1980"``, ``"postcode:out=LS6"``). Standardised values never contain ``=``, so the kinds
cannot collide.

:func:`tokens` tokenises one value. :func:`token_lists` tokenises a batch of distinct values into
a :class:`~oda_fed.encoding.token_batches.TokenLists` (compressed sparse rows) with the same
tokens per value; for n-gram fields it cuts all values at once
(:func:`~oda_fed.encoding.token_batches.ngram_lists`) and builds a string only once per distinct
token, which is what makes encoding a large population fast.

Each field type has one entry in ``_TOKENIZERS``; a type without a batch tokenizer in
``_BATCH_TOKENIZERS`` is batched by calling its one-value tokenizer on each value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from oda_fed.encoding.fields import FieldEncoding
from oda_fed.encoding.token_batches import TokenLists, ngram_lists
from oda_fed.standardise import InvalidValue

# TokenLists and ngram_lists live in token_batches; they are named here too, where callers and
# earlier versions import them from.
__all__ = ["TokenLists", "ngram_lists", "ngrams", "token_lists", "tokens"]

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_PAD = "_"


def ngrams(value: str, n: int) -> list[str]:
    """Return the distinct n-grams of ``value`` padded with ``_`` at each end, in first-seen order.

    The padding (one character each side when n > 1) gives the first and last letters tokens of
    their own. A value shorter than ``n`` after padding is one token.

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


# --- the tokens of each field type -------------------------------------------------------------


def _ngram_parts(value: str, encoding: FieldEncoding) -> list[str]:
    return ngrams(value, encoding.ngram)


def _date_parts(value: str, encoding: FieldEncoding) -> list[str]:
    match = _ISO_DATE.fullmatch(value)
    if match is None:
        raise InvalidValue("date", "not a standardised date (expected YYYY-MM-DD)", value=value)
    year, month, day = match.groups()
    low, high = sorted((day, month))
    # Ordered day and month agree only when both are right; the unordered pair also survives
    # a day/month swap, and the year alone survives any error in the day and month.
    return [f"y={year}", f"d={day}", f"m={month}", f"dm={low}/{high}"]


def _split_postcode(value: str) -> tuple[str, str]:
    """``(canonical, outward)``: the postcode with one space before the inward code."""
    compact = value.replace(" ", "")
    # The outward code (district) is all but the last three characters (the inward code).
    outward, inward = (compact[:-3], compact[-3:]) if len(compact) > 3 else (compact, "")
    return (f"{outward} {inward}" if inward else outward), outward


def _postcode_parts(value: str, encoding: FieldEncoding) -> list[str]:
    canonical, outward = _split_postcode(value)
    return [*ngrams(canonical, encoding.ngram), f"out={outward}"]


def _whole_value(value: str, encoding: FieldEncoding) -> list[str]:
    return [value]


Tokenizer = Callable[[str, FieldEncoding], list[str]]
"""Tokens of one non-empty value, without the field prefix."""

BatchTokenizer = Callable[[Sequence[str], FieldEncoding], TokenLists]
"""Tokens of many non-empty values, with the field prefix; the same tokens as the one-value form."""

_TOKENIZERS: dict[str, Tokenizer] = {
    "name": _ngram_parts,
    "free_text": _ngram_parts,
    "text": _ngram_parts,
    "address": _ngram_parts,
    "date_of_birth": _date_parts,
    "date": _date_parts,
    "postcode": _postcode_parts,
    "sex": _whole_value,
    "nhs_number": _whole_value,
    "uprn": _whole_value,
}


def _batch_ngrams(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    n = encoding.ngram
    return ngram_lists(values, n, pad=_PAD, pad_width=1 if n > 1 else 0, prefix=f"{encoding.name}:")


def _batch_postcodes(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    split = [_split_postcode(value) for value in values]
    if not all(canonical for canonical, _ in split):
        # A value of spaces only has an empty canonical form, which the one-value n-grams pad
        # into a token; such values are rare enough to take the one-value path.
        return TokenLists.from_lists([tokens(value, encoding) for value in values])
    grams = _batch_ngrams([canonical for canonical, _ in split], encoding)
    prefix = f"{encoding.name}:out="
    return grams.then(TokenLists.single([prefix + outward for _, outward in split]))


def _batch_whole_values(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    prefix = f"{encoding.name}:"
    return TokenLists.single([prefix + value for value in values])


_ZERO, _NINE, _DASH = ord("0"), ord("9"), ord("-")
_DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]


def _batch_dates(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    """Date tokens of many ``YYYY-MM-DD`` values, reading the digits as arrays of code points.

    Values not of exactly that ASCII form take the one-value path, which accepts the other
    digits the pattern allows and raises for the rest.
    """
    u = len(values)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=u)
    cps = np.array(values, dtype="<U10").view(np.uint32).reshape(u, 10)
    digits = cps[:, _DATE_DIGITS]
    fast = (
        (lens == 10)
        & ((digits >= _ZERO) & (digits <= _NINE)).all(axis=1)
        & (cps[:, 4] == _DASH)
        & (cps[:, 7] == _DASH)
    )
    d = digits[fast].astype(np.int64) - _ZERO
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    # Two-digit strings sort as their numbers, so the unordered pair is (min, max).
    pair = np.minimum(day, month) * 100 + np.maximum(day, month)
    prefix = encoding.name
    kinds = [
        (year, lambda y: f"{prefix}:y={y:04d}"),
        (day, lambda x: f"{prefix}:d={x:02d}"),
        (month, lambda x: f"{prefix}:m={x:02d}"),
        (pair, lambda x: f"{prefix}:dm={x // 100:02d}/{x % 100:02d}"),
    ]
    index = np.empty((len(year), len(kinds)), dtype=np.int64)
    keys: list[Hashable] = []
    for j, (numbers, spell) in enumerate(kinds):
        distinct, inverse = np.unique(numbers, return_inverse=True)
        index[:, j] = inverse.reshape(-1) + len(keys)
        keys.extend(spell(x) for x in distinct.tolist())
    offsets = np.arange(0, index.size + 1, len(kinds), dtype=np.int64)
    found = TokenLists(offsets, index.reshape(-1), keys)
    slow = np.flatnonzero(~fast)
    if not slow.size:
        return found
    rest = TokenLists.from_lists([tokens(values[i], encoding) for i in slow.tolist()])
    return TokenLists.scatter(u, [(np.flatnonzero(fast), found), (slow, rest)])


_BATCH_TOKENIZERS: dict[str, BatchTokenizer] = {
    "name": _batch_ngrams,
    "free_text": _batch_ngrams,
    "text": _batch_ngrams,
    "address": _batch_ngrams,
    "postcode": _batch_postcodes,
    "date_of_birth": _batch_dates,
    "date": _batch_dates,
    "sex": _batch_whole_values,
    "nhs_number": _batch_whole_values,
    "uprn": _batch_whole_values,
}


def tokens(value: str, encoding: FieldEncoding) -> list[str]:
    """Return the distinct tokens of a standardised value, in a deterministic order.

    - name, free text, address: padded n-grams (``"_john_"`` gives ``_j jo oh hn n_`` for
      n = 2).
    - date of birth (``YYYY-MM-DD``): the year, the ordered day, the ordered month, and the
      unordered {day, month} pair, so that a day/month swap still agrees on two tokens of four.
      ``ngram`` is not used.
    - postcode: the n-grams of the canonical postcode, plus the outward code as one token.
    - sex, NHS number, UPRN and any other type: the whole value as one token.

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
    parts = _TOKENIZERS.get(encoding.type, _whole_value)(value, encoding)
    prefix = f"{encoding.name}:"
    return [prefix + part for part in parts]


def token_lists(values: Sequence[str], encoding: FieldEncoding) -> TokenLists:
    """Return the tokens of many values: for each value, the tokens :func:`tokens` gives.

    Order within a value and repeats may differ from :func:`tokens` (they set the same bits);
    the set of tokens of each value is the same.

    Parameters
    ----------
    values
        Standardised values, each distinct value once (the work is per value).
    encoding
        The field's encoding.

    Returns
    -------
    TokenLists

    Raises
    ------
    InvalidValue
        When a date is not in ``YYYY-MM-DD`` form.

    Examples
    --------
    >>> from oda_fed.encoding.fields import FieldEncoding
    >>> token_lists(["jo", ""], FieldEncoding("f", "name")).lists()
    [['f:_j', 'f:jo', 'f:o_'], []]
    """
    batch = _BATCH_TOKENIZERS.get(encoding.type)
    if batch is None:
        return TokenLists.from_lists([tokens(value, encoding) for value in values])
    nonempty = [i for i, value in enumerate(values) if value]
    if len(nonempty) == len(values):
        return batch(values, encoding)
    # Empty values have no tokens; the batch tokenizers only see the others.
    found = batch([values[i] for i in nonempty], encoding)
    counts = np.zeros(len(values), dtype=np.int64)
    counts[nonempty] = found.counts
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return TokenLists(offsets, found.index, found.keys)
