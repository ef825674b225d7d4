"""Attacks with known totals, performed: the area partner's own row totals, and an area that two
products of one round both cover. Each runs against today's release path (oda_fed.products) and
against the defences (cell keys and secondary suppression), so that a broken defence fails here.

The attacker knows every published value, what values could have been rounded to it, the known
totals, and that a suppressed cell is a non-negative count (today: below ``min_cell``, since only
small cells are suppressed). An exact integer solver gives the range of values a suppressed cell
can take under all of that; the attack wins when the range is narrower than ``min_cell``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import (
    DisclosureRules,
    KnownTotal,
    control_counts,
    control_table,
    count_cells,
    known_totals,
    record_keys,
    round_half_up,
)
from oda_fed.products.tables import partner_count_cells

RULES = DisclosureRules(min_cell=10, rounding_base=5)
MIN_CELL, BASE = RULES.min_cell, RULES.rounding_base
UNKNOWN = "area not known"
SECRET = b"m" * 32
#: Largest count the attacker considers for a suppressed cell it cannot bound otherwise.
CAP = 2_000

Cell = tuple[str, int]
Domains = dict[int, tuple[int, int]]
Relation = tuple[dict[int, int], int]

# ---------------------------------------------------------------------------------------------
# The attacker's solver: exact integer ranges under sums with +1/-1 coefficients and box domains.


def _tighten(domains: Domains, relations: list[Relation]) -> Domains | None:
    """Bounds propagation to a fixed point; None when the relations cannot all hold."""
    dom = dict(domains)
    changed = True
    while changed:
        changed = False
        for coefficients, total in relations:
            terms = {
                v: dom[v] if c > 0 else (-dom[v][1], -dom[v][0]) for v, c in coefficients.items()
            }
            low = sum(t[0] for t in terms.values())
            high = sum(t[1] for t in terms.values())
            if low > total or high < total:
                return None
            for v, c in coefficients.items():
                bound = (total - (high - terms[v][1]), total - (low - terms[v][0]))
                if c < 0:
                    bound = (-bound[1], -bound[0])
                tight = (max(dom[v][0], bound[0]), min(dom[v][1], bound[1]))
                if tight[0] > tight[1]:
                    return None
                if tight != dom[v]:
                    dom[v], changed = tight, True
    return dom


def _feasible(domains: Domains, relations: list[Relation]) -> bool:
    dom = _tighten(domains, relations)
    if dom is None:
        return False
    open_ = [(hi - lo, v) for v, (lo, hi) in dom.items() if hi > lo]
    if not open_:
        return True
    _, v = min(open_)
    lo, hi = dom[v]
    mid = (lo + hi) // 2
    return _feasible({**dom, v: (lo, mid)}, relations) or _feasible(
        {**dom, v: (mid + 1, hi)}, relations
    )


def _value_range(domains: Domains, relations: list[Relation], target: int) -> tuple[int, int]:
    """The least and greatest value ``target`` takes over every integer solution."""
    dom = _tighten(domains, relations)
    assert dom is not None, "the attacker's model must admit the truth"
    lo, hi = dom[target]
    low = next(v for v in range(lo, hi + 1) if _feasible({**dom, target: (v, v)}, relations))
    high = next(v for v in range(hi, lo - 1, -1) if _feasible({**dom, target: (v, v)}, relations))
    return low, high


# ---------------------------------------------------------------------------------------------
# What each release path can publish for a true count.


def _half_up(count: int, rules: DisclosureRules = RULES) -> int | None:
    if count < rules.min_cell:
        return None
    return int(round_half_up(np.array([count]), rules.rounding_base)[0])


def _keyed(count: int) -> set[int]:
    down = count - count % BASE
    if down == count:
        return {count}
    return {down + BASE} if down < max(MIN_CELL, 1) else {down, down + BASE}


def _attack(
    published: list[int | None],
    *,
    could_publish: Callable[[int, int], bool],
    suppressed_below: int,
    relations: list[tuple[KnownTotal, int]],
) -> dict[int, tuple[int, int]]:
    """Each suppressed cell's range of possible values, from the published cells and totals."""
    domains: Domains = {}
    for i, shown in enumerate(published):
        if shown is None:
            domains[i] = (0, suppressed_below - 1)
        else:
            preimage = [c for c in range(MIN_CELL, shown + 2 * BASE) if could_publish(c, shown)]
            domains[i] = (min(preimage), max(preimage))
    solvable = [(dict(zip(t.cells, t.signs, strict=True)), value) for t, value in relations]
    return {
        i: _value_range(domains, solvable, i) for i, shown in enumerate(published) if shown is None
    }


def _today_could(rules: DisclosureRules) -> Callable[[int, int], bool]:
    return lambda count, shown: _half_up(count, rules) == shown


def _keyed_could(count: int, shown: int) -> bool:
    return shown in _keyed(count)


def _with_values(totals: list[KnownTotal], counts: np.ndarray) -> list[tuple[KnownTotal, int]]:
    """Known totals with the values their party knows (computed from the true counts)."""
    return [
        (t, int(sum(s * counts[c] for c, s in zip(t.cells, t.signs, strict=True)))) for t in totals
    ]


def _attack_today(
    table: pd.DataFrame, rules: DisclosureRules, totals: list[KnownTotal], counts: np.ndarray
) -> dict[int, tuple[int, int]]:
    """The attack on today's product: rounded half up, and a suppressed cell is a small one."""
    return _attack(
        _shown(table),
        could_publish=_today_could(rules),
        suppressed_below=rules.min_cell,
        relations=_with_values(totals, counts),
    )


def _attack_defended(
    table: pd.DataFrame, totals: list[KnownTotal], counts: np.ndarray
) -> dict[int, tuple[int, int]]:
    """The attack on a defended table: rounded by cell key, a suppressed cell any count."""
    return _attack(
        _shown(table),
        could_publish=_keyed_could,
        suppressed_below=CAP,
        relations=_with_values(totals, counts),
    )


# ---------------------------------------------------------------------------------------------
# Populations and products.


def _people(rng: np.random.Generator, sizes: dict[Cell, int]) -> pd.DataFrame:
    rows = [(a, p) for (a, p), n in sizes.items() for _ in range(n)]
    ids = [f"e{v:016x}" for v in rng.choice(2**62, size=len(rows), replace=False)]
    return pd.DataFrame(
        {"entity_id": ids, "area": [a for a, _ in rows], "partners": [p for _, p in rows]}
    )


def _today(
    people: pd.DataFrame, rules: DisclosureRules, area_of: dict[str, str] | None = None
) -> pd.DataFrame:
    """The release path before this defence: the true cells, suppressed and rounded half up, with no
    secondary suppression (what partner_count_by_area released)."""
    known = people[people["area"] != UNKNOWN]
    areas = known["area"].map(area_of) if area_of else known["area"]
    cells = partner_count_cells(
        entity_partners=pd.Series(people["partners"].to_numpy(), index=people["entity_id"]),
        entity_area=pd.Series(areas.to_numpy(), index=known["entity_id"]),
        n_partners=3,
    )
    return control_counts(cells, rules=rules)


def _shown(table: pd.DataFrame) -> list[int | None]:
    return [None if pd.isna(v) else int(v) for v in table["count"]]


def _cells(
    people: pd.DataFrame, area_of: dict[str, str] | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The defended path's cells (the same grid as today's product) and their cell keys."""
    frame = (
        people.assign(area=people["area"].map(lambda a: area_of.get(a, a))) if area_of else people
    )
    areas = sorted(set(frame["area"]) - {UNKNOWN}) + [UNKNOWN]
    counted = count_cells(
        frame,
        dimensions=["area", "partners"],
        record_keys=record_keys(frame["entity_id"], secret=SECRET),
        levels={"area": areas, "partners": [1, 2, 3]},
    )
    assert counted.cell_keys is not None
    return counted.table, counted.cell_keys


# W1 is the reported case: 8 known to one service, 22 to two, 40 to three; the council (which
# holds the area) knows it has 70 records in W1.
WARDS = {
    ("W1", 1): 8, ("W1", 2): 22, ("W1", 3): 40,
    ("W2", 1): 25, ("W2", 2): 31, ("W2", 3): 12,
    ("W3", 1): 3, ("W3", 2): 50, ("W3", 3): 27,
    (UNKNOWN, 1): 60, (UNKNOWN, 2): 15, (UNKNOWN, 3): 11,
}  # fmt: skip


def _row_totals(cells: pd.DataFrame) -> list[KnownTotal]:
    """The council's own row totals: every area it holds (not the unknown row)."""
    return [t for t in known_totals(cells, by=["area"]) if t.label != f"area={UNKNOWN}"]


@pytest.mark.parametrize(("base", "narrowed"), [(5, (6, 9)), (1, (8, 8))])
def test_the_area_partner_narrows_a_small_cell_from_its_row_total_today(
    rng: np.random.Generator, base: int, narrowed: tuple[int, int]
) -> None:
    rules = DisclosureRules(min_cell=MIN_CELL, rounding_base=base)
    people = _people(rng, WARDS)
    table = _today(people, rules)
    cells = table[["area", "partners"]].assign(count=0)
    counts = np.array(
        [WARDS[(a, p)] for a, p in table[["area", "partners"]].itertuples(index=False)]
    )
    ranges = _attack_today(table, rules, _row_totals(cells), counts)
    # W1 known to one service: 0-9 before the attack, 6-9 after (8 in truth); exact unrounded.
    assert ranges[0] == narrowed
    # W3's small cell shares its row with no other suppressed cell either.
    assert ranges[6][1] - ranges[6][0] < MIN_CELL - 1


def test_the_row_total_attack_fails_against_secondary_suppression(rng: np.random.Generator) -> None:
    people = _people(rng, WARDS)
    cells, keys = _cells(people)
    totals = _row_totals(cells)
    out = control_table(
        cells, rules=RULES, dimensions=["area", "partners"], cell_keys=keys, known_totals=totals
    )
    ranges = _attack_defended(out.table, totals, cells["count"].to_numpy())
    assert 0 in ranges and 6 in ranges
    for low, high in ranges.values():
        assert high - low >= MIN_CELL


@pytest.mark.parametrize("seed", range(40))
def test_on_random_tables_today_leaks_and_the_defence_holds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = {
        (a, p): int(rng.choice([rng.integers(0, 10), rng.integers(10, 60)]))
        for a in ("W1", "W2", "W3", "W4", UNKNOWN)
        for p in (1, 2, 3)
    }
    people = _people(rng, sizes)
    cells, keys = _cells(people)
    counts = cells["count"].to_numpy()
    totals = _row_totals(cells)
    # Today: every small cell alone in its row is narrowed below min_cell.
    today = _today(people, RULES)
    assert (
        today[["area", "partners"]].values.tolist() == cells[["area", "partners"]].values.tolist()
    )
    ranges = _attack_today(today, RULES, totals, counts)
    for i, (low, high) in ranges.items():
        alone = [
            sum(_shown(today)[j] is None for j in t.cells) == 1 for t in totals if i in t.cells
        ]
        if any(alone):
            assert high - low < MIN_CELL - 1
    # Defended: at least min_cell of width, unless the report names the row as exposed.
    out = control_table(
        cells, rules=RULES, dimensions=["area", "partners"], cell_keys=keys, known_totals=totals
    )
    ranges = _attack_defended(out.table, totals, counts)
    for i, (low, high) in ranges.items():
        exposed = {f"area={cells['area'][i]}"} & set(out.report.exposed)
        assert high - low >= MIN_CELL or exposed


# Product b counts the same people by district: N is wards W1 and W2, S is W3.
DISTRICT = {"W1": "N", "W2": "N", "W3": "S"}


def _overlaps(cells: pd.DataFrame) -> list[KnownTotal]:
    """Per partners value, a district of b counts the same people as its wards in a."""
    position = {
        (p, a, k): i
        for i, (p, a, k) in enumerate(
            cells[["product", "area", "partners"]].itertuples(index=False)
        )
    }
    totals = []
    for k in (1, 2, 3):
        for district in ("N", "S", UNKNOWN):
            wards = [w for w, d in DISTRICT.items() if d == district] or [UNKNOWN]
            totals.append(
                KnownTotal.same_people(
                    [position["a", w, k] for w in wards],
                    [position["b", district, k]],
                    label=f"{district} by wards, partners={k}",
                )
            )
    return totals


@pytest.mark.parametrize(("base", "narrowed"), [(5, (6, 9)), (1, (8, 8))])
def test_another_partner_narrows_a_small_cell_across_two_products_today(
    rng: np.random.Generator, base: int, narrowed: tuple[int, int]
) -> None:
    rules = DisclosureRules(min_cell=MIN_CELL, rounding_base=base)
    people = _people(rng, WARDS)
    both = pd.concat(
        [
            _today(people, rules).assign(product="a"),
            _today(people, rules, DISTRICT).assign(product="b"),
        ],
        ignore_index=True,
    )
    truth = {("a", a, p): n for (a, p), n in WARDS.items()}
    for (a, p), n in WARDS.items():
        key = ("b", DISTRICT.get(a, a), p)
        truth[key] = truth.get(key, 0) + n
    counts = np.array(
        [truth[k] for k in both[["product", "area", "partners"]].itertuples(index=False)]
    )
    # The police know no row total: only what the two products say about the same people.
    ranges = _attack_today(both, rules, _overlaps(both), counts)
    # W1 known to one service is N's 33 minus W2's 25: 6-9 rounded, exactly 8 unrounded.
    assert ranges[0] == narrowed


def test_the_two_product_attack_fails_against_secondary_suppression(
    rng: np.random.Generator,
) -> None:
    people = _people(rng, WARDS)
    a_cells, a_keys = _cells(people)
    b_cells, b_keys = _cells(people, DISTRICT)
    cells = pd.concat([a_cells.assign(product="a"), b_cells.assign(product="b")], ignore_index=True)
    keys = np.concatenate([a_keys, b_keys])
    # What the council knows (its rows in both products) and what anyone reading both knows.
    rows = [t for t in known_totals(cells, by=["product", "area"]) if UNKNOWN not in t.label]
    totals = _overlaps(cells) + rows
    out = control_table(
        cells,
        rules=RULES,
        dimensions=["product", "area", "partners"],
        cell_keys=keys,
        known_totals=totals,
    )
    counts = cells["count"].to_numpy()
    for known in (_overlaps(cells), totals):
        ranges = _attack_defended(out.table, known, counts)
        assert 0 in ranges
        for low, high in ranges.values():
            assert high - low >= MIN_CELL
    assert out.report.exposed == ()
