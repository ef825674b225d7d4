from __future__ import annotations

import pytest

from oda_fed.standardise import (
    InvalidValue,
    standardise_nhs_number,
    standardise_postcode,
    standardise_sex,
)


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
    "standardise", [standardise_postcode, standardise_sex, standardise_nhs_number]
)
@pytest.mark.parametrize("raw", [None, "", " \t "])
def test_missing(standardise, raw: str | None) -> None:
    assert standardise(raw) is None
