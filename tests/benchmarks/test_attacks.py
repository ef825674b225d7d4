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
from oda_fed.encoding.evidence import NAMES as JOINED
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
    keyed = enc.encode({"n": list(records)}).filters[JOINED]
    assert attacks.filter_graph_attack(keyed, records, values, kind=JOINED).records > 0.2


def test_the_attacker_reads_joined_names_as_the_node_writes_them(attacks) -> None:
    """What the ``@names`` encodings stand for: the unordered pair of names, which the attacker
    encodes as one filter of both names' bigrams, as the node does."""
    plain = {"first_name": np.array(["john", "smith", None], dtype=object),
             "last_name": np.array(["smith", "john", "jones"], dtype=object)}  # fmt: skip
    assert list(attacks._joined(plain)) == ["john|smith", "john|smith", "jones"]
    fields = [default_field_encoding("first_name", "name"),
              default_field_encoding("last_name", "name")]  # fmt: skip
    node = EvidenceEncoder(fields, secret=b"s" * 32, context="c").encode(plain).filters[JOINED]
    mine = attacks.attacker_filters(["john|smith", "jones"], JOINED)
    # Same scheme, other key: as many bits set, and one name is a subset of two.
    assert (attacks.value_codes(node)[0][:2] == 0).all()
    counts = [int(np.unpackbits(r.view(np.uint8)).sum()) for r in (*node[[0, 2]], *mine)]
    assert abs(counts[0] - counts[2]) <= 6 and abs(counts[1] - counts[3]) <= 4


@pytest.mark.parametrize("data", ["synth", "ukpop"])
def test_each_data_set_gives_records_beside_their_own_people(attacks, tmp_path, data) -> None:
    """Both data sets feed the same attacks: every record is tied to its own person (the truth
    of the CLK graph attack), whose register entry it mostly agrees with (errors spoil some)."""
    region = attacks.make_region(tmp_path, data=data, population=300, seed=2)
    loaded = attacks.project_for(region, method="clk", hardening=attacks.Hardening(), name="t")
    upload = attacks.node_uploads(region, loaded)
    assert set(region.register) == set(upload.plain) == set(region.types)
    assert len(upload.person) == len(upload.clks) == len(region.truth)
    for name in ("date_of_birth", "last_name"):
        held = upload.plain[name] != None  # noqa: E711
        same = region.register[name][upload.person[held]] == upload.plain[name][held]
        assert same.mean() > 0.7, name


def test_the_attacks_run_on_the_independent_population(attacks, tmp_path) -> None:
    """The ukpop path end to end, tiny: the attacker's sample is another population."""
    run = attacks.attack(tmp_path, data="ukpop", population=300, public=600, seed=2,
                         clk_options=attacks.CLK_OPTIONS[:1])  # fmt: skip
    assert not set(run.public["address"]) & set(run.region.register["address"])
    encodings = [row.encoding for row in run.rows]
    assert encodings[:3] == ["CLK (1024 bits)", "filter @names", "filter address"]
    assert "token @names:born:1" in encodings
    for row in run.rows:
        assert 0 <= row.frequency.records <= 1 and row.frequency.n > 0
        assert row.f1 > 0.7


@pytest.mark.parametrize("data", ["synth", "ukpop"])
def test_sex_is_read_from_the_clk_and_the_token_without_a_key(attacks, tmp_path, data) -> None:
    """Sex is a linkage field of both data sets, so its positions split plain CLKs by sex as
    the token does; a random split, or CLKs without the sex field, get about half."""
    run = attacks.attack(tmp_path, data=data, population=300, public=300, seed=2,
                         clk_options=attacks.CLK_OPTIONS[:1], only_sex=True)  # fmt: skip
    assert not run.rows
    read = {row.setting: row.split for row in run.sex}
    assert [row.source for row in run.sex] == ["CLK (1024 bits)"] * 2 + ["token sex:value"]
    token, clk = read["default"], read["plain"]
    assert token.accuracy == 1.0 and token.n == clk.n > 500 and 0 < token.missing < 0.1
    assert clk.accuracy > 0.95 and 10 <= clk.positions <= 24
    assert read["plain, sex not a linkage field"].accuracy < 0.75
    assert 0.5 <= token.prior < 0.6

    rng = np.random.default_rng(6)
    truth = rng.choice(np.array(["f", "m", ""], dtype=object), size=2000, p=[0.5, 0.45, 0.05])
    guess = attacks.split_accuracy(rng.random(2000) < 0.5, truth)
    assert abs(guess.accuracy - 0.5) < 0.05 and guess.n == np.sum(truth != "")
    flipped = attacks.split_accuracy(truth == "m", truth)  # labels are only up to a swap
    assert flipped.accuracy == 1.0 and flipped.prior == pytest.approx(
        np.mean(truth[truth != ""] == "f")
    )
