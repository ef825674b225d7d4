from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oda_fed.standardise import (
    InvalidValue,
    standardise_nhs_number,
    standardise_postcode,
    standardise_sex,
    standardise_uprn,
)
from oda_fed.standardise.identifiers import _POSTCODE, plain_postcodes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ls62ab", "LS6 2AB"),
        ("LS6 2AB", "LS6 2AB"),
        ("  ls6   2ab ", "LS6 2AB"),
        ("Ls6\u00a02aB", "LS6 2AB"),  # non-breaking space
        ("sw1a2aa", "SW1A 2AA"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("W1A 0AX", "W1A 0AX"),
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("gir0aa", "GIR 0AA"),
    ],
)
def test_standardise_postcode(raw: str, expected: str) -> None:
    assert standardise_postcode(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "LS6",  # outward code only
        "2AB",
        "12345",
        "LS6 2AB 1",
        "QS6 2AB",  # Q never starts a postcode
        "LI6 2AB",  # I is never second
        "LS6 2CB",  # C is never in the inward code
        "LS6-2AB",
        "LSS6 2AB",
    ],
)
def test_invalid_postcode(raw: str) -> None:
    with pytest.raises(InvalidValue, match="postcode: not a UK postcode"):
        standardise_postcode(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("m", "m"),
        ("M", "m"),
        ("Male", "m"),
        (" MALE ", "m"),
        ("1", "m"),
        ("f", "f"),
        ("Female", "f"),
        ("2", "f"),
        ("u", "u"),
        ("Unknown", "u"),
        ("X", "u"),
        ("other", "u"),
        ("Not  Known", "u"),
        ("9", "u"),
        ("0", "u"),
    ],
)
def test_standardise_sex(raw: str, expected: str) -> None:
    assert standardise_sex(raw) == expected


@pytest.mark.parametrize("raw", ["yes", "mf", "3", "malee"])
def test_invalid_sex(raw: str) -> None:
    with pytest.raises(InvalidValue, match="sex: not a recognised sex"):
        standardise_sex(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9434765919", "9434765919"),
        ("943 476 5919", "9434765919"),
        ("943-476-5919", "9434765919"),
        (" 401 023 2137 ", "4010232137"),
    ],
)
def test_valid_nhs_number(raw: str, expected: str) -> None:
    assert standardise_nhs_number(raw) == expected


def _first_nine_with_remainder_one() -> str:
    # A remainder of 1 asks for check digit 10, which no NHS number can have.
    for n in range(100_000_000, 1_000_000_000):
        digits = str(n)
        if sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11 == 1:
            return digits
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("9434765918", "check digit does not match"),
        ("9434765910", "check digit does not match"),
        (_first_nine_with_remainder_one() + "0", "check digit does not match"),
        ("943476591", "expected ten digits"),
        ("94347659190", "expected ten digits"),
        ("94347659A9", "expected ten digits"),
        ("943/476/5919", "expected ten digits"),
        ("0000000000", "placeholder"),
        ("1111111111", "placeholder"),  # passes the modulus-11 check
    ],
)
def test_invalid_nhs_number(raw: str, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem) as caught:
        standardise_nhs_number(raw)
    assert caught.value.field_type == "nhs_number"


@pytest.mark.parametrize(
    "standardise", [standardise_postcode, standardise_sex, standardise_nhs_number, standardise_uprn]
)
@pytest.mark.parametrize("raw", [None, "", " \t "])
def test_missing(standardise, raw: str | None) -> None:
    assert standardise(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LS6 OAB", "LS6 0AB"),  # inward digit typed as the letter O
        ("LS6 IAB", "LS6 1AB"),  # ... and as the letter I
        ("0L1 1AA", "OL1 1AA"),  # first character is always a letter
        ("1P4 1AA", "IP4 1AA"),
        ("MO 1AE", "M0 1AE"),  # A9: the second character is a digit
        ("MI 1AE", "M1 1AE"),
        ("S016 1AA", "SO16 1AA"),  # AA99: the second is a letter ...
        ("SOI6 1AA", "SO16 1AA"),  # ... and the third a digit
        ("EC1A IBB", "EC1A 1BB"),
        ("gir oaa", "GIR 0AA"),
    ],
)
def test_look_alike_slips_are_fixed_where_the_format_fixes_the_class(
    raw: str, expected: str
) -> None:
    assert standardise_postcode(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "W1O 1AA",  # third of three: A9A has a letter there, A99 a digit, so it is not guessed
        "BI1 1AA",  # second of three: AA9 has a letter (never I), A99 a digit, so B11 is not guessed
        "SO1O 1AA",  # fourth of four: AA99 digit, AA9A letter
        "LS6 2O0",  # inward letters are never O (or I), so 0 and 1 there are not letters
        "LS6 2AI",
    ],
)
def test_look_alikes_in_positions_the_format_leaves_open_are_not_guessed(raw: str) -> None:
    with pytest.raises(InvalidValue, match="not a UK postcode"):
        standardise_postcode(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("BFPO 57", "BFPO 57"),
        ("bfpo57", "BFPO 57"),
        (" BFPO  1234 ", "BFPO 1234"),
        ("BFPO 057", "BFPO 57"),
        ("BF1 3AD", "BF1 3AD"),  # the postcode form of forces mail is an ordinary postcode
        ("GIR 0AA", "GIR 0AA"),
        ("G I R 0 A A", "GIR 0AA"),
    ],
)
def test_special_cases(raw: str, expected: str) -> None:
    assert standardise_postcode(raw) == expected


@pytest.mark.parametrize("raw", ["BFPO", "BFPO 12345", "BFPO 0", "BFPO 12A", "GIR 0AB"])
def test_invalid_special_cases(raw: str) -> None:
    with pytest.raises(InvalidValue, match="not a UK postcode"):
        standardise_postcode(raw)


def test_canonical_postcodes_are_fixed_points() -> None:
    for raw in ["LS6 OAB", "0L1 1AA", "MO 1AE", "bfpo 57", "gir0aa", "sw1a2aa"]:
        once = standardise_postcode(raw)
        assert standardise_postcode(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100023336956", "100023336956"),
        ("000100023336956", "100023336956"),  # zero-padded beyond twelve digits
        ("010023336956", "10023336956"),
        (" 7 ", "7"),
        ("1", "1"),
        ("999999999999", "999999999999"),
    ],
)
def test_valid_uprn(raw: str, expected: str) -> None:
    assert standardise_uprn(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("1000233369561", "up to twelve digits"),
        ("1000 2333 6956", "up to twelve digits"),
        ("UPRN100023336956", "up to twelve digits"),
        ("-5", "up to twelve digits"),
        ("1.5", "up to twelve digits"),
        ("١٢٣", "up to twelve digits"),  # Arabic-Indic digits are digits, but not ASCII ones
        ("0", "placeholder"),
        ("000000000000", "placeholder"),
    ],
)
def test_invalid_uprn(raw: str, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem) as caught:
        standardise_uprn(raw)
    assert caught.value.field_type == "uprn"


def _standardised_or_none(raw: str) -> str | None:
    try:
        return standardise_postcode(raw)
    except InvalidValue:
        return None


@given(
    st.lists(
        st.one_of(
            # Postcodes, and the format's shape with look-alikes, lower case and stray spaces ...
            st.from_regex(_POSTCODE, fullmatch=True),
            st.from_regex(r"[A-Za-z ][A-Za-z0-9 ]{1,4} ?[0-9OoIi][A-Za-z]{2} ?", fullmatch=True),
            # ... and anything near it: BFPO, Girobank, other whitespace, non-ASCII letters.
            st.text(alphabet="ABFGIOPRSWZabgiors0125 \t\u00a0\u0131\u00df\u212a", max_size=9),
            st.sampled_from(["BFPO 57", "bfpo57", "GIR 0AA", "gir0aa", "LS6 OAB", "\u0131S6 2AB"]),
        ),
        max_size=30,
    )
)
def test_plain_postcodes_agree_with_the_single_value_standardiser(raws: list[str]) -> None:
    plain = plain_postcodes(pd.Series(raws, dtype="string[pyarrow]"))
    for raw, found in zip(raws, plain, strict=True):
        assert pd.isna(found) or found == _standardised_or_none(raw), raw
