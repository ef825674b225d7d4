"""clkhash's value pipeline: check, format and tokenise one feature's values, and give each
token occurrence its number of bit positions.

These are steps 1 to 4 of :mod:`oda_fed.encoding.clkhash` (see there), each written to give
exactly what clkhash 0.18.3 gives: the checks of its ``field_formats`` specs, the formatting of
its ``format_value``, the tokens of its ``comparators`` and the ``k`` of its strategies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from oda_fed.encoding.clkhash_schema import (
    ClkhashFeature,
    DateFormat,
    EnumFormat,
    ExactComparison,
    IntegerFormat,
    NgramComparison,
    NumericComparison,
    StringFormat,
)
from oda_fed.encoding.codepoints import CodePoints, allowed_table
from oda_fed.encoding.token_batches import TokenLists, ngram_lists

_MAX_ECHO = 32
_DATE_OUTPUT = "%Y%m%d"
_ASCII = [(0, 0x7F)]
# Strict UTF codecs encode every code point but the surrogates.
_NOT_SURROGATE = [(0, 0xD7FF), (0xE000, 0x10FFFF)]
_UPPER_ASCII = (ord("A"), ord("Z"))
_LOWER_ASCII = (ord("a"), ord("z"))
_INT64 = (-(2**63), 2**63 - 1)


def shown(value: str) -> str:
    """A value as messages show it: quoted, and cut to 32 characters so that little leaks.

    Examples
    --------
    >>> shown("x" * 40)[-3:]
    "x…'"
    """
    return repr(value if len(value) <= _MAX_ECHO else value[: _MAX_ECHO - 1] + "…")


# --- step 1 and 2: check and format a value ------------------------------------------------------


def formatter(feature: ClkhashFeature) -> Callable[[str], tuple[str | None, str | None]]:
    """The check and format of a feature's values, as clkhash's ``validate`` and ``format_value``.

    Parameters
    ----------
    feature
        A feature that is not ignored.

    Returns
    -------
    callable
        ``value -> (formatted, problem)``: exactly one of the two is ``None``. The missing-value
        sentinel is not handled here (it skips both steps).

    Examples
    --------
    >>> from oda_fed.encoding.clkhash_schema import ClkhashFeature, IntegerFormat
    >>> check = formatter(ClkhashFeature(identifier="n", index=0, format=IntegerFormat(maximum=9)))
    >>> check(" +7"), check("12")
    (('7', None), (None, 'is more than the maximum 9'))
    """
    fmt = feature.format
    encoding = feature.encoding

    def encodable(value: str) -> str | None:
        try:
            value.encode(encoding)
        except UnicodeEncodeError:
            return f"cannot be encoded as {encoding}"
        return None

    if isinstance(fmt, StringFormat):
        regex = re.compile(fmt.pattern) if fmt.pattern is not None else None

        def string(value: str) -> tuple[str | None, str | None]:
            problem = encodable(value)
            if problem is None and regex is not None:
                if regex.fullmatch(value) is None:
                    problem = f"does not match the pattern {fmt.pattern!r}"
            elif problem is None:
                size = len(value)
                if fmt.min_length is not None and size < fmt.min_length:
                    problem = f"is shorter than minLength {fmt.min_length}"
                elif fmt.max_length is not None and size > fmt.max_length:
                    problem = f"is longer than maxLength {fmt.max_length}"
                elif fmt.case == "upper" and value.upper() != value:
                    problem = "is not upper case"
                elif fmt.case == "lower" and value.lower() != value:
                    problem = "is not lower case"
            return (None, problem) if problem else (value, None)

        return string
    if isinstance(fmt, IntegerFormat):

        def integer(value: str) -> tuple[str | None, str | None]:
            problem = encodable(value)
            if problem:
                return None, problem
            try:
                number = int(value, 10)
            except ValueError:
                return None, "is not a base-10 integer"
            if fmt.minimum is not None and number < fmt.minimum:
                return None, f"is less than the minimum {fmt.minimum}"
            if fmt.maximum is not None and number > fmt.maximum:
                return None, f"is more than the maximum {fmt.maximum}"
            return str(number), None

        return integer
    if isinstance(fmt, DateFormat):

        def date(value: str) -> tuple[str | None, str | None]:
            problem = encodable(value)
            if problem:
                return None, problem
            try:
                return datetime.strptime(value, fmt.format).strftime(_DATE_OUTPUT), None
            except ValueError:
                return None, f"is not a date in the format {fmt.format!r}"

        return date
    if isinstance(fmt, EnumFormat):

        def enum(value: str) -> tuple[str | None, str | None]:
            problem = encodable(value)
            if problem:
                return None, problem
            if value not in fmt.values:
                return None, "is not one of the enum values"
            return value, None

        return enum
    raise AssertionError(f"unknown format {fmt!r}")


def format_values(
    feature: ClkhashFeature, values: Sequence[str]
) -> tuple[Sequence[str], dict[int, str], CodePoints]:
    """Steps 1 and 2 for many distinct values at once: what :func:`formatter` gives each.

    Checks that numpy can answer for every value at once (the encoding; a pattern that is one
    repeated character class, like ``[0-9]{4}``; lengths; case, for ASCII values; plain decimal
    integers and their bounds) are done that way. A value those checks cannot settle (a date,
    an enum, a pattern of another form, non-ASCII text under a case rule, an integer written
    with a sign or spaces, or any value that fails) goes through :func:`formatter` itself, so
    every result and message is its.

    Parameters
    ----------
    feature
        A feature that is not ignored.
    values
        Distinct values.

    Returns
    -------
    tuple
        ``(formatted, problems, points)``: the formatted values (the missing-value sentinel
        replaced; ``""`` for a value that fails), what is wrong with each value that fails
        (index -> ``"invalid: ..."``), and the code points of ``formatted``.

    Examples
    --------
    >>> from oda_fed.encoding.clkhash_schema import ClkhashFeature, IntegerFormat
    >>> feature = ClkhashFeature(identifier="n", index=0, format=IntegerFormat(maximum=99))
    >>> formatted, problems, _ = format_values(feature, ["42", " 7", "123"])
    >>> formatted, problems
    (['42', '7', ''], {2: 'invalid: is more than the maximum 99'})
    """
    points = CodePoints.of(values)
    missing = _is_sentinel(values, points, feature.missing_sentinel)
    settled = _settled(feature, values, points) & ~missing
    # Values that all pass unchanged (ids, dates) stay as they came, Python strings or not.
    formatted = values if settled.all() else list(values)
    replacement = feature.missing_replacement or ""
    changed = False
    for i in np.flatnonzero(missing).tolist():
        changed |= formatted[i] != replacement
        formatted[i] = replacement
    problems: dict[int, str] = {}
    check = formatter(feature)
    for i in np.flatnonzero(~(settled | missing)).tolist():
        text, problem = check(values[i])
        if problem is not None:
            problems[i] = f"invalid: {problem}"
        text = text or ""
        changed |= text != values[i]
        formatted[i] = text
    return formatted, problems, CodePoints.from_strings(formatted) if changed else points


def _is_sentinel(values: Sequence[str], points: CodePoints, sentinel: str | None) -> np.ndarray:
    if sentinel is None:
        return np.zeros(len(values), dtype=bool)
    if sentinel == "":
        return points.lengths == 0
    return np.asarray(values, dtype=object) == sentinel


def _settled(feature: ClkhashFeature, values: Sequence[str], points: CodePoints) -> np.ndarray:
    """``bool[u]``: the values that pass every check and that formatting leaves unchanged."""
    fmt = feature.format
    unsettled = np.zeros(len(values), dtype=bool)
    encoding = feature.encoding.lower().replace("_", "-")
    if encoding in ("ascii", "us-ascii"):
        encodable = allowed_table(_ASCII)
    elif encoding in ("utf-8", "utf8", "utf-16", "utf16", "utf-32", "utf32"):
        encodable = allowed_table(_NOT_SURROGATE)
    else:
        return unsettled
    if isinstance(fmt, IntegerFormat):
        # Plain decimals are ASCII digits, which every supported encoding encodes.
        ok, numbers = points.decimals()
        for bound, keep in ((fmt.minimum, np.greater_equal), (fmt.maximum, np.less_equal)):
            if bound is None:
                continue
            if not _INT64[0] <= bound <= _INT64[1]:
                return unsettled
            ok &= keep(numbers, bound)
        return ok
    if not isinstance(fmt, StringFormat):
        return unsettled
    lengths = points.lengths
    ok = np.ones(len(values), dtype=bool)
    if fmt.pattern is not None:
        shape = _one_class(fmt.pattern)
        if shape is None:
            regex = re.compile(fmt.pattern)
            ok = np.array([regex.fullmatch(value) is not None for value in values], dtype=bool)
        else:
            ranges, least, most = shape
            ok = (lengths >= least) & (lengths <= most)
            encodable = _both(encodable, allowed_table(ranges))
        return ok & points.all_allowed(encodable)
    if fmt.min_length is not None:
        ok &= lengths >= fmt.min_length
    if fmt.max_length is not None:
        ok &= lengths <= fmt.max_length
    if fmt.case != "mixed":
        # For ASCII text, lower() and upper() change exactly the letters of the other case;
        # other text is left to Python's own case rules.
        lo, hi = _UPPER_ASCII if fmt.case == "lower" else _LOWER_ASCII
        encodable = _both(encodable, allowed_table(_ASCII))
        encodable[lo : hi + 1] = False
    return ok & points.all_allowed(encodable)


def _both(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The code points two lookup tables both allow."""
    size = min(len(first), len(second))
    return first[:size] & second[:size]


def _one_class(pattern: str) -> tuple[list[tuple[int, int]], int, float] | None:
    """``(ranges, least, most)`` when ``re.fullmatch(pattern, s)`` holds exactly when ``s`` is
    ``least`` to ``most`` characters, each in one of the inclusive code point ``ranges`` (a
    pattern such as ``[0-9]{4}``, ``[a-z_]*`` or ``x``); ``None`` for any other pattern."""
    try:
        # The parser is private to re, so anything unexpected just means "not this shape".
        from re import _constants as sre  # noqa: PLC0415
        from re import _parser as parser  # noqa: PLC0415

        parsed = parser.parse(pattern)
        if parsed.state.flags & ~sre.SRE_FLAG_UNICODE or len(parsed) != 1:
            return None
        ((op, arg),) = list(parsed)
        least, most = 1, 1
        repeats = (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None))
        if op in repeats:
            least, most, body = arg
            if len(body) != 1:
                return None
            ((op, arg),) = list(body)
            most = float("inf") if most is sre.MAXREPEAT else most
        items = arg if op is sre.IN else [(op, arg)]
        ranges = []
        for kind, item in items:
            if kind is sre.LITERAL:
                ranges.append((item, item))
            elif kind is sre.RANGE:
                ranges.append(item)
            else:
                return None
        return ranges, least, most
    except Exception:  # noqa: BLE001
        return None


# --- step 3: tokens ------------------------------------------------------------------------------


def numeric_tokens(word: str, comparison: NumericComparison) -> list[str]:
    """clkhash's numeric tokens of ``word``: the grid points around it.

    The value (an integer, else a float; scaled by ``10 ** fractional_precision`` and rounded)
    is multiplied by ``2 * resolution``, moved to the nearest multiple of the grid spacing, and
    the ``2 * resolution + 1`` multiples centred on it are the tokens.

    Raises
    ------
    ValueError, OverflowError
        When ``word`` is not a number (or is infinite or NaN).

    Examples
    --------
    >>> numeric_tokens("25", NumericComparison(threshold_distance=8, resolution=2))
    ['88', '96', '104', '112', '120']
    """
    precision = comparison.fractional_precision
    interval = comparison.distance_interval
    try:
        # Integers first, so that large ones keep their precision.
        value = int(word, 10) * pow(10, precision)
    except ValueError:
        number = float(word)
        value = int(round(number * pow(10, precision))) if precision > 0 else int(number)
    value *= 2 * comparison.resolution
    residue = value % interval
    if residue and residue < interval / 2:
        value -= residue
    elif residue:
        value += interval - residue
    return [
        str(value + i * interval) for i in range(-comparison.resolution, comparison.resolution + 1)
    ]


def tokenise(
    formatted: Sequence[str], comparison: object, *, points: CodePoints | None = None
) -> tuple[TokenLists, dict[int, str]]:
    """The tokens of formatted values, as clkhash's comparators give them, repeats kept.

    Returns the tokens (an empty value has none) and the values numeric comparison cannot read
    (index -> problem); those have no tokens. ``points``, the code points of ``formatted``
    when the caller has them, saves converting the values again.

    Examples
    --------
    >>> tokenise(["ab"], NgramComparison(n=2))[0].lists()
    [[' a', 'ab', 'b ']]
    """
    if isinstance(comparison, NgramComparison):
        n = comparison.n
        found = ngram_lists(
            formatted, n, pad=" ", pad_width=n - 1, positional=comparison.positional, points=points
        )
        return found, {}
    if isinstance(comparison, ExactComparison):
        return TokenLists.from_lists([[value] if value else [] for value in formatted]), {}
    assert isinstance(comparison, NumericComparison)
    lists: list[list[str]] = []
    problems: dict[int, str] = {}
    for i, value in enumerate(formatted):
        try:
            lists.append(numeric_tokens(value, comparison) if value else [])
        except (ValueError, OverflowError):
            problems[i] = "cannot be read as a number"
            lists.append([])
    return TokenLists.from_lists(lists), problems


def token_ks(feature: ClkhashFeature, counts: np.ndarray) -> np.ndarray:
    """How many positions each token occurrence sets, for values with ``counts`` tokens.

    ``bitsPerToken = k`` gives every token ``k``; ``bitsPerFeature = K`` over ``t`` tokens gives
    the first ``K % t`` tokens ``K // t + 1`` and the others ``K // t``.

    Examples
    --------
    >>> from oda_fed.encoding.clkhash_schema import ClkhashFeature
    >>> feature = ClkhashFeature(identifier="f", index=0, strategy="bitsPerFeature", k=7)
    >>> token_ks(feature, np.array([3, 1])).tolist()
    [3, 2, 2, 7]
    """
    total = int(counts.sum())
    if feature.strategy == "bitsPerToken":
        return np.full(total, feature.k, dtype=np.int64)
    each = np.repeat(feature.k // np.maximum(counts, 1), counts)
    residue = np.repeat(feature.k % np.maximum(counts, 1), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.arange(total, dtype=np.int64) - starts
    return each + (rank < residue)
