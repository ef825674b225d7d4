"""Field evidence at the node: keyed tokens of value parts and small field filters, under keys
only the partners can derive."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from oda_fed.encoding.evidence import (
    EVIDENCE_INFO,
    FILTER_BITS,
    NAMES,
    Evidence,
    EvidenceEncoder,
    evidence_names,
)
from oda_fed.encoding.fields import default_field_encoding as field
from oda_fed.encoding.keys import derive_key
from oda_fed.errors import AuthError, InputDataError
from oda_fed.matching import kernels

FIELDS = [
    field("first_name", "name"),
    field("last_name", "name"),
    field("dob", "date_of_birth"),
    field("postcode", "postcode"),
    field("sex", "sex"),
]
SECRET = b"a shared secret of 32 bytes long"


def _encode(rows: dict, *, secret: bytes = SECRET) -> Evidence:
    return EvidenceEncoder(FIELDS, secret=secret, context="project").encode(rows)


def _dice(x: np.ndarray, y: np.ndarray) -> float:
    both = np.vstack([x, y])
    pc = kernels.popcounts(both)
    inter = kernels.pair_intersections(both, both, np.array([0]), np.array([1]))[0]
    return 2 * inter / (pc[0] + pc[1])


def test_the_names_of_what_is_made_follow_the_field_types() -> None:
    filters, tokens = evidence_names(FIELDS)
    # A postcode is compared by its tokens: no filter of it leaves the node.
    assert filters == ["@names"]
    assert tokens == [
        "@names:phonetic", "@names:born:0", "@names:born:1", "@names:born_initial:0",
        "@names:born_initial:1", "@names:placed:0", "@names:placed:1", "@names:placed_initial:0",
        "@names:placed_initial:1",
        "dob:ymd", "dob:ym", "dob:md", "dob:swap", "postcode:unit", "postcode:sector", "sex:value",
    ]  # fmt: skip
    # Nothing a frequency list reads directly: no name on its own, no year, no district.
    assert not any(t.startswith(("first_name", "last_name")) for t in filters + tokens)
    assert "dob:y" not in tokens and "postcode:district" not in tokens
    assert not any("initial" in t for t in tokens if not t.endswith(("_initial:0", "_initial:1")))
    ev = _encode({"first_name": ["john"], "last_name": ["smith"], "dob": ["1980-02-01"],
                  "postcode": ["LS6 2AB"], "sex": ["m"]})  # fmt: skip
    assert sorted(ev.filters) == sorted(filters) and sorted(ev.tokens) == sorted(tokens)
    assert all(f.shape == (1, FILTER_BITS // 64) and f.dtype == np.uint64
               for f in ev.filters.values())  # fmt: skip


def test_a_token_is_the_keyed_blake2b_of_its_part() -> None:
    ev = _encode({"first_name": ["james"], "last_name": ["smith"], "dob": ["1980-02-01"],
                  "postcode": ["LS6 2AB"], "sex": [None]})  # fmt: skip

    def token(name: str, part: str) -> int:
        key = derive_key(SECRET, context="project", info=EVIDENCE_INFO + name.encode())
        digest = hashlib.blake2b(part.encode(), key=key, digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1

    assert ev.tokens["dob:ym"][0] == token("dob:ym", "1980-02")
    assert ev.tokens["postcode:sector"][0] == token("postcode:sector", "LS6 2")
    assert ev.tokens["@names:phonetic"][0] == token("@names:phonetic", "JMS\x1fSM0")
    born = {token("@names:born", "1980-02-01\x1f" + sound) for sound in ("JMS", "SM0")}
    assert [ev.tokens[f"@names:born:{i}"][0] for i in (0, 1)] == sorted(born, reverse=True)
    placed = {token("@names:placed_initial", "LS6 2AB\x1f" + initial) for initial in "js"}
    assert [ev.tokens[f"@names:placed_initial:{i}"][0] for i in (0, 1)] == sorted(
        placed, reverse=True
    )
    assert ev.tokens["sex:value"][0] == 0


def test_tokens_agree_exactly_where_the_value_parts_do() -> None:
    ev = _encode({
        "first_name": ["stephen", "steven", None],
        "last_name": ["smith", "smyth", "smith"],
        "dob": ["1980-02-01", "1980-01-02", None],
        "postcode": ["LS6 2AB", "LS6 2XY", "LS16 1AA"],
        "sex": ["m", "m", None],
    })  # fmt: skip
    t = ev.tokens
    assert t["@names:phonetic"][0] == t["@names:phonetic"][1]  # STFN SM0 both
    assert t["@names:phonetic"][2] != t["@names:phonetic"][0]  # one name only
    assert t["dob:ymd"][2] == 0 and t["sex:value"][2] == 0
    assert t["dob:ymd"][0] != t["dob:ymd"][1] and t["dob:swap"][0] == t["dob:swap"][1]
    assert t["dob:ym"][0] != t["dob:ym"][1]
    assert t["postcode:unit"][0] != t["postcode:unit"][1]
    assert t["postcode:sector"][0] == t["postcode:sector"][1] != t["postcode:sector"][2]
    # Parts of different fields never share a token, even for equal text.
    ev2 = _encode({"first_name": ["x"], "last_name": [None], "dob": ["1980-02-01"],
                   "postcode": ["1980-02-01"], "sex": [None]})  # fmt: skip
    assert ev2.tokens["dob:ymd"][0] != ev2.tokens["postcode:unit"][0]


def test_names_are_encoded_together_so_swapped_names_agree() -> None:
    ev = _encode({"first_name": ["smith", "john", "john", "john"],
                  "last_name": ["john", "smith", "jones", None],
                  "dob": [None] * 4, "postcode": [None] * 4, "sex": [None] * 4})  # fmt: skip
    names, t = ev.filters[NAMES], ev.tokens
    assert (names[0] == names[1]).all()
    assert t["@names:phonetic"][0] == t["@names:phonetic"][1]
    # One filter holds both names' bigrams: a changed family name leaves the given name's.
    assert 0.3 < _dice(names[1], names[2]) < 0.8 and 0.4 < _dice(names[1], names[3]) < 0.9


def test_a_nickname_sounds_as_its_full_name() -> None:
    ev = _encode({"first_name": ["bob", "robert", "richard"],
                  "last_name": ["smith", "smith", "smith"],
                  "dob": ["1980-02-01"] * 3, "postcode": [None] * 3, "sex": [None] * 3})  # fmt: skip
    t = ev.tokens
    assert t["@names:phonetic"][0] == t["@names:phonetic"][1] != t["@names:phonetic"][2]
    # So do the blocking tokens of each name's sound with the date of birth.
    assert {t["@names:born:0"][0], t["@names:born:1"][0]} == {
        t["@names:born:0"][1], t["@names:born:1"][1]}  # fmt: skip
    # The names' filter still holds the names as written: Dice tells a nickname from the name.
    assert not (ev.filters[NAMES][0] == ev.filters[NAMES][1]).all()


def test_field_filters_keep_similar_spellings_similar() -> None:
    ev = _encode({"first_name": ["catherine", "katherine", "mohammed"],
                  "last_name": [None] * 3, "dob": [None] * 3, "postcode": [None] * 3,
                  "sex": [None] * 3})  # fmt: skip
    f = ev.filters[NAMES]
    assert _dice(f[0], f[1]) > 0.75 > 0.45 > _dice(f[0], f[2])
    empty = _encode({"first_name": [None], "last_name": [None], "dob": [None],
                     "postcode": [None], "sex": [None]})  # fmt: skip
    assert not empty.filters[NAMES].any()
    assert not any(column[0] for column in empty.tokens.values())  # missing: token 0


def test_another_secret_gives_unrelated_evidence_and_a_short_one_is_refused() -> None:
    rows = {"first_name": ["john"], "last_name": ["smith"], "dob": ["1980-02-01"],
            "postcode": ["LS6 2AB"], "sex": ["m"]}  # fmt: skip
    ours, theirs = _encode(rows), _encode(rows, secret=b"another secret of 32 bytes long!")
    assert all(ours.tokens[k][0] != theirs.tokens[k][0] for k in ours.tokens)
    assert _dice(ours.filters[NAMES][0], theirs.filters[NAMES][0]) < 0.5
    with pytest.raises(AuthError):
        _encode(rows, secret=b"short")
    with pytest.raises(InputDataError):
        _encode({"first_name": ["john"]})


def test_chunks_concatenate_into_the_evidence_of_the_whole() -> None:
    rows = {"first_name": ["ann", "bob", "cy"], "last_name": ["x", "y", "z"],
            "dob": ["1980-01-01", None, "1990-12-31"], "postcode": [None, "LS6 2AB", None],
            "sex": ["f", "m", None]}  # fmt: skip
    whole = _encode(rows)
    parts = Evidence.concat([_encode({k: v[:2] for k, v in rows.items()}),
                             _encode({k: v[2:] for k, v in rows.items()})])  # fmt: skip
    assert len(parts) == 3
    for k in whole.tokens:
        assert (whole.tokens[k] == parts.tokens[k]).all()
    for k in whole.filters:
        assert (whole.filters[k] == parts.filters[k]).all()


def test_a_round_moves_evidence_but_keeps_every_comparison_within_it() -> None:
    from oda_fed.encoding.rounds import RoundTransform

    rows = {"first_name": ["smith", "john", "jon"], "last_name": ["john", "smith", None],
            "dob": ["1980-02-01", "1980-02-01", None], "postcode": ["LS6 2AB", None, "LS6 2AB"],
            "sex": ["m", "m", None]}  # fmt: skip
    ev = _encode(rows)
    one, two = (
        RoundTransform(SECRET, context="project", round_id=r, bits=1024).evidence(ev)
        for r in ("r1", "r2")
    )
    for name, f in ev.filters.items():
        for i in range(3):
            for j in range(3):
                if f[i].any() and f[j].any():
                    assert _dice(one.filters[name][i], one.filters[name][j]) == _dice(f[i], f[j])
            assert not f[i].any() or (one.filters[name][i] != two.filters[name][i]).any()
    # Swapped names still agree within the round.
    assert (one.filters[NAMES][0] == one.filters[NAMES][1]).all()
    for name, t in ev.tokens.items():
        moved = one.tokens[name]
        assert ((moved == 0) == (t == 0)).all()  # missing stays missing
        same = t[:, None] == t[None, :]
        assert ((moved[:, None] == moved[None, :]) == same).all(), name
        assert not set(moved[moved != 0]) & set(two.tokens[name][two.tokens[name] != 0])
        assert not set(moved[moved != 0]) & set(t[t != 0])
    assert one.tokens["@names:phonetic"][0] == one.tokens["@names:phonetic"][1]


def test_evidence_crosses_as_columns_of_its_layout_and_comes_back_whole() -> None:
    from oda_fed.encoding.evidence import evidence_layout

    rows = {"first_name": ["ann", "bob", "cy"], "last_name": ["x", "y", "z"],
            "dob": ["1980-01-01", None, "1990-12-31"], "postcode": [None, "LS6 2AB", None],
            "sex": ["f", "m", None]}  # fmt: skip
    ev = _encode(rows)
    layout = evidence_layout(FIELDS)
    assert [n for n, _ in layout][:2] == ["@names", "@names:phonetic"]
    chunks = [
        (b"".join(d for _, d in ev.columns(layout, a, b)), b - a) for a, b in ((0, 2), (2, 3))
    ]
    assert len(chunks[0][0]) == 2 * sum(w for _, w in layout)
    back = Evidence.from_blobs(layout, chunks)
    for k in ev.filters:
        assert (back.filters[k] == ev.filters[k]).all()
    for k in ev.tokens:
        assert (back.tokens[k] == ev.tokens[k]).all()
    with pytest.raises(ValueError, match="expected"):
        Evidence.from_blobs(layout, [(chunks[0][0] + b"x" * 8, 2)])


@pytest.mark.parametrize(
    ("family", "anchor", "values"),
    [
        ("born", "dob", ["1980-02-01"] * 3 + ["1981-02-01", "1980-02-01"]),
        ("placed", "postcode", ["LS6 2AB"] * 3 + ["LS6 2AD", "LS6 2AB"]),
    ],
)
def test_anchored_tokens_pair_each_name_with_a_value_and_hide_which_name_it_is(
    family: str, anchor: str, values: list[str]
) -> None:
    rows = {"first_name": ["anna", "smith", "anna", "anna", None],
            "last_name": ["smith", "anna", "jones", "smith", "smith"],
            "dob": [None] * 5, "postcode": [None] * 5, "sex": [None] * 5}  # fmt: skip
    ev = _encode({**rows, anchor: values})
    made = np.vstack([ev.tokens[f"@names:{family}:0"], ev.tokens[f"@names:{family}:1"]])
    sets = [set(made[:, i].tolist()) - {0} for i in range(5)]
    assert (made[:, 0] == made[:, 1]).all()  # swapped names: the same columns
    assert len(sets[0] & sets[2]) == 1  # a new family name keeps the given name's token
    assert not sets[0] & sets[3]  # another date or postcode shares none
    assert sets[4] < sets[0] and made[1, 4] == 0  # a missing name: one token, then 0
    # Largest first in every record, so a column says nothing of given or family name.
    assert (made[0] >= made[1]).all()
    # As rare as a person: no token here is shared by records of different names and values.
    assert len(set(made[made != 0].tolist())) == 5  # anna, smith, jones; anna, smith elsewhere
    # Without the anchor's value there is no token.
    assert not _encode(rows).tokens[f"@names:{family}:0"].any()


def test_a_round_keeps_born_tokens_comparable_across_their_columns() -> None:
    from oda_fed.encoding.rounds import RoundTransform

    rows = {"first_name": ["anna", "anna", "zoe"], "last_name": ["smith", "jones", "smith"],
            "dob": ["1980-02-01"] * 3, "postcode": [None] * 3, "sex": [None] * 3}  # fmt: skip
    moved = RoundTransform(SECRET, context="project", round_id="r1", bits=1024).evidence(
        _encode(rows)
    )

    def born(i: int) -> set[int]:
        return {int(moved.tokens[f"@names:born:{c}"][i]) for c in (0, 1)}

    assert len(born(0) & born(1)) == 1 and len(born(0) & born(2)) == 1  # anna; smith
    assert not born(1) & born(2)


def test_born_initial_tokens_survive_misspelt_names_but_not_another_date() -> None:
    ev = _encode({"first_name": ["anna", "ana", "anna"], "last_name": ["smith", "smyht", "smith"],
                  "dob": ["1980-02-01", "1980-02-01", "1980-03-01"],
                  "postcode": [None] * 3, "sex": [None] * 3})  # fmt: skip

    def tokens(i: int, family: str) -> set[int]:
        return {int(ev.tokens[f"@names:{family}:{c}"][i]) for c in (0, 1)} - {0}

    assert tokens(0, "born_initial") == tokens(1, "born_initial")
    assert not tokens(0, "born_initial") & tokens(2, "born_initial")
    assert not tokens(0, "born_initial") & tokens(0, "born")  # keyed apart from the sounds


def test_an_address_filter_leaves_unrelated_addresses_apart() -> None:
    """At 10 bits a bigram an address filled most of its 256 bits, and random addresses had
    Dice >= 0.6: a move and a typo looked alike."""
    fields = [field("address", "address")]
    addresses = ["12 acacia avenue new gerard", "1 kim ridges harrogate",
                 "flat 3 14 high street leeds", "the old rectory church lane otley",
                 "88 wellington road south stockport", "12 acacia avenue new gerrard"]  # fmt: skip
    f = EvidenceEncoder(fields, secret=SECRET, context="p").encode({"address": addresses})
    filters = f.filters["address"]
    assert kernels.popcounts(filters).max() < FILTER_BITS / 2
    unrelated = [_dice(filters[i], filters[j]) for i in range(5) for j in range(i + 1, 5)]
    assert max(unrelated) < 0.5 < 0.9 < _dice(filters[0], filters[5])
