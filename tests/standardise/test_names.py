from __future__ import annotations

import pytest

from oda_fed.standardise import first_given_name, given_names, standardise_name, standardise_text
from oda_fed.standardise.names import canonical_given_name, fold_accents


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mrs. Jane Doe", "jane doe"),
        ("Ms Jane Doe", "jane doe"),
        ("Miss Jane Doe", "jane doe"),
        ("Prof. Jane Doe", "jane doe"),
        ("Rev Jane Doe", "jane doe"),
        ("Sir John Major", "john major"),
        ("Dame Judi Dench", "judi dench"),
        ("Rt Hon Sir John Major", "john major"),
        ("Fr. Ted Crilly", "ted crilly"),
        ("John Smith Jr", "john smith"),
        ("John Smith Snr.", "john smith"),
        ("John Smith II", "john smith"),
        ("John Smith III", "john smith"),
        ("Smith Jr, John", "smith john"),  # inverted, suffix before the comma
        ("Smith, Mr John", "smith john"),  # inverted, title after the comma
        ("Smith, Ms", "smith"),
        ("Smith - Jones", "smithjones"),  # spaced hyphen
        ("Smith -Jones", "smithjones"),
        ("O' Brien", "obrien"),  # spaced apostrophe
        ("Ní Bhriain-Ó Dónaill", "ni bhriaino donaill"),
        ("Mary-Jane Louise", "maryjane louise"),  # every given name kept, in order
        ("  MARY JANE   LOUISE ", "mary jane louise"),
    ],
)
def test_titles_suffixes_and_double_barrels(raw: str, expected: str) -> None:
    assert standardise_name(raw) == expected


def test_suffix_alone_is_kept() -> None:
    # A one-word value is never emptied, whatever it is.
    assert standardise_name("III") == "iii"
    assert standardise_name("Jr") == "jr"


def test_given_names() -> None:
    assert given_names("Mary-Jane Louise") == ["maryjane", "louise"]
    assert given_names("Miss Mary Jane  LOUISE") == ["mary", "jane", "louise"]
    assert given_names("maryjane louise") == ["maryjane", "louise"]  # already standardised
    assert given_names("Zoë") == ["zoe"]
    assert given_names(None) == []
    assert given_names("  ") == []
    assert given_names("-") == []


def test_first_given_name() -> None:
    assert first_given_name("Mary-Jane Louise") == "maryjane"
    assert first_given_name("Mr John Paul") == "john"
    assert first_given_name(standardise_name("Mary-Jane Louise")) == "maryjane"
    assert first_given_name(None) is None
    assert first_given_name("...") is None


def test_first_given_name_agrees_where_middle_names_differ() -> None:
    assert standardise_name("Mary-Jane Louise") != standardise_name("Mary-Jane")
    assert first_given_name("Mary-Jane Louise") == first_given_name("Mary-Jane")


def test_fold_accents_ascii_fast_path_matches_unicode_path() -> None:
    # The ASCII shortcut must give what NFKD + casefold gives.
    for value in ["John SMITH", "o'brien-JONES 3", "ABC\\tdef"]:
        assert fold_accents(value) == fold_accents(value + "é")[:-1]


def test_canonical_given_name_maps_nicknames_to_one_full_name() -> None:
    for nickname, full in [("bob", "robert"), ("peggy", "margaret"), ("liz", "elizabeth"),
                           ("jimmy", "james"), ("becky", "rebecca")]:  # fmt: skip
        assert canonical_given_name(nickname) == canonical_given_name(full) == full
    # Names the table does not know, family names among them, stay as they are.
    assert canonical_given_name("smith") == "smith"
    assert canonical_given_name("xqzv") == "xqzv"
    # An ambiguous nickname maps to one name, the same every time.
    assert canonical_given_name("chris") == canonical_given_name("chris")
    assert canonical_given_name("chris") != "chris"
