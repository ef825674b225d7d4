from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oda_fed.standardise import AddressParts, address_parts, standardise_address
from oda_fed.standardise.addresses import plain_addresses


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # flats, however written, come first as "flat <id>"
        ("Flat 3, 41 Mill Road", "flat 3 41 mill road"),
        ("Apt. 3b", "flat 3b"),
        ("Apartment 3B, 41 Mill Road", "flat 3b 41 mill road"),
        ("Flt 3 B, 41 Mill Road", "flat 3b 41 mill road"),
        ("Unit 4, Mill Hse, Mill Rd", "flat 4 mill house mill road"),
        ("Flat A, 41 Mill Road", "flat a 41 mill road"),
        ("41 Mill Road, Flat 3", "flat 3 41 mill road"),
        ("3/41 Mill Rd", "flat 3 41 mill road"),
        ("3 / 41 Mill Rd", "flat 3 41 mill road"),
        ("Flat 3/41 Mill Road", "flat 3 41 mill road"),
        ("2/1, 41 Mill Road, Glasgow", "flat 2/1 41 mill road glasgow"),  # floor/flat
        ("First Floor Flat 2, 41 Mill Road", "flat 2 first floor 41 mill road"),
        ("Ground Floor Flat, 41 Mill Road", "ground floor flat 41 mill road"),
        ("Ground floor flat 41 Mill Road", "ground floor flat 41 mill road"),
        ("Basement Apartment, 41 Mill Road", "basement flat 41 mill road"),
        ("Flat, 41 Mill Road", "41 mill road"),  # a marker with no id says nothing
        ("Flat Lane, Leeds", "flat lane leeds"),  # ... but a street may be called Flat Lane
        # house numbers, letters and ranges
        ("41a Mill Road", "41a mill road"),
        ("41A Mill Road", "41a mill road"),
        ("41 A Mill Road", "41a mill road"),
        ("41-43 Mill Road", "41-43 mill road"),
        ("41 - 43 Mill Road", "41-43 mill road"),
        ("No. 41 Mill Road", "41 mill road"),
        # street types and other abbreviations
        ("41 Mill Rd.", "41 mill road"),
        ("41 High St", "41 high street"),
        ("41 High St., Leeds", "41 high street leeds"),
        ("41 St Mary's Rd", "41 saint marys road"),
        ("41 St. Mary’s Road", "41 saint marys road"),
        ("St Johns Wood Rd", "saint johns wood road"),
        ("12 Church St, St Albans", "12 church street saint albans"),
        ("12 Church St St Albans", "12 church street saint albans"),
        ("8 Acacia Ave", "8 acacia avenue"),
        ("8 Lovers Ln", "8 lovers lane"),
        ("8 Moon Cres", "8 moon crescent"),
        ("8 Kings Ct", "8 kings court"),
        ("8 Elm Dr", "8 elm drive"),
        ("8 Hope Pl", "8 hope place"),
        ("8 Park Sq", "8 park square"),
        ("8 Rose Gdns", "8 rose gardens"),
        ("8 Bank Terr", "8 bank terrace"),
        ("8 Bank Tce", "8 bank terrace"),
        ("8 Oak Cl", "8 oak close"),
        ("8 Ash Gr", "8 ash grove"),
        ("8 Ash Gro", "8 ash grove"),
        ("8 Grange Pk", "8 grange park"),
        ("8 Grange Pk Ave", "8 grange park avenue"),
        # case, accents, punctuation, whitespace
        ("  41  MILL   ROAD ", "41 mill road"),
        ("Flat 2, Café Röntgen Ct", "flat 2 cafe rontgen court"),
        ("41 Mill Road\nLeeds", "41 mill road leeds"),
        ("Mill Cottage & Barn, Mill Ln", "mill cottage and barn mill lane"),
        # a trailing postcode is removed; it is a field of its own
        ("Flat 3, 41 Mill Road, Leeds, LS6 2AB", "flat 3 41 mill road leeds"),
        ("41 Mill Road Leeds LS62AB", "41 mill road leeds"),
        ("41 Mill Road, Leeds LS6 OAB.", "41 mill road leeds"),  # with a look-alike slip
        ("41 Mill Road, BFPO 57", "41 mill road"),
    ],
)
def test_standardise_address(raw: str, expected: str) -> None:
    assert standardise_address(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Not a postcode at the end, so nothing is removed.
        ("41 Mill Road, Leeds 6", "41 mill road leeds 6"),
        ("41 Mill Road, LS6", "41 mill road ls6"),
        ("41 Mill Road, QS6 2AB", "41 mill road qs6 2ab"),  # not a valid postcode
        ("41 Park View Oak", "41 park view oak"),  # "view oak" is no postcode either
    ],
)
def test_only_a_valid_trailing_postcode_is_removed(raw: str, expected: str) -> None:
    assert standardise_address(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", "...", ",,", "Flat", "LS6 2AB", " ls6 2ab, "])
def test_missing(raw: str | None) -> None:
    assert standardise_address(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "Flat 3, 41 Mill Road, Leeds, LS6 2AB",
        "3/41 Mill Rd",
        "2/1, 41 Mill Road, Glasgow",
        "Ground Floor Flat, 41 Mill Road",
        "Basement Apartment, 41 Mill Road",
        "First Floor Flat 2, 41 Mill Road",
        "41 Mill Road, Flat 3",
        "Flat Lane, Leeds",
        "12 Church St, St Albans",
        "41 - 43 High St",
        "No. 41 Mill Road",
    ],
)
def test_idempotent(raw: str) -> None:
    once = standardise_address(raw)
    assert standardise_address(once) == once


def test_equivalent_spellings_agree() -> None:
    spellings = [
        "Flat 3, 41 Mill Road, Leeds, LS6 2AB",
        "FLAT 3 41 MILL RD LEEDS",
        "Apt. 3, 41 Mill Rd., Leeds",
        "3/41 Mill Rd, Leeds LS6 2AB",
        "41 Mill Road, Flat 3, Leeds",
        "Apartment 3, 41, Mill Road, Leeds",
    ]
    assert {standardise_address(s) for s in spellings} == {"flat 3 41 mill road leeds"}


@pytest.mark.parametrize(
    ("standardised", "expected"),
    [
        ("flat 3 41 mill road leeds", AddressParts("3", "41", "mill road", "leeds")),
        ("flat 3b 41 mill road", AddressParts("3b", "41", "mill road", None)),
        ("flat 2/1 41 mill road glasgow", AddressParts("2/1", "41", "mill road", "glasgow")),
        ("41a saint marys road", AddressParts(None, "41a", "saint marys road", None)),
        ("41-43 mill road leeds", AddressParts(None, "41-43", "mill road", "leeds")),
        # a street type as the first word does not end the street
        ("8 park lane leeds", AddressParts(None, "8", "park lane", "leeds")),
        ("8 the rise leeds", AddressParts(None, "8", "the rise", "leeds")),
        # consecutive street types belong together; a later one starts the locality
        ("8 grange park avenue leeds", AddressParts(None, "8", "grange park avenue", "leeds")),
        ("8 mill road hyde park leeds", AddressParts(None, "8", "mill road", "hyde park leeds")),
        # a building name before the number goes to the rest, before the locality
        (
            "flat 2 mill house 41 mill road leeds",
            AddressParts("2", "41", "mill road", "mill house leeds"),
        ),
        (
            "ground floor flat 41 mill road",
            AddressParts(None, "41", "mill road", "ground floor flat"),
        ),
        # without a street type, everything after the number is the street
        ("41 broadway leeds", AddressParts(None, "41", "broadway leeds", None)),
        # without a house number, the street runs from the start to its type
        (
            "rose cottage mill lane leeds",
            AddressParts(None, None, "rose cottage mill lane", "leeds"),
        ),
        ("flat lane leeds", AddressParts(None, None, "flat lane", "leeds")),
        ("flat a cafe rontgen court", AddressParts("a", None, "cafe rontgen court", None)),
        ("somewhere leeds", AddressParts(None, None, None, "somewhere leeds")),
        ("flat 3b", AddressParts("3b", None, None, None)),
        ("41", AddressParts(None, "41", None, None)),
    ],
)
def test_address_parts(standardised: str, expected: AddressParts) -> None:
    assert address_parts(standardised) == expected


@pytest.mark.parametrize("empty", [None, ""])
def test_address_parts_of_nothing(empty: str | None) -> None:
    assert address_parts(empty) == AddressParts(None, None, None, None)


def test_parts_hold_every_word_once() -> None:
    for raw in [
        "Flat 3, Mill House, 41 Mill Road, Headingley, Leeds LS6 2AB",
        "2/1, 41 Mill Road, Glasgow",
        "Rose Cottage, Mill Ln, Otley",
    ]:
        standardised = standardise_address(raw)
        assert standardised is not None
        parts = address_parts(standardised)
        words = [
            *(["flat", parts.flat] if parts.flat else []),
            *filter(None, [parts.number]),
            *(parts.street or "").split(),
            *(parts.rest or "").split(),
        ]
        assert sorted(words) == sorted(standardised.split())


def _plain(values: list[str]) -> list[str | None]:
    found = plain_addresses(pd.Series(values, dtype="string[pyarrow]"))
    return [None if pd.isna(v) else v for v in found]


def test_plain_addresses_are_standardised_column_wide() -> None:
    raws = ["Flat 7, 592 Terry Knoll, Khanmouth", "71 O'CONNOR EXTENSION, PORT HILARY", "4 Elm Way"]
    assert _plain(raws) == [standardise_address(raw) for raw in raws]
    # Anything a rule changes is left to the rules.
    ruled = ["41 Mill Rd", "41 St Marys Road", "41 a Mill Road", "12 Flat Lane", "Flat 3 41 Elm Way",
             "41 Mill Road, Leeds LS6 2AB", "41-43 Mill Road", "3/41 Mill Road", " 41 Mill Road",
             "41 Mill Road.", "41  Mill Road", "Flat 3, 41 Unit Road", "41 \u212aings Road",
             "\u0663 Mill Road", "41 Caf\u00e9 Road", "Mill Road", ""]  # fmt: skip
    assert _plain(ruled) == [None] * len(ruled)


# Mostly plain pieces, so that both paths are taken; the others each break one condition.
_FLATS = ["", "", "", "Flat 3, ", "FLAT 12b, "] * 3 + ["flat 3,", "Apt 3, ", "Flat, ", "Flat 3/4, "]
_NUMBERS = ["41", "41a", "0"] * 3 + ["3/41", "41-43", "a41", "41 a", "No. 41"]
_WORDS = ["Mill", "ROAD", "Leeds", "Way", "ab"] * 30 + [
    "Rd", "St", "Mary's", "O`Brien", "No", "Ground", "Floor", "Est", "\u212aings", "\u0663",
    "LS6", "2AB", "Gir", "0aa", "BFPO", "57", "a", "Flat", "unit",
]  # fmt: skip
_SEPARATORS = [" ", ", "] * 30 + [",", "  ", "\n", ". ", " ,"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(_FLATS),
            st.sampled_from(_NUMBERS),
            st.lists(st.tuples(st.sampled_from(_SEPARATORS), st.sampled_from(_WORDS)), max_size=6),
        ),
        max_size=20,
    )
)
def test_plain_addresses_agree_with_the_rules(
    addresses: list[tuple[str, str, list[tuple[str, str]]]],
) -> None:
    raws = [
        flat + number + "".join(sep + word for sep, word in rest)
        for flat, number, rest in addresses
    ]
    for raw, plain in zip(raws, _plain(raws), strict=True):
        assert plain is None or plain == standardise_address(raw), raw
