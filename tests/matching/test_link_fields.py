"""Field-aware linkage's resolution-aware probabilities, against a plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest

from oda_fed.matching.link_fields import exclusive


def _reference(weight, left, right, sizes, prior, rounds=200) -> list[float]:
    """Each record has a match in the other source with probability ``pi``, and at most one, among
    its candidates: sum-product belief propagation over the candidate pairs, one pair at a time."""
    odds = [2.0**w for w in weight]
    expected = prior * sizes[0] * sizes[1]
    slack = [1 - min(max(expected / n, 0.01), 0.99) for n in sizes]
    ends = (left, right)
    inbound = [[1.0] * len(odds), [1.0] * len(odds)]
    for _ in range(rounds):
        for v in (0, 1):
            inbound[v] = [
                1 / (slack[v] + sum(odds[m] * inbound[1 - v][m] for m in range(len(odds))
                                    if ends[v][m] == ends[v][k] and m != k))
                for k in range(len(odds))
            ]  # fmt: skip
    belief = [o * a * b for o, a, b in zip(odds, inbound[0], inbound[1], strict=True)]
    return [x / (1 + x) for x in belief]


def test_exclusive_probabilities_agree_with_a_plain_python_reference(
    rng: np.random.Generator,
) -> None:
    n = 200
    left, right = rng.integers(0, 40, n), rng.integers(0, 50, n)
    weight = rng.normal(0, 6, n)
    got = exclusive(weight, left, right, sizes=(40, 50), prior=0.015)
    want = _reference(weight.tolist(), left.tolist(), right.tolist(), (40, 50), 0.015)
    assert got == pytest.approx(want, abs=1e-3)  # settled to BP_SETTLED, not to the end


def test_a_lone_candidate_is_likely_and_rivals_share_the_belief() -> None:
    # Records 0 and 1 on the left; 0 has one candidate, 1 has two equally good ones.
    left, right = np.array([0, 1, 1]), np.array([0, 1, 2])
    weight = np.array([1.0, 1.0, 1.0])  # odds 2: pairwise, p = 2/3 each
    nearly_all_match = 0.99 / 100  # the share of pairs that match when all 100 left records do
    p = exclusive(weight, left, right, sizes=(100, 100), prior=nearly_all_match)
    assert p[0] > 0.99  # nothing else could be record 0's match, nor right record 0's
    assert p[1] == pytest.approx(p[2]) and p[1] + p[2] <= 1.0  # one of the two, not both
    few_match = 0.01 / 100
    q = exclusive(weight, left, right, sizes=(100, 100), prior=few_match)
    # Most records have no match: a lone candidate proves little more than pairwise odds 2.
    assert q[0] == pytest.approx(2 / (0.99 * 0.99 + 2)) and q[0] < p[0]


def test_a_rival_that_is_another_record_s_only_candidate_gives_way() -> None:
    # Left 0 could be right 0 or right 1; right 1 is also left 1's only candidate.
    left, right = np.array([0, 0, 1]), np.array([0, 1, 1])
    p = exclusive(np.array([1.0, 1.0, 1.0]), left, right, sizes=(100, 100), prior=0.99 / 100)
    assert p[0] > 0.9 and p[2] > 0.9 and p[1] < 0.1


def test_a_lone_pair_counts_both_records_being_unmatched() -> None:
    """Neither record has another candidate: the pair is not a match only if both are
    unmatched, so both sides' chances of having no match count (one side alone left lone
    candidates underconfident at a million records)."""
    left, right, weight = np.array([0]), np.array([0]), np.array([-1.0])  # odds 1/2
    p = exclusive(weight, left, right, sizes=(1000, 1000), prior=0.75 / 1000)
    assert p[0] == pytest.approx(0.5 / (0.25 * 0.25 + 0.5))  # 0.89, where one side gives 0.67
    # An index update: the old record's view does not count.
    q = exclusive(weight, left, right, sizes=(1000, 1000), prior=0.75 / 1000, views=(0,))
    assert q[0] == pytest.approx(0.5 / (0.25 + 0.5))


def test_distinct_rows_count_the_weights_of_a_sample() -> None:
    from oda_fed.matching.probabilistic import distinct_rows

    levels = np.array([[1, 2], [1, 2], [0, 1], [1, 2]], dtype=np.int8)
    rows, counts = distinct_rows(levels, [2, 3], np.array([1.0, 2.0, 5.0, 0.5]))
    assert rows.tolist() == [[0, 1], [1, 2]] and counts.tolist() == [5.0, 3.5]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[list, list]:
    """The comparisons and the field evidence of two partners of a synthetic population."""
    import dataclasses

    from oda_fed.config import load_project
    from oda_fed.matching import probabilistic
    from oda_fed.node.encode import encode_file, field_encodings
    from oda_fed.node.sources import layout_for
    from oda_fed.synth import generate, write, write_project

    tmp_path = tmp_path_factory.mktemp("trained")
    synthetic = generate(population=3000, partners=2, seed=5, errors="medium")
    write(synthetic, tmp_path)
    write_project(synthetic, tmp_path / "project.toml")
    text = (tmp_path / "project.toml").read_text()
    (tmp_path / "fields.toml").write_text(text.replace("[linkage]", '[linkage]\nmethod = "fields"'))
    project = load_project(tmp_path / "fields.toml").project
    evidence = []
    for path in sorted(p for p in tmp_path.glob("*.csv") if p.stem != "truth"):
        layout = dataclasses.replace(layout_for(project, path.stem, None), on_invalid="missing")
        evidence.append(
            encode_file(path, project=project, layout=layout, secret=b"s" * 32).evidence
        )
    return probabilistic.comparisons_for(field_encodings(project)), evidence


def test_training_on_a_sample_of_each_session_learns_the_same_weights(trained, monkeypatch) -> None:
    """Sessions of millions of pairs are sampled: the weights and the prior hardly move."""
    from oda_fed.matching import link_fields

    comparisons, evidence = trained
    full = link_fields.train_model(comparisons, evidence)
    monkeypatch.setattr(link_fields, "SESSION_PAIRS", 500)
    sampled = link_fields.train_model(comparisons, evidence)
    assert sampled.prior == pytest.approx(full.prior, rel=0.15)
    for a, b in zip(full.weights(), sampled.weights(), strict=True):
        assert np.abs(a[1:3] - b[1:3]).max() < 1.0  # the strongest levels, in bits


def test_pairs_within_a_partner_count_only_where_it_holds_a_person_once(
    trained, monkeypatch
) -> None:
    """Records of one partner at one postcode are different people only if the partner holds
    each person once: otherwise they hold duplicates, and counting them would teach that
    agreeing names mean little at one address."""
    from oda_fed.matching import link_fields

    comparisons, evidence = trained
    names = [c.kind for c in comparisons].index("names")
    shared = link_fields.train_model(comparisons, evidence).household
    # Similar names (Dice >= 0.6) are common at one postcode, as a family shares a name.
    assert shared is not None and shared[names][1, 3] < -1
    assert link_fields.train_model(comparisons, evidence, one_per_source=False).household is None
    # A sample of the pairs at one postcode tells the same.
    monkeypatch.setattr(link_fields, "HOUSEHOLD_SAMPLE", 1000)
    sampled = link_fields.train_model(comparisons, evidence).household
    assert sampled is not None and abs(sampled[names][1, 3] - shared[names][1, 3]) < 0.5


def _resolved_reference(labels, scored) -> tuple[int, float]:
    """Every cross-source pair of every entity; its own probability, or the smaller of its
    records' best probabilities within the entity."""
    best: dict[tuple[int, int], float] = {}
    own: dict[tuple[int, int, int, int], float] = {}
    for i, j, left, right, prob in scored:
        for a, b, p in zip(left.tolist(), right.tolist(), prob.tolist(), strict=True):
            if labels[i][a] == labels[j][b]:
                own[i, a, j, b] = p
                best[i, a] = max(best.get((i, a), 0.0), p)
                best[j, b] = max(best.get((j, b), 0.0), p)
    linked, expected = 0, 0.0
    for i, j, *_ in scored:
        for a, ea in enumerate(labels[i].tolist()):
            for b, eb in enumerate(labels[j].tolist()):
                if ea == eb:
                    linked += 1
                    through = min(best.get((i, a), 0.0), best.get((j, b), 0.0))
                    expected += max(own.get((i, a, j, b), 0.0), through)
    return linked, expected


def test_resolved_pairs_count_what_entities_link_through_a_third_source(
    rng: np.random.Generator,
) -> None:
    from oda_fed.matching.link_fields import resolved_pairs

    # Entity 0: a0-b0 0.9 and b0-c0 0.8 scored, a0-c0 a weak candidate (0.3): the entity links
    # a0-c0 at 0.8. Entity 1: a1-b1 only. c1 is alone; a2-c1 (0.4) was not linked.
    labels = [np.array([0, 1, 2]), np.array([0, 1]), np.array([0, 3])]
    scored = [
        (0, 1, np.array([0, 1]), np.array([0, 1]), np.array([0.9, 0.7])),
        (0, 2, np.array([0, 2]), np.array([0, 1]), np.array([0.3, 0.4])),
        (1, 2, np.array([0]), np.array([0]), np.array([0.8])),
    ]
    assert resolved_pairs(labels, scored) == (4, pytest.approx(0.9 + 0.7 + 0.8 + 0.8))
    # Random entities and candidates, against the reference.
    labels = [rng.integers(0, 30, 40) for _ in range(3)]
    scored = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        key = np.unique(rng.integers(0, 40 * 40, 300))
        scored.append((i, j, key // 40, key % 40, rng.random(len(key))))
    linked, expected = resolved_pairs(labels, scored)
    want = _resolved_reference(labels, scored)
    assert linked == want[0] and expected == pytest.approx(want[1], rel=1e-9)


def test_each_pair_of_sources_gets_its_own_share_of_the_matches(
    rng: np.random.Generator,
) -> None:
    """Three partners overlap unevenly: the session's matches lie mostly between the first two,
    and each pair of sources' prior is its share of the count over its own pairs."""
    from dataclasses import replace

    from oda_fed.matching import probabilistic as fs
    from oda_fed.matching.link_fields import pair_prior

    comps = [fs.Comparison("a", "exact", ("null", "agree", "differ")),
             fs.Comparison("b", "exact", ("null", "agree", "differ"))]  # fmt: skip
    u = [np.array([0, 0.01, 0.99]), np.array([0, 0.02, 0.98])]
    matches = (900, 100, 0)  # pairs of sources (0, 1), (0, 2), (1, 2)
    rows, pair = [], []
    for k, n in enumerate(matches):
        match = np.column_stack([rng.choice(3, n, p=[0, 0.95, 0.05]) for _ in comps])
        other = np.column_stack([rng.choice(3, 2000, p=uk) for uk in u])
        rows += [match, other]
        pair += [np.full(n + 2000, k)]
    levels = np.concatenate(rows).astype(np.int8)
    session = fs.Session((), levels, len(levels), pair=np.concatenate(pair))
    split = fs._split((fs.fit(comps, levels, u), levels), session)
    assert split is not None and split[0] == pytest.approx(0.9, abs=0.05)
    assert split[2] < 0.03 < 0.1 < split[1]

    model = replace(fs.fit(comps, levels, u), prior=1e-4, split=(0.9, 0.1, 0.0))
    sizes = [1000, 2000, 500]
    cross = 1000 * 2000 + 1000 * 500 + 2000 * 500
    assert pair_prior(model, 0, sizes) == pytest.approx(0.9 * 1e-4 * cross / (1000 * 2000))
    assert pair_prior(model, 1, sizes) == pytest.approx(0.1 * 1e-4 * cross / (1000 * 500))
    assert pair_prior(model, 2, sizes) is None  # nothing counted there: the model's prior
