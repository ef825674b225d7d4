"""Cell-key rounding: record keys are HMAC-SHA256, cell keys depend on the set of entities only,
rounding is unbiased, stays on the base and never publishes a non-zero count below the threshold."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.disclosure import (
    DisclosureError,
    DisclosureRules,
    cellkey_round,
    control_counts,
    count_cells,
    record_keys,
)

SECRET = bytes(range(32))


def _ids(rng: np.random.Generator, n: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{v:016x}" for v in rng.integers(0, 2**63, size=n)]


def _cell_key(ids: list[str], secret: bytes = SECRET) -> float:
    """The key of one cell holding ``ids``."""
    people = pd.DataFrame({"cell": ["c"] * len(ids)})
    counted = count_cells(people, dimensions=["cell"], record_keys=record_keys(ids, secret=secret))
    assert counted.cell_keys is not None
    return float(counted.cell_keys[0])


@pytest.mark.parametrize("secret", [b"s" * 16, SECRET, b"long secret " * 10])
def test_record_keys_are_the_first_eight_bytes_of_hmac_sha256(secret: bytes) -> None:
    ids = ["e0123456789abcdef", "", "Ünïcode", "e1"]
    expected = [
        int.from_bytes(hmac.new(secret, i.encode(), hashlib.sha256).digest()[:8], "big")
        for i in ids
    ]
    assert record_keys(ids, secret=secret).tolist() == expected


def test_record_keys_depend_on_the_secret_and_accept_any_id_type() -> None:
    a = record_keys(["e1", "e2"], secret=SECRET)
    b = record_keys(["e1", "e2"], secret=SECRET[::-1])
    assert a.dtype == np.uint64
    assert not np.any(a == b)
    assert record_keys(pd.Index([7, 8]), secret=SECRET).tolist() == (
        record_keys(["7", "8"], secret=SECRET).tolist()
    )
    assert len(record_keys([], secret=SECRET)) == 0


@pytest.mark.parametrize("secret", [b"short", "a text secret of some length", b""])
def test_weak_or_wrong_secrets_are_refused_without_quoting_them(secret: object) -> None:
    with pytest.raises(DisclosureError) as info:
        record_keys(["e1"], secret=secret)  # type: ignore[arg-type]
    text = secret.decode() if isinstance(secret, bytes) else str(secret)
    assert not text or text not in str(info.value)


def test_one_string_is_not_a_list_of_ids() -> None:
    with pytest.raises(DisclosureError):
        record_keys("e0123", secret=SECRET)


def test_count_cells_keeps_the_full_grid_and_levels_order() -> None:
    people = pd.DataFrame({"area": ["W2", "W1", "W2"], "partners": [1, 1, 1]})
    counted = count_cells(
        people,
        dimensions=["area", "partners"],
        levels={"area": ["W2", "W1", "W3"], "partners": [1, 2]},
    )
    assert counted.cell_keys is None
    assert counted.table.values.tolist() == [
        ["W2", 1, 2],
        ["W2", 2, 0],
        ["W1", 1, 1],
        ["W1", 2, 0],
        ["W3", 1, 0],
        ["W3", 2, 0],
    ]


@pytest.mark.parametrize(
    ("people", "levels"),
    [
        (pd.DataFrame({"area": ["W1", None]}), None),
        (pd.DataFrame({"area": ["W1", "W9"]}), {"area": ["W1"]}),
        (pd.DataFrame({"area": ["W1"]}), {"area": ["W1", "W1"]}),
        (pd.DataFrame({"ward": ["W1"]}), None),
    ],
)
def test_count_cells_refuses_missing_unlisted_or_absent_values(
    people: pd.DataFrame, levels: dict[str, list[str]] | None
) -> None:
    with pytest.raises(DisclosureError):
        count_cells(people, dimensions=["area"], levels=levels)


def test_count_cells_refuses_keys_that_do_not_match_the_entities() -> None:
    people = pd.DataFrame({"area": ["W1", "W2"]})
    with pytest.raises(DisclosureError):
        count_cells(people, dimensions=["area"], record_keys=np.array([1, 2, 3], dtype=np.uint64))
    with pytest.raises(DisclosureError):
        count_cells(people, dimensions=["area"], record_keys=np.array([0.1, 0.2]))


def test_the_same_entities_give_the_same_key_in_any_order(rng: np.random.Generator) -> None:
    ids = _ids(rng, 477)
    shuffled = list(rng.permutation(ids))
    assert _cell_key(ids) == _cell_key(shuffled)


def test_one_entity_more_or_less_gives_an_unrelated_key(rng: np.random.Generator) -> None:
    ids = _ids(rng, 477)
    base = _cell_key(ids)
    others = [_cell_key(ids + [f"dummy{k}"]) for k in range(200)] + [_cell_key(ids[1:])]
    assert base not in others
    # Unrelated: the keys of one-apart sets spread over [0, 1) like uniform draws.
    assert np.histogram(others, bins=4, range=(0, 1))[0].min() > 25


def test_cell_keys_are_in_the_unit_interval_and_zero_for_empty_cells(
    rng: np.random.Generator,
) -> None:
    n = 20_000
    people = pd.DataFrame({"cell": rng.integers(0, 50, size=n)})
    counted = count_cells(
        people,
        dimensions=["cell"],
        record_keys=record_keys(_ids(rng, n), secret=SECRET),
        levels={"cell": list(range(51))},
    )
    keys = counted.cell_keys
    assert keys is not None and keys.dtype == np.float64
    assert np.all((keys >= 0) & (keys < 1))
    assert keys[50] == 0.0 and counted.table["count"].iloc[50] == 0


def test_cellkey_round_examples() -> None:
    counts = np.array([477, 477, 480, 0, 3, 3, 12])
    keys = np.array([0.39, 0.41, 0.0, 0.5, 0.9, 0.1, 0.99])
    assert cellkey_round(counts, cell_keys=keys, base=5).tolist() == [480, 475, 480, 0, 5, 5, 10]
    assert cellkey_round(counts, cell_keys=keys, base=1).tolist() == counts.tolist()
    # 12 would round down to 10, under a threshold of 11: it goes up instead.
    assert cellkey_round(np.array([12]), cell_keys=np.array([0.99]), base=5, lowest=11)[0] == 15


@pytest.mark.parametrize(
    "keys", [np.array([0.5, 1.0]), np.array([-0.1, 0.5]), np.array([np.nan, 0.1]), np.array([0.1])]
)
def test_cellkey_round_refuses_bad_keys(keys: np.ndarray) -> None:
    with pytest.raises(DisclosureError):
        cellkey_round(np.array([3, 4]), cell_keys=keys, base=5)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(0, 10_000), base=st.integers(1, 20), grain=st.integers(1, 7))
def test_rounding_is_exactly_unbiased_over_evenly_spread_keys(
    count: int, base: int, grain: int
) -> None:
    # Keys i/N for N = base * grain: exactly r/base of them fall below r/base.
    n = base * grain
    keys = np.arange(n) / n
    rounded = cellkey_round(np.full(n, count), cell_keys=keys, base=base, lowest=0)
    assert int(rounded.sum()) == n * count
    assert set(rounded.tolist()) <= {count - count % base, count - count % base + base}


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(0, 500), min_size=1, max_size=60),
    base=st.integers(1, 12),
    min_cell=st.integers(0, 25),
    seed=st.integers(0, 2**32 - 1),
)
def test_control_counts_with_keys_obeys_the_rules(
    counts: list[int], base: int, min_cell: int, seed: int
) -> None:
    keys = np.random.default_rng(seed).random(len(counts))
    rules = DisclosureRules(min_cell=min_cell, rounding_base=base)
    out = control_counts(pd.DataFrame({"count": counts}), rules=rules, cell_keys=keys)
    raw = np.array(counts)
    suppressed = out["suppressed"].to_numpy()
    # Suppression decided on the true count, whatever the key.
    np.testing.assert_array_equal(suppressed, raw < min_cell)
    published = out["count"].to_numpy(dtype="float64", na_value=np.nan)[~suppressed]
    kept = raw[~suppressed]
    assert np.all(published % base == 0)
    assert np.all(np.abs(published - kept) < base)
    # A non-zero count is never published as zero, nor below the threshold.
    assert np.all(published[kept > 0] >= max(min_cell, 1))
    # The same keys give the same table.
    again = control_counts(pd.DataFrame({"count": counts}), rules=rules, cell_keys=keys)
    assert again.equals(out)


def test_rounding_is_unbiased_over_real_record_keys(rng: np.random.Generator) -> None:
    # 2,000 different sets of 477 entities: the published mean is 477 within sampling error.
    trials = 2_000
    ids = _ids(rng, 477 * trials)
    people = pd.DataFrame({"trial": np.repeat(np.arange(trials), 477)})
    counted = count_cells(people, dimensions=["trial"], record_keys=record_keys(ids, secret=SECRET))
    assert counted.cell_keys is not None
    rounded = cellkey_round(counted.table["count"].to_numpy(), cell_keys=counted.cell_keys, base=5)
    # 477 rounds to 480 with probability 0.4: standard error 5 * sqrt(0.24 / trials).
    assert abs(rounded.mean() - 477) < 4 * 5 * np.sqrt(0.24 / trials)
    assert set(rounded.tolist()) == {475, 480}


def test_control_counts_without_keys_is_unchanged_and_keys_never_enter_the_table() -> None:
    table = pd.DataFrame({"area": ["a", "b", "c"], "count": [3, 12, 18]})
    rules = DisclosureRules(min_cell=10, rounding_base=5)
    plain = control_counts(table, rules=rules)
    assert plain["count"].tolist() == [pd.NA, 10, 20]
    keyed = control_counts(table, rules=rules, cell_keys=np.array([0.0, 0.0, 0.99]))
    assert keyed["count"].tolist() == [pd.NA, 15, 15]
    assert list(keyed.columns) == ["area", "count", "suppressed"]


def test_control_counts_suppress_mask_adds_cells_and_is_checked() -> None:
    table = pd.DataFrame({"count": [3, 12, 18]})
    rules = DisclosureRules(min_cell=10, rounding_base=5)
    out = control_counts(table, rules=rules, suppress=np.array([False, True, False]))
    assert out["suppressed"].tolist() == [True, True, False]
    assert out["count"].tolist() == [pd.NA, pd.NA, 20]
    with pytest.raises(DisclosureError):
        control_counts(table, rules=rules, suppress=np.array([1, 0, 0]))
    with pytest.raises(DisclosureError):
        control_counts(table, rules=rules, cell_keys=np.array([0.5]))


def test_strictest_min_cell_of_the_partners_involved_wins() -> None:
    rules = DisclosureRules(min_cell=10, rounding_base=5)
    per_partner = {"police": 20, "nhs": 50, "fire": 5}
    assert rules.for_partners(["council", "police"], min_cell_by_partner=per_partner).min_cell == 20
    assert rules.for_partners(["fire"], min_cell_by_partner=per_partner).min_cell == 10
    assert rules.for_partners([], min_cell_by_partner=per_partner) == rules
    both = rules.for_partners(["police", "nhs"], min_cell_by_partner=per_partner)
    assert both == DisclosureRules(min_cell=50, rounding_base=5)
    with pytest.raises(DisclosureError):
        rules.for_partners(["x"], min_cell_by_partner={"x": -1})
    with pytest.raises(DisclosureError):
        rules.for_partners("police", min_cell_by_partner=per_partner)


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=80, unique=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_same_entities_always_get_the_same_published_value(ids: list[str], seed: int) -> None:
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    key = _cell_key(ids)
    assert _cell_key(shuffled) == key
    rounded = [
        cellkey_round(np.array([len(ids)]), cell_keys=np.array([_cell_key(s)]), base=5)[0]
        for s in (ids, shuffled)
    ]
    assert rounded[0] == rounded[1]
