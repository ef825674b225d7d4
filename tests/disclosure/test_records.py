"""k-anonymity and l-diversity of record-level outputs, against a plain-Python reference, and as
the attacks they stop: a recipient singling out a rare row, or reading a sensitive value off the
group a record is in."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import WITHHELD, protect_records


def reference(rows, quasi, generalise, k, sensitive, l_div):
    """The rule written out row by row: a row fails if its group (same quasi values) has fewer
    than k rows or fewer than l sensitive values; failing rows have generalisable columns
    withheld one at a time; rows failing after that are left out."""
    rows = [dict(r) for r in rows]

    def failing():
        groups = {}
        for i, r in enumerate(rows):
            groups.setdefault(tuple(r[q] for q in quasi), []).append(i)
        bad = set()
        for members in groups.values():
            values = {sensitive[i] for i in members} if sensitive is not None else None
            if len(members) < k or (values is not None and len(values) < l_div):
                bad.update(members)
        return bad

    bad = failing()
    for column in generalise:
        if not bad:
            break
        for i in bad:
            rows[i][column] = WITHHELD
        bad = failing()
    return [r for i, r in enumerate(rows) if i not in bad]


@pytest.mark.parametrize("seed", range(12))
def test_protection_matches_the_rule_written_out(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    rows = pd.DataFrame(
        {
            "band": rng.choice(["1-2", "3-5", "6+"], size=n, p=[0.6, 0.3, 0.1]),
            "groups": rng.choice(["a", "b", "a+b", "c"], size=n),
        }
    )
    sensitive = pd.Series(rng.choice(["yes", "no", ""], size=n)) if seed % 2 else None
    k, l_div = int(rng.integers(2, 6)), int(rng.integers(1, 3))
    got = protect_records(
        rows, quasi=["band", "groups"], generalise=["groups"], k=k, sensitive=sensitive,
        l_diversity=l_div,
    )  # fmt: skip
    want = reference(
        rows.to_dict("records"), ["band", "groups"], ["groups"], k,
        None if sensitive is None else sensitive.tolist(), l_div,
    )  # fmt: skip
    assert got.rows.to_dict("records") == want
    assert got.decisions["released"] == len(want)
    assert sum(got.decisions[d] for d in ("released", "withheld_k", "withheld_l")) == n


def test_a_rare_row_cannot_be_singled_out() -> None:
    """The attacker's view: a list where one person alone is in the top band with both
    groups. Whatever is released, every combination it carries is shared by k rows."""
    rows = pd.DataFrame(
        {"band": ["6+"] + ["1-2"] * 12 + ["6+"] * 5, "groups": ["a+b"] + ["a"] * 12 + ["b"] * 5}
    )
    out = protect_records(rows, quasi=["band", "groups"], generalise=["groups"], k=5)
    counts = Counter(map(tuple, out.rows[["band", "groups"]].to_numpy().tolist()))
    assert min(counts.values()) >= 5
    # The lone row's groups were withheld, and alone in that group too, it was left out.
    assert ("6+", "a+b") not in counts and ("6+", WITHHELD) not in counts
    assert out.decisions["withheld_k"] == 1 and out.decisions["released"] == 17

    # Two rows short of k with their groups shown make a group of k once those are withheld.
    rows = pd.DataFrame({"band": ["6+"] * 6, "groups": ["a", "a", "a", "b", "b", "b"]})
    out = protect_records(rows, quasi=["band", "groups"], generalise=["groups"], k=5)
    assert out.rows["groups"].tolist() == [WITHHELD] * 6 and out.decisions["generalised"] == 6


def test_a_group_that_gives_away_the_sensitive_value_is_not_released() -> None:
    """Every record in the top band has a safeguarding flag: a recipient seeing a record in that
    band would know. With l = 2 that band goes; the rest, where both values occur, stays."""
    rows = pd.DataFrame({"band": ["6+"] * 6 + ["1-2"] * 8})
    flag = pd.Series(["yes"] * 6 + ["yes", "no"] * 4)
    out = protect_records(rows, quasi=["band"], k=2, sensitive=flag, l_diversity=2)
    assert set(out.rows["band"]) == {"1-2"}
    assert out.decisions["withheld_l"] == 6 and out.decisions["released"] == 8
    for _, group in out.rows.groupby("band"):
        assert flag[group.index].nunique() >= 2


def test_too_few_rows_hold_the_whole_output() -> None:
    rows = pd.DataFrame({"band": ["1-2"] * 7})
    out = protect_records(rows, quasi=["band"], k=5, min_rows=10)
    assert out.rows.empty and out.held.startswith("7 record(s) would be released")
    assert out.decisions["held"] == 7 and out.decisions["released"] == 0


def test_no_quasi_identifiers_make_one_group() -> None:
    rows = pd.DataFrame({"record": list("abcd")})
    assert protect_records(rows, quasi=[], k=5).rows.empty
    assert len(protect_records(rows, quasi=[], k=4).rows) == 4
    with pytest.raises(ValueError, match="only quasi-identifiers"):
        protect_records(rows, quasi=[], generalise=["record"], k=2)


def test_every_released_group_meets_k_and_l_on_many_draws() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 200))
        rows = pd.DataFrame(
            {"band": rng.choice(list("xyz"), n), "groups": rng.choice(list("pqrs"), n)}
        )
        flag = pd.Series(rng.choice(["1", "2", "3"], n, p=[0.8, 0.15, 0.05]))
        k, l_div = 3, 2
        out = protect_records(rows, quasi=["band", "groups"], generalise=["groups"], k=k,
                              sensitive=flag, l_diversity=l_div)  # fmt: skip
        for _, group in itertools.groupby(
            sorted(out.rows.index, key=lambda i: tuple(out.rows.loc[i])),
            key=lambda i: tuple(out.rows.loc[i]),
        ):
            members = list(group)
            assert len(members) >= k and flag[members].nunique() >= l_div
