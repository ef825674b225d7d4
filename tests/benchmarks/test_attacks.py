"""The attacks of ``benchmarks/attacks.py`` work: they re-identify what is open to them.

An attack that re-identifies nothing tells nothing, so each is checked on an encoding it must
break (unkeyed tokens, the attacker's own filters) beside one it should not (keyed CLKs).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from oda_fed.encoding import default_field_encoding, encode_records
from oda_fed.encoding.evidence import EvidenceEncoder

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "attacks.py"


@pytest.fixture(scope="module")
def attacks():
    spec = importlib.util.spec_from_file_location("attacks_benchmark", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


#: Ten surnames with well separated frequencies, so a sample of a few thousand ranks them alike.
NAMES = np.array(
    ["smith", "jones", "taylor", "brown", "wilson", "evans", "walker", "wright", "hughes", "green"],
    dtype=object,
)
WEIGHTS = np.array([40, 25, 16, 10, 6, 4, 2.5, 1.5, 1.0, 0.6])


def _sample(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(NAMES, size=n, p=WEIGHTS / WEIGHTS.sum())


def _unkeyed(values: np.ndarray) -> np.ndarray:
    digests = [hashlib.blake2b(v.encode(), digest_size=8).digest() for v in values]
    return np.array([int.from_bytes(d, "little") for d in digests], dtype=np.uint64)


def test_frequency_alignment_breaks_an_unkeyed_token_but_not_keyed_clks(attacks) -> None:
    rng = np.random.default_rng(3)
    names, public = _sample(rng, 3000), _sample(rng, 3000)  # a different sample, same law
    token = attacks.frequency_alignment(_unkeyed(names), names, public, rng=rng)
    assert token.records > 0.95 and token.distinct > 0.8 and token.n == 3000

    # Whole-record CLKs: a date of birth beside the surname makes nearly every CLK unique.
    dob = [f"19{rng.integers(30, 99)}-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}" for _ in names]
    fields = [default_field_encoding("surname", "name"), default_field_encoding("dob", "date")]
    clks = encode_records(
        {"surname": list(names), "dob": dob}, fields=fields, secret=b"k" * 32, context="t"
    )
    clk = attacks.frequency_alignment(clks, names, public, rng=rng)
    assert clk.records < token.records / 2


def test_frequency_alignment_reports_the_prior_and_skips_missing_values(attacks) -> None:
    rng = np.random.default_rng(4)
    names, public = _sample(rng, 1000), _sample(rng, 1000)
    tokens = _unkeyed(names)
    tokens[:100] = 0  # missing: not counted
    found = attacks.frequency_alignment(tokens, names, public, rng=rng)
    assert found.n == 900
    assert found.prior == pytest.approx(np.mean(names[100:] == "smith"))


def test_graph_matching_finds_values_whose_graph_it_can_reproduce(attacks) -> None:
    values = np.array(
        ["anne", "anna", "hannah", "joanne", "jo", "john", "jon", "jonathan", "nathan", "ethan",
         "mary", "maria", "marie", "mark", "marcus", "peter", "pete", "petra", "paul", "paula"],
        dtype=object,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    records = rng.choice(values, size=400)
    # The attacker's own key: the two graphs are the same graph, so nearly every node matches.
    same = attacks.attacker_filters(list(records), "name")
    found = attacks.filter_graph_attack(same, records, values, kind="name")
    assert found.distinct >= 0.9 and found.records >= 0.9

    # Under the partners' key the graph differs only by Bloom-filter collisions.
    enc = EvidenceEncoder([default_field_encoding("n", "name")], secret=b"s" * 32, context="c")
    keyed = enc.encode({"n": list(records)}).filters["n"]
    assert attacks.filter_graph_attack(keyed, records, values, kind="name").records > 0.2


def test_the_joined_names_proposal_hides_each_name_and_survives_a_swap(attacks) -> None:
    fields = [default_field_encoding("first", "name"), default_field_encoding("last", "name")]
    enc = attacks.JoinedNames(fields, secret=b"s" * 32, context="c")
    ev = enc.encode({"first": ["john", "smith", "john"], "last": ["smith", "john", "jones"]})
    assert not ev.filters["last"].any()
    first = ev.filters["first"]
    assert (first[0] == first[1]).all() and not (first[0] == first[2]).all()
    for part in ("phonetic", "initial"):
        tokens = ev.tokens[f"first:{part}"]
        assert tokens[0] == tokens[1] and (tokens == ev.tokens[f"last:{part}"]).all()
    assert ev.tokens["first:phonetic"][0] != ev.tokens["first:phonetic"][2]
