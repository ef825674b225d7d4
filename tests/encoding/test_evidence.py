"""Field evidence at the node: keyed tokens of value parts and small field filters, under keys
only the partners can derive."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.encoding.evidence import FILTER_BITS, Evidence, EvidenceEncoder, evidence_names
from oda_fed.encoding.fields import default_field_encoding as field
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
    assert filters == ["first_name", "last_name", "postcode"]
    assert tokens == [
        "first_name:phonetic", "first_name:initial", "last_name:phonetic", "last_name:initial",
        "dob:ymd", "dob:ym", "dob:y", "dob:md", "dob:swap",
        "postcode:unit", "postcode:sector", "postcode:district", "sex:value",
    ]  # fmt: skip
    ev = _encode({"first_name": ["john"], "last_name": ["smith"], "dob": ["1980-02-01"],
                  "postcode": ["LS6 2AB"], "sex": ["m"]})  # fmt: skip
    assert sorted(ev.filters) == sorted(filters) and sorted(ev.tokens) == sorted(tokens)
    assert all(f.shape == (1, FILTER_BITS // 64) and f.dtype == np.uint64
               for f in ev.filters.values())  # fmt: skip


def test_tokens_agree_exactly_where_the_value_parts_do() -> None:
    ev = _encode({
        "first_name": ["stephen", "steven", None],
        "last_name": ["smith", "smyth", "smith"],
        "dob": ["1980-02-01", "1980-01-02", None],
        "postcode": ["LS6 2AB", "LS6 2XY", "LS16 1AA"],
        "sex": ["m", "m", None],
    })  # fmt: skip
    t = ev.tokens
    assert t["first_name:phonetic"][0] == t["first_name:phonetic"][1]  # STFN both
    assert t["first_name:phonetic"][2] == 0 and t["dob:ymd"][2] == 0 and t["sex:value"][2] == 0
    assert t["dob:ymd"][0] != t["dob:ymd"][1] and t["dob:swap"][0] == t["dob:swap"][1]
    assert t["dob:y"][0] == t["dob:y"][1] and t["dob:ym"][0] != t["dob:ym"][1]
    assert t["postcode:unit"][0] != t["postcode:unit"][1]
    assert t["postcode:sector"][0] == t["postcode:sector"][1]
    assert t["postcode:district"][0] == t["postcode:district"][1] != t["postcode:district"][2]
    # Parts of different fields never share a token, even for equal text.
    assert t["dob:y"][0] != t["dob:ymd"][0]


def test_name_fields_share_one_key_so_swapped_names_can_be_seen() -> None:
    ev = _encode({"first_name": ["smith", "john"], "last_name": ["john", "smith"],
                  "dob": [None, None], "postcode": [None, None], "sex": [None, None]})  # fmt: skip
    first, last = ev.filters["first_name"], ev.filters["last_name"]
    assert (first[0] == last[1]).all() and (first[1] == last[0]).all()
    assert ev.tokens["first_name:phonetic"][0] == ev.tokens["last_name:phonetic"][1]
    assert _dice(first[0], first[1]) < 0.3


def test_field_filters_keep_similar_spellings_similar() -> None:
    ev = _encode({"first_name": ["catherine", "katherine", "mohammed"],
                  "last_name": [None] * 3, "dob": [None] * 3, "postcode": [None] * 3,
                  "sex": [None] * 3})  # fmt: skip
    f = ev.filters["first_name"]
    assert _dice(f[0], f[1]) > 0.75 > 0.3 > _dice(f[0], f[2])
    assert not ev.filters["last_name"].any()  # missing: an empty filter


def test_another_secret_gives_unrelated_evidence_and_a_short_one_is_refused() -> None:
    rows = {"first_name": ["john"], "last_name": ["smith"], "dob": ["1980-02-01"],
            "postcode": ["LS6 2AB"], "sex": ["m"]}  # fmt: skip
    ours, theirs = _encode(rows), _encode(rows, secret=b"another secret of 32 bytes long!")
    assert all(ours.tokens[k][0] != theirs.tokens[k][0] for k in ours.tokens)
    assert _dice(ours.filters["first_name"][0], theirs.filters["first_name"][0]) < 0.5
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
    # Swapped names are still seen: one permutation moves every name filter alike.
    assert (one.filters["first_name"][0] == one.filters["last_name"][1]).all()
    for name, t in ev.tokens.items():
        moved = one.tokens[name]
        assert ((moved == 0) == (t == 0)).all()  # missing stays missing
        same = t[:, None] == t[None, :]
        assert ((moved[:, None] == moved[None, :]) == same).all(), name
        assert not set(moved[moved != 0]) & set(two.tokens[name][two.tokens[name] != 0])
        assert not set(moved[moved != 0]) & set(t[t != 0])
    assert one.tokens["first_name:phonetic"][0] == one.tokens["last_name:phonetic"][1]


def test_evidence_crosses_as_columns_of_its_layout_and_comes_back_whole() -> None:
    from oda_fed.encoding.evidence import evidence_layout

    rows = {"first_name": ["ann", "bob", "cy"], "last_name": ["x", "y", "z"],
            "dob": ["1980-01-01", None, "1990-12-31"], "postcode": [None, "LS6 2AB", None],
            "sex": ["f", "m", None]}  # fmt: skip
    ev = _encode(rows)
    layout = evidence_layout(FIELDS)
    assert [n for n, _ in layout][:3] == ["first_name", "last_name", "postcode"]
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
