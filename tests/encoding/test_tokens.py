from __future__ import annotations

import pytest

from oda_fed.encoding import FieldEncoding, ngrams, tokens
from oda_fed.encoding.tokens import ngram_lists, token_lists
from oda_fed.standardise import InvalidValue

FIRST = FieldEncoding("first_name", "name")
DOB = FieldEncoding("dob", "date")
POSTCODE = FieldEncoding("postcode", "postcode")


def test_name_bigrams_are_padded_and_prefixed() -> None:
    assert tokens("john", FIRST) == [
        "first_name:_j",
        "first_name:jo",
        "first_name:oh",
        "first_name:hn",
        "first_name:n_",
    ]


def test_ngrams_are_deduplicated_in_first_seen_order() -> None:
    assert ngrams("anna", 2) == ["_a", "an", "nn", "na", "a_"]
    assert ngrams("aaaa", 2) == ["_a", "aa", "a_"]
    assert ngrams("banana", 3) == ["_ba", "ban", "ana", "nan", "na_"]


def test_short_values_and_other_n() -> None:
    assert ngrams("a", 2) == ["_a", "a_"]
    assert ngrams("a", 3) == ["_a_"]
    assert ngrams("a", 4) == ["_a_"]
    assert ngrams("ab", 1) == ["a", "b"]
    assert tokens("jo", FieldEncoding("f", "text", ngram=3)) == ["f:_jo", "f:jo_"]


def test_tokens_are_deterministic() -> None:
    assert tokens("mary ann smith", FIRST) == tokens("mary ann smith", FIRST)


def test_date_tokens() -> None:
    assert tokens("1980-04-03", DOB) == ["dob:y=1980", "dob:d=03", "dob:m=04", "dob:dm=03/04"]


def test_date_tokens_partly_survive_a_day_month_swap() -> None:
    right = set(tokens("1980-04-03", DOB))
    swapped = set(tokens("1980-03-04", DOB))
    assert right & swapped == {"dob:y=1980", "dob:dm=03/04"}
    other_year = set(tokens("1981-04-03", DOB))
    assert len(right & other_year) == 3


def test_date_must_be_standardised() -> None:
    with pytest.raises(InvalidValue, match="YYYY-MM-DD"):
        tokens("03/04/1980", DOB)


def test_postcode_tokens_add_the_outward_code() -> None:
    got = tokens("LS6 2AB", POSTCODE)
    assert got[-1] == "postcode:out=LS6"
    assert got[:-1] == ["postcode:" + g for g in ngrams("LS6 2AB", 2)]
    assert tokens("SW1A 2AA", POSTCODE)[-1] == "postcode:out=SW1A"
    # An unspaced postcode tokenises like its canonical form.
    assert tokens("LS62AB", POSTCODE) == got


@pytest.mark.parametrize(
    ("value", "encoding", "expected"),
    [
        ("m", FieldEncoding("sex", "sex"), ["sex:m"]),
        ("9434765919", FieldEncoding("nhs", "nhs_number"), ["nhs:9434765919"]),
    ],
)
def test_whole_value_tokens(value: str, encoding: FieldEncoding, expected: list[str]) -> None:
    assert tokens(value, encoding) == expected


def test_equal_values_in_two_fields_give_disjoint_tokens() -> None:
    last = FieldEncoding("last_name", "name")
    assert not set(tokens("taylor", FIRST)) & set(tokens("taylor", last))


def test_empty_value_has_no_tokens() -> None:
    for encoding in (FIRST, DOB, POSTCODE, FieldEncoding("sex", "sex")):
        assert tokens("", encoding) == []


def test_batches_of_mostly_distinct_values_give_each_value_its_tokens() -> None:
    # Ids and addresses hardly repeat, but their n-grams do: every value still gets its own.
    address = FieldEncoding("address", "address")
    values = [f"{i} mill road, flat {i % 7}" for i in range(300)] + ["a", "é😀", "_x_"]
    got = token_lists(values, address).lists()
    assert [set(found) for found in got] == [set(tokens(v, address)) for v in values]


def test_ngram_lists_keep_the_pad_character_inside_values() -> None:
    found = ngram_lists(["a b", " "], 2, pad=" ", pad_width=1).lists()
    assert found == [[" a", "a ", " b", "b "], ["  ", "  "]]
