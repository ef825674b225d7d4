from __future__ import annotations

import pytest

from oda_fed.standardise import standardise_name, standardise_text
from oda_fed.standardise.names import fold_accents


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John", "john"),
        ("Zoë", "zoe"),
        ("ZOË", "zoe"),
        ("Zoe\u0308", "zoe"),  # decomposed diaeresis
        ("O'Brien", "obrien"),
        ("O\u2019Brien", "obrien"),  # typographic apostrophe
        ("O´Brien", "obrien"),  # spacing acute accent used as an apostrophe
        ("Smith-Jones", "smithjones"),
        ("Smith\u2013Jones", "smithjones"),  # en dash
        ("Mr John  SMITH", "john smith"),
        ("  mr.  john smith  ", "john smith"),
        ("Dr Mrs Jane Doe", "jane doe"),
        ("SMITH JOHN MR", "smith john"),
        ("John Smith Jnr.", "john smith"),
        ("St. John", "st john"),
        ("J.R.R. Tolkien", "jrr tolkien"),
        ("Smith, John", "smith john"),
        ("Søren Kierkegaard", "soren kierkegaard"),
        ("Straße", "strasse"),
        ("Łukasz", "lukasz"),
        ("Æthelred", "aethelred"),
        ("ＪＯＨＮ", "john"),  # full-width letters
        ("John\tPaul\nSmith", "john paul smith"),
        ("Siân Ní Bhriain", "sian ni bhriain"),
    ],
)
def test_standardise_name(raw: str, expected: str) -> None:
    assert standardise_name(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n", "-", "'.'"])
def test_standardise_name_missing(raw: str | None) -> None:
    assert standardise_name(raw) is None


def test_name_that_is_only_a_title_is_kept() -> None:
    # "Lord" is a surname too; stripping it would turn a real name into a gap.
    assert standardise_name("Lord") == "lord"
    assert standardise_name("Mr Lord") == "lord"
    assert standardise_name("Mr") == "mr"


def test_trailing_surname_that_is_a_title_is_kept() -> None:
    assert standardise_name("Simon Lord") == "simon lord"
    assert standardise_name("Lady Jane Master") == "jane master"


def test_name_standardisation_is_idempotent() -> None:
    for raw in ["Mr John  SMITH", "Zoë O'Brien-Smith", "Dr Mrs Jane Doe"]:
        once = standardise_name(raw)
        assert standardise_name(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Flat 2,  14 St. Mary's Rd.", "flat 2 14 st mary s rd"),
        ("Smith-Jones", "smith jones"),
        ("Café  Röntgen", "cafe rontgen"),
        ("Mr Smith", "mr smith"),  # titles are only stripped from names
        ("a_b", "a b"),
    ],
)
def test_standardise_text(raw: str, expected: str) -> None:
    assert standardise_text(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "  ", "...", "--"])
def test_standardise_text_missing(raw: str | None) -> None:
    assert standardise_text(raw) is None


def test_fold_accents() -> None:
    assert fold_accents("Ärger ÉCOLE ﬁn ø") == "arger ecole fin o"
