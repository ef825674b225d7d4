"""Field-aware probabilistic linkage (Fellegi–Sunter) over field evidence, as Splink does it in
plain text.

For each candidate pair the coordinator builds a comparison vector, one level per field, from
the field filters and keyed tokens the nodes sent (:mod:`oda_fed.encoding.evidence`): binned
Dice similarity of the field filters (all names together in one), agreement of tokens and of
partial dates.
u (how often a level occurs between two unrelated records) is counted on random pairs; m (how
often it occurs between two records of one person) and the share of matches among candidates
are fitted by expectation–maximisation on the candidates, without any truth. A pair's match
weight is the sum of ``log2(m / u)`` of its levels; with the prior it gives a match probability,
and pairs at or above the probability threshold are resolved into entities with it as their
score. Where both records share a location, u of the other comparisons is the one counted
between different people of one partner who share a postcode (:func:`household`): a family
shares a name, which random pairs rarely do.

Candidates are the union of CLK similarity (the CLK stays the blocking key, with LSH for large
sources) and equality of a few combinations of tokens, which finds records whose CLKs differ
much (a move and a change of name) but that agree on date of birth and a name's sound.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from oda_fed.encoding.evidence import BORN, BORN_INITIAL, NAMES, PLACED, PLACED_INITIAL, Evidence
from oda_fed.encoding.fields import FieldEncoding
from oda_fed.matching import kernels
from oda_fed.matching.candidates import Candidates

#: No level's m falls below this: a level never seen between matches in this data (a typo in
#: sex, say) weighs at most about log2(m / u) against, not the -30 bits a zero would give, so
#: one slip never vetoes a link that every other field supports.
M_FLOOR = 1e-3

#: Levels are compared in order; the first that holds is the pair's level. Level 0 is "null":
#: either side lacks the value, and the field then says nothing (weight 0).
NULL = 0


@dataclass(frozen=True)
class Comparison:
    """One comparison: how a pair's level is found, and the levels' labels.

    ``fields`` are the project fields it reads: one for a date or exact comparison; every name
    field for the one ``names`` comparison; every address, postcode and free-text field for the
    one ``location`` comparison.
    """

    name: str
    kind: str  # "names", "date", "location", "exact"
    labels: tuple[str, ...]
    fields: tuple[str, ...] = ()
    #: The field types of ``fields``.
    types: tuple[str, ...] = ()


#: Field types that describe where someone lives. They move together (a house move changes the
#: address, the postcode and the town at once, and people at one address share all three), so
#: they are one comparison: counted as independent, a household would look like one person.
LOCATION_TYPES = frozenset({"address", "postcode", "free_text"})


#: The levels of the names comparison, after "null": Dice of the names' filters, one side's names
#: all among the other's (a name missing on one side: "JAMES" and "DANIEL JAMES" have Dice 0.6,
#: as a sibling has), and the names' sounds agreeing for respellings Dice misses.
NAME_LEVELS = ("exact", "dice>=0.8", "one holds the other", "phonetic", "dice>=0.6", "dice>=0.4",
               "else")  # fmt: skip
#: The share of the smaller names' filter bits the other must hold for "one holds the other".
CONTAINED = 0.95


def comparisons_for(fields: Sequence[FieldEncoding]) -> list[Comparison]:
    """The comparisons of a project's linkage fields: one for all the name fields together, one
    per date and identifier field, and one for all the location fields together."""
    names = tuple(f.name for f in fields if f.type == "name")
    out = [Comparison("names", "names", ("null", *NAME_LEVELS), names)] if names else []
    for f in fields:
        if f.type == "date_of_birth":
            labels = ("null", "exact", "day/month swapped", "year and month", "month and day",
                      "else")  # fmt: skip
            out.append(Comparison(f.name, "date", labels, (f.name,)))
        elif f.type not in LOCATION_TYPES | {"name"}:
            out.append(Comparison(f.name, "exact", ("null", "agree", "else"), (f.name,)))
    located = tuple(f for f in fields if f.type in LOCATION_TYPES)
    if located:
        labels = tuple(label for label, _ in _location_levels(located))
        out.append(Comparison("location", "location", ("null", *labels, "else"),
                              tuple(f.name for f in located),
                              types=tuple(f.type for f in located)))  # fmt: skip
    return out


def _location_levels(
    located: Sequence[FieldEncoding] | Sequence[str],
) -> list[tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray]]]:
    """The location comparison's levels for the location fields a project has, strongest first:
    each a label and a test over the pair's per-field similarities (``address``: the best
    address Dice; ``unit``, ``sector``: postcode tokens agree; ``text``: the
    best free-text Dice)."""
    has = {f if isinstance(f, str) else f.type for f in located}
    levels: list[tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray]]] = []
    if {"address", "postcode"} <= has:
        levels.append(("same address and postcode", lambda s: (s["address"] >= 0.8) & s["unit"]))
    if "postcode" in has:
        levels.append(("same postcode", lambda s: s["unit"]))
    if "address" in has:
        levels.append(("same address", lambda s: s["address"] >= 0.8))
    if "free_text" in has and not has & {"address", "postcode"}:
        levels.append(("all text agrees", lambda s: s["all_text"] >= 0.95))
        levels.append(("text agrees", lambda s: s["text"] >= 0.95))
    if "postcode" in has:
        levels.append(("same sector", lambda s: s["sector"]))
    if "address" in has:
        levels.append(("similar address", lambda s: s["address"] >= 0.6))
    if "free_text" in has:
        levels.append(("similar text", lambda s: s["text"] >= 0.8))
    return levels


def _dice(fa: np.ndarray, fb: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return _similarity(fa, fb, left, right)[0]


def _similarity(
    fa: np.ndarray, fb: np.ndarray, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's Dice (NaN where either filter is empty) and whether the smaller filter's bits
    are nearly all in the other (:data:`CONTAINED`)."""
    inter = kernels.pair_intersections(fa, fb, left, right)
    pa, pb = kernels.popcounts(fa)[left], kernels.popcounts(fb)[right]
    total = pa + pb
    dice = np.divide(2 * inter, total, out=np.zeros(len(left)), where=total > 0)
    dice[(pa == 0) | (pb == 0)] = np.nan
    return dice, inter >= CONTAINED * np.minimum(pa, pb)


def _eq(a: Evidence, b: Evidence, name: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """1 where both hold the token and it agrees, 0 where both hold it and it differs, -1 when
    either lacks it."""
    ta, tb = a.tokens[name][left], b.tokens[name][right]
    out = (ta == tb).astype(np.int8)
    out[(ta == 0) | (tb == 0)] = -1
    return out


def _first(conditions: Sequence[np.ndarray], n: int, *, null: np.ndarray) -> np.ndarray:
    """The level of each pair: 1 + the index of the first condition that holds, else the last
    level; ``null`` pairs are level 0."""
    level = np.full(n, len(conditions) + 1, dtype=np.int8)
    for index in range(len(conditions) - 1, -1, -1):
        level[conditions[index]] = index + 1
    level[null] = NULL
    return level


def _location(
    comp: Comparison, a: Evidence, b: Evidence, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Whether either side has no location at all, and the location levels' tests."""
    n = len(left)
    present_a = np.zeros(n, dtype=bool)
    present_b = np.zeros(n, dtype=bool)
    sims = {k: np.zeros(n, dtype=bool) for k in ("unit", "sector")}
    best = {k: np.zeros(n) for k in ("address", "text")}
    texts = []
    for name, kind in zip(comp.fields, comp.types, strict=True):
        if kind == "postcode":
            for part in ("unit", "sector"):
                sims[part] |= _eq(a, b, f"{name}:{part}", left, right) == 1
            present_a |= a.tokens[f"{name}:unit"][left] != 0
            present_b |= b.tokens[f"{name}:unit"][right] != 0
            continue
        fa, fb = a.filters[name], b.filters[name]
        present_a |= kernels.popcounts(fa)[left] > 0
        present_b |= kernels.popcounts(fb)[right] > 0
        dice = np.nan_to_num(_dice(fa, fb, left, right))
        which = "address" if kind == "address" else "text"
        best[which] = np.maximum(best[which], dice)
        if which == "text":
            texts.append(dice)
    values: dict[str, np.ndarray] = {**sims, **best}
    values["all_text"] = np.min(np.vstack(texts), axis=0) if texts else np.zeros(n)
    return ~(present_a & present_b), [test(values) for _, test in _location_levels(comp.types)]


def comparison_levels(
    comparisons: Sequence[Comparison],
    a: Evidence,
    b: Evidence,
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """``int8[pairs, comparisons]``: each pair's level in each comparison."""
    n = len(left)
    out = np.empty((n, len(comparisons)), dtype=np.int8)
    for c, comp in enumerate(comparisons):
        if comp.kind == "names":
            dice, contained = _similarity(a.filters[NAMES], b.filters[NAMES], left, right)
            null = np.isnan(dice)
            d = np.nan_to_num(dice)
            phonetic = _eq(a, b, f"{NAMES}:phonetic", left, right) == 1
            conditions = [d >= 0.999, d >= 0.8, contained, phonetic, d >= 0.6, d >= 0.4]
        elif comp.kind == "date":
            parts = [_eq(a, b, f"{comp.name}:{p}", left, right)
                     for p in ("ymd", "swap", "ym", "md")]  # fmt: skip
            null = parts[0] < 0
            conditions = [p == 1 for p in parts]
        elif comp.kind == "location":
            null, conditions = _location(comp, a, b, left, right)
        else:
            agree = _eq(a, b, f"{comp.name}:value", left, right)
            null = agree < 0
            conditions = [agree == 1]
        out[:, c] = _first(conditions, n, null=null)
    return out


# --- blocking by tokens ---------------------------------------------------------------------------


def blocking_rules(comparisons: Sequence[Comparison]) -> list[tuple[str, ...]]:
    """Combinations of tokens whose equality makes a candidate pair, beside CLK similarity:
    one name's sound or initial with the date of birth (``@names:born``,
    ``@names:born_initial``) or with the postcode (``@names:placed``,
    ``@names:placed_initial``), in any column on either side (``"family:*"``, see
    :func:`token_pairs`); the date with the postcode's sector; the postcode with the date's
    month and day, year and month, or day and month sorted; and the names' sound alone (the
    name tokens are unordered, so swapped names agree). Each is specific enough that blocks
    stay small at a million records."""
    dates = [c.name for c in comparisons if c.kind == "date"]
    postcodes = _postcodes(comparisons)
    names = next((len(c.fields) for c in comparisons if c.kind == "names"), 0)
    sound = f"{NAMES}:phonetic"
    rules = [(f"{d}:ymd", f"{p}:sector") for d in dates for p in postcodes]
    # A mistyped, swapped or half-missing date at one postcode: found by the CLK only at a low
    # threshold, which costs LSH far more at a million records.
    rules += [(f"{p}:unit", f"{d}:{part}") for d in dates for p in postcodes
              for part in ("md", "ym", "swap")]  # fmt: skip
    families = [BORN, BORN_INITIAL] * bool(dates) + [PLACED, PLACED_INITIAL] * bool(postcodes)
    if names:
        # One name's sound or initial and the date of birth or the postcode, in any name column
        # on either side.
        rules += [(f"{family}{ANY_COLUMN}",) for family in families]
        rules.append((sound,))
    return rules


def _postcodes(comparisons: Sequence[Comparison]) -> list[str]:
    return [
        name
        for c in comparisons
        if c.kind == "location"
        for name, kind in zip(c.fields, c.types, strict=True)
        if kind == "postcode"
    ]


def household_rules(comparisons: Sequence[Comparison]) -> list[tuple[str, ...]]:
    """The tokens whose equality within one source finds records of people who share a location
    (a postcode's unit), for :func:`household`; none without a postcode."""
    return [(f"{p}:unit",) for p in _postcodes(comparisons)]


def _side(token: str, side: int) -> str:
    """The token a rule element names on ``side`` (0 left, 1 right)."""
    return token.split("|")[side] if "|" in token else token


#: Most pairs a block of one token rule may make. A bigger block is two common values (a
#: common name's sound) whose pairs are nearly all of different people: at 1,000 rather than
#: 10,000, F1 is unchanged on 2 x 100k and 3 x 20k ukpop, and a million records make far fewer
#: candidates.
TOKEN_BLOCK = 1_000
#: The suffix of a rule element that stands for any column of a token family.
ANY_COLUMN = ":*"


def token_pairs(
    a: Evidence, b: Evidence, rules: Sequence[tuple[str, ...]], *, max_block: int = TOKEN_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs whose tokens agree on every token of at least one rule (none missing).
    A rule ``("family:*",)`` pairs records where any of the family's columns (``family:0``,
    ...) on the left agrees with any on the right: one pass for what would be a rule per pair
    of columns. Blocks of more than ``max_block`` pairs (a token shared by thousands) are
    skipped."""
    found = [rule_pairs(a, b, rule, max_block=max_block) for rule in rules]
    return merge_rule_pairs(found, n_right=len(b))


def rule_pairs(
    a: Evidence, b: Evidence, rule: Sequence[str], *, max_block: int = TOKEN_BLOCK
) -> tuple[np.ndarray, np.ndarray] | None:
    """Row pairs whose tokens agree on every token of ``rule`` (one rule of
    :func:`token_pairs`, which a cluster runs as a unit); None where a side lacks its tokens."""
    if len(rule) == 1 and rule[0].endswith(ANY_COLUMN):
        (ka, rows_a), (kb, rows_b) = (_any_column(ev, rule[0]) for ev in (a, b))
    elif any(_side(t, 0) not in a.tokens or _side(t, 1) not in b.tokens for t in rule):
        return None
    else:
        ka, kb = _rule_keys(a, rule, 0), _rule_keys(b, rule, 1)
        rows_a, rows_b = np.arange(len(ka)), np.arange(len(kb))
    left = pd.DataFrame({"k": ka, "left": rows_a})[ka != 0]
    right = pd.DataFrame({"k": kb, "right": rows_b})[kb != 0]
    sizes = left["k"].value_counts().mul(right["k"].value_counts(), fill_value=0)
    keep = sizes[(sizes > 0) & (sizes <= max_block)].index
    pairs = left[left["k"].isin(keep)].merge(right[right["k"].isin(keep)], on="k")
    return pairs["left"].to_numpy(np.int64), pairs["right"].to_numpy(np.int64)


def merge_rule_pairs(
    found: Sequence[tuple[np.ndarray, np.ndarray] | None], *, n_right: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rules' pairs (in rule order), each pair once, in order of first appearance."""
    parts = [f for f in found if f is not None]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Each pair once, as one number (far faster than dropping duplicate rows of a frame).
    width = np.int64(max(n_right, 1))
    key = pd.unique(np.concatenate([left * width + right for left, right in parts]))
    return key // width, key % width


def _any_column(ev: Evidence, element: str) -> tuple[np.ndarray, np.ndarray]:
    """The tokens of every column of a family (``element`` is ``"family:*"``), one after the
    other, and the row each came from; none where the family is not there."""
    family = element[: -len(ANY_COLUMN)]
    columns = sorted(k for k in ev.tokens if k.rsplit(":", 1)[0] == family)
    if not columns:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    keys = np.concatenate([ev.tokens[c] for c in columns])
    return keys, np.tile(np.arange(len(ev), dtype=np.int64), len(columns))


def _rule_keys(ev: Evidence, rule: Sequence[str], side: int) -> np.ndarray:
    """One 64-bit key per record combining the rule's tokens on ``side``; 0 when any is
    missing."""
    key = np.zeros(len(ev), dtype=np.uint64)
    missing = np.zeros(len(ev), dtype=bool)
    for i, name in enumerate(rule):
        t = ev.tokens[_side(name, side)]
        missing |= t == 0
        key ^= t * np.uint64(0x9E3779B97F4A7C15 * (2 * i + 1) % 2**64)
    key[missing] = 0
    key[(key == 0) & ~missing] = 1
    return key


# --- Fellegi–Sunter, fitted by EM ---------------------------------------------------------------


def probability(weight: np.ndarray) -> np.ndarray:
    """Match probabilities from match weights (log2 odds, prior included)."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weight, -60, 60)))


@dataclass(frozen=True)
class Model:
    """m and u of every level of every comparison, and the share of matches among candidates.

    ``m[c][l]`` and ``u[c][l]`` for level ``l >= 1`` of comparison ``c`` (level 0, null, has
    weight 0); ``prior`` is the fitted share of matches among the candidate pairs.
    """

    comparisons: tuple[Comparison, ...]
    m: tuple[np.ndarray, ...]
    u: tuple[np.ndarray, ...]
    prior: float
    iterations: int = 0
    converged: bool = False
    #: Each pair of sources' share of the matches counted, in pair order (None: one pair, or
    #: not counted): partners overlap unevenly, and a prior shared by all pairs of sources
    #: takes one partner's records for matches of a partner that holds few of its people.
    split: tuple[float, ...] | None = None
    #: Bits added to the weight of comparison ``c`` at level ``k`` when the pair's location is
    #: at level ``l``: ``household[c][l, k]`` (see :func:`household`). None: no adjustment.
    household: tuple[np.ndarray, ...] | None = None
    history: tuple[float, ...] = field(default=(), repr=False)

    def weights(self) -> list[np.ndarray]:
        """``log2(m / u)`` per level (0 for null)."""
        out = []
        for m, u in zip(self.m, self.u, strict=True):
            w = np.log2(np.maximum(m, 1e-12) / np.maximum(u, 1e-12))
            w[NULL] = 0.0
            out.append(w)
        return out

    def match_weight(self, levels: np.ndarray) -> np.ndarray:
        """Each pair's match weight: the sum of its levels' weights, plus the prior's."""
        total = np.full(len(levels), np.log2(self.prior / (1 - self.prior)))
        for c, w in enumerate(self.weights()):
            total += w[levels[:, c]]
        return total + _household_bits(self.comparisons, self.household, levels)

    def probability(self, levels: np.ndarray) -> np.ndarray:
        return probability(self.match_weight(levels))

    def to_json(self) -> str:
        """m, u, the prior and the household adjustment as JSON (the comparisons come from the
        project's fields)."""
        doc = {
            "comparisons": [c.name for c in self.comparisons],
            "m": [x.tolist() for x in self.m],
            "u": [x.tolist() for x in self.u],
            "prior": self.prior,
        }
        if self.household is not None:
            doc["household"] = [x.tolist() for x in self.household]
        return json.dumps(doc)

    @staticmethod
    def from_json(text: str, comparisons: Sequence[Comparison]) -> Model:
        """The model :meth:`to_json` wrote, for ``comparisons``.

        Raises
        ------
        ValueError
            It was trained for other comparisons (the project's fields changed).
        """
        doc = json.loads(text)
        names = [c.name for c in comparisons]
        levels = [len(c.labels) for c in comparisons]
        m = tuple(np.asarray(x, dtype=np.float64) for x in doc["m"])
        u = tuple(np.asarray(x, dtype=np.float64) for x in doc["u"])
        if doc["comparisons"] != names:
            raise ValueError(f"the match weights are for {doc['comparisons']}, not {names}")
        if [len(x) for x in m] != levels:
            raise ValueError(
                "the match weights were trained for other comparison levels (saved by an "
                "earlier oda-fed); link again to retrain them"
            )
        household = doc.get("household")
        if household is not None:
            household = tuple(np.asarray(x, dtype=np.float64) for x in household)
        return Model(tuple(comparisons), m, u, float(doc["prior"]), household=household)


def _household_bits(
    comparisons: Sequence[Comparison], household: Sequence[np.ndarray] | None, levels: np.ndarray
) -> np.ndarray | float:
    """Each pair's bits from :attr:`Model.household` (0 without one)."""
    if household is None:
        return 0.0
    at = levels[:, next(c for c, comp in enumerate(comparisons) if comp.kind == "location")]
    return sum(table[at, levels[:, c]] for c, table in enumerate(household))


#: Pairs of people sharing a location needed at a location level before u there is counted
#: among them, and how many pairs' worth of the ordinary u a count starts from (so a level seen
#: a handful of times moves little).
HOUSEHOLD_MIN = 200
HOUSEHOLD_START = 100.0


def household(
    comparisons: Sequence[Comparison],
    levels: np.ndarray,
    u: Sequence[np.ndarray],
    *,
    counts: np.ndarray | None = None,
) -> tuple[np.ndarray, ...] | None:
    """How differently the other comparisons weigh when two records share a location, from the
    ``levels`` of pairs of records in one source that share one (different people, where each
    partner holds a person once: :func:`household_rules`); ``counts``: how many pairs each row
    stands for, when the rows are distinct patterns (:func:`add_counts`).

    Fellegi–Sunter counts the comparisons as independent, but people at one address are mostly
    one family: a family name in common, a couple rarely of one sex, siblings rarely born on one
    day. Between two such people "the names are similar" is common, not the 1 in 250 of random
    pairs, so a household member with no birth date passed for the same person (ukpop 3 x 20k,
    medium errors: 90 % of false pairs). At each location level, u of each other comparison is
    counted among these pairs (as independent of each other there as Fellegi–Sunter takes them
    to be anywhere), and a pair at that level gets ``log2(u / u there)`` bits for each
    comparison's level. None when no level has :data:`HOUSEHOLD_MIN` pairs.

    Adjusting the names alone cost recall at a million records (ukpop 2 x 1M, F1 0.9686 against
    0.9703 without any adjustment): a match at its own address with a nickname then lost the
    names' weight, and nothing said that an agreeing birth date is rarer between members of one
    household than between random people.
    """
    loc = next((c for c, comp in enumerate(comparisons) if comp.kind == "location"), None)
    if loc is None or not len(levels):
        return None
    n_levels = [len(c.labels) for c in comparisons]
    tables = [np.zeros((n_levels[loc], k)) for k in n_levels]
    for level in range(1, n_levels[loc]):
        here = levels[:, loc] == level
        at, times = levels[here], None if counts is None else counts[here]
        for c, k in enumerate(n_levels):
            counts_c = np.bincount(at[:, c], weights=times, minlength=k)[1:].astype(float)
            if c == loc or counts_c.sum() < HOUSEHOLD_MIN:
                continue
            there = (counts_c + HOUSEHOLD_START * u[c][1:]) / (counts_c.sum() + HOUSEHOLD_START)
            # A level rarer there than between random pairs weighs more only as far as its
            # count shows (about a 95 % upper bound): none in a thousand pairs does not show a
            # rate below 1 in 10,000.
            upper = (counts_c + 2 * np.sqrt(counts_c) + 1) / counts_c.sum()
            there = np.maximum(there, np.minimum(u[c][1:], upper))
            tables[c][level, 1:] = np.log2(np.maximum(u[c][1:], 1e-12) / there)
    return tuple(tables) if any(t.any() for t in tables) else None


def estimate_u(
    levels: np.ndarray, n_levels: Sequence[int], *, counts: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """u per level from the levels of random pairs (nearly all non-matches), smoothed so no
    level has u = 0; ``counts``: how many pairs each row stands for (distinct patterns)."""
    out = []
    for c, k in enumerate(n_levels):
        seen = np.bincount(levels[:, c], weights=counts, minlength=k).astype(float)
        seen[NULL] = 0.0
        seen[1:] += 0.5
        out.append(seen / seen[1:].sum())
    return tuple(out)


def distinct_rows(
    levels: np.ndarray, n_levels: Sequence[int], weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``levels`` (sorted) and how often each occurs (the sum of their
    ``weights``, if given): ``np.unique(levels, axis=0, return_counts=True)``, but each row read
    as one number first, which is many times faster on tens of millions of candidate pairs."""
    code = np.zeros(len(levels), dtype=np.int64)
    for c, k in enumerate(n_levels):  # the first column most significant, as np.unique sorts
        code = code * np.int64(k) + levels[:, c].astype(np.int64)
    if weights is None:
        codes, counts = np.unique(code, return_counts=True)
    else:
        codes, inverse = np.unique(code, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(codes))
    rows = np.empty((len(codes), len(n_levels)), dtype=levels.dtype)
    for c in range(len(n_levels) - 1, -1, -1):
        rows[:, c] = codes % n_levels[c]
        codes //= n_levels[c]
    return rows, counts


def add_counts(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], n_levels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The reduce of level counts: distinct patterns (sorted) and their ``int64`` counts summed
    over ``parts``, each ``(patterns, counts)`` of :func:`distinct_rows`. Integer sums, so the
    parts may come in any order and split anywhere: the same as counting all rows at once."""
    parts = [(rows, counts) for rows, counts in parts if len(rows)]
    if not parts:
        return np.empty((0, len(n_levels)), dtype=np.int8), np.empty(0, dtype=np.int64)
    rows = np.concatenate([r for r, _ in parts])
    times = np.concatenate([c for _, c in parts]).astype(np.int64)
    patterns, first, inverse = np.unique(
        _pattern_codes(rows, n_levels), return_index=True, return_inverse=True
    )
    counts = np.zeros(len(patterns), dtype=np.int64)
    np.add.at(counts, inverse.reshape(-1), times)
    return rows[first], counts


def _pattern_codes(levels: np.ndarray, n_levels: Sequence[int]) -> np.ndarray:
    code = np.zeros(len(levels), dtype=np.int64)
    for c, k in enumerate(n_levels):  # the first column most significant, as np.unique sorts
        code = code * np.int64(k) + levels[:, c].astype(np.int64)
    return code


def presence(patterns: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """The share of pairs with both values of each comparison (level not null), from pattern
    counts; None without pairs. As ``(levels != NULL).mean(axis=0)`` of the rows, exactly."""
    total = int(counts.sum())
    if not total:
        return None
    return (
        np.array([int(counts[patterns[:, c] != NULL].sum()) for c in range(patterns.shape[1])])
        / total
    )


def fit(
    comparisons: Sequence[Comparison],
    levels: np.ndarray,
    u: Sequence[np.ndarray],
    *,
    prior: float = 0.1,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    weights: np.ndarray | None = None,
    household: tuple[np.ndarray, ...] | None = None,
) -> Model:
    """m and the prior by EM over the candidates' levels, u held fixed (as Splink trains m).
    ``weights``: how many pairs each row stands for, when the rows are a sample; ``household``:
    :attr:`Model.household`.

    Works on distinct comparison vectors with their counts, so its cost does not grow with the
    number of pairs.
    """
    n_levels = [len(c.labels) for c in comparisons]
    patterns, counts = distinct_rows(levels, n_levels, weights)
    counts = counts.astype(float)
    m = []
    for k in n_levels:
        # Start believing matches agree: the first (strongest) level most likely.
        start = np.linspace(1.0, 0.1, k - 1) ** 3
        m.append(np.concatenate([[0.0], start / start.sum()]))
    log_u = [np.log(np.maximum(x, 1e-12)) for x in u]
    shift = np.log(2.0) * _household_bits(comparisons, household, patterns)
    history = []
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - the count is kept
        log_m = [np.log(np.maximum(x, 1e-12)) for x in m]
        lm = np.zeros(len(patterns))
        lu = np.zeros(len(patterns))
        for c in range(len(comparisons)):
            lv = patterns[:, c]
            present = lv != NULL
            lm += np.where(present, log_m[c][lv], 0.0)
            lu += np.where(present, log_u[c][lv], 0.0)
        logit = np.log(prior) - np.log1p(-prior) + lm - lu + shift
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
        weighted = p * counts
        new_prior = float(np.clip(weighted.sum() / counts.sum(), 1e-9, 1 - 1e-9))
        new_m = []
        for c, k in enumerate(n_levels):
            new_m.append(_m_of(np.bincount(patterns[:, c], weights=weighted, minlength=k)))
        change = max(
            abs(new_prior - prior), *(np.abs(a - b).max() for a, b in zip(new_m, m, strict=True))
        )
        m, prior = new_m, new_prior
        history.append(prior)
        if change < tolerance:
            converged = True
            break
    return Model(tuple(comparisons), tuple(m), tuple(u), prior, iterations, converged,
                 household=household, history=tuple(history))  # fmt: skip


def random_pairs(
    sizes: Sequence[int], count: int, *, seed: int = 0
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """About ``count`` random record pairs spread over every pair of sources, as
    ``(source_a, source_b, left, right)``."""
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(len(sizes)) for j in range(i + 1, len(sizes))]
    each = max(1, count // max(len(pairs), 1))
    return [
        (i, j, rng.integers(0, sizes[i], each), rng.integers(0, sizes[j], each))
        for i, j in pairs
        if sizes[i] and sizes[j]
    ]


def scored(found: Candidates, probability: np.ndarray, threshold: float) -> Candidates:
    """The candidates at or above ``threshold``, scored by probability, in the documented order
    (score descending, then left, then right)."""
    keep = probability >= threshold
    left, right, score = found.left[keep], found.right[keep], probability[keep]
    order = np.lexsort((right, left, -score))
    return Candidates(left=left[order], right=right[order], score=score[order])


# --- training in sessions, as Splink does --------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """Pairs blocked on some tokens (say the date of birth): the comparisons those tokens belong
    to say nothing there, so they are left out, and the others' m are fitted on pairs whose
    non-matches look like random pairs (u fixed), which EM over similarity-blocked candidates
    would not give."""

    comparisons: tuple[str, ...]
    levels: np.ndarray
    pairs: int
    #: The level of ``comparisons[0]`` that the blocking tokens' equality is, when exactly one
    #: is (the date's "exact"); the session then counts matches for the prior.
    agree_level: int | None = None
    #: How many pairs each row of ``levels`` stands for, when they are a sample (None: one).
    weights: np.ndarray | None = None
    #: Each row's left record (and right record), as numbers equal only for one record facing
    #: one other source, so that a record's rows compete for its one match there
    #: (:func:`_one_to_one_m`). None: m as EM fits it, pair by pair.
    ends: tuple[np.ndarray, ...] | None = None
    #: Each row's pair of sources, numbered in pair order (None: one pair).
    pair: np.ndarray | None = None


#: A training session's rule: the comparisons it leaves out, the tokens it blocks on, and the
#: level of the first comparison their equality is (None when no one level is).
SessionRule = tuple[tuple[str, ...], tuple[str, ...], int | None]


def session_rules(comparisons: Sequence[Comparison]) -> list[SessionRule]:
    """``(comparisons left out, tokens blocked on, agreeing level)`` of each training session:
    one per date of birth, and one on the names' sound.

    None blocks on a location or one name: people at one address, or of one family name, are
    mostly not one person but agree on much else (an address, a family name), which would teach
    EM that they are.
    """
    rules: list[SessionRule] = [
        ((c.name,), (f"{c.name}:ymd",), 1) for c in comparisons if c.kind == "date"
    ]
    if any(c.kind == "names" for c in comparisons):
        rules.append((("names",), (f"{NAMES}:phonetic",), None))
    return rules


def train(
    comparisons: Sequence[Comparison],
    sessions: Sequence[Session],
    u: Sequence[np.ndarray],
    *,
    all_pairs: int,
    present: Sequence[float] | None = None,
    household: tuple[np.ndarray, ...] | None = None,
) -> Model:
    """m of every comparison from the sessions that did not block on it (each record's pairs
    competing for its one match, :func:`_one_to_one_m`), and the prior (the share of all record
    pairs that match) from how many matches a session found and how often matches agree on what
    it blocked on, with each pair of sources' share of them (:attr:`Model.split`).

    ``present``: the share of pairs with both values of each comparison (not null), counted on
    random pairs. The matches a session on the date of birth finds stand for the share of all
    matches that have both dates and agree on them exactly: ``present`` times how often matches
    agree (:func:`_agreement`). Without ``present`` a tenth of the matches went uncounted where
    a twentieth of dates are missing (ukpop-high). ``household``: :attr:`Model.household`, used
    in every fit.
    """
    names = [c.name for c in comparisons]
    fitted: dict[str, list[np.ndarray]] = {n: [] for n in names}
    found: list[tuple[Session, float, tuple[Model, np.ndarray]]] = []
    for s in sessions:
        left_out = [names.index(c) for c in s.comparisons]
        levels = s.levels.copy()
        levels[:, left_out] = NULL
        model = fit(comparisons, levels, u, weights=s.weights, household=household)
        session_m = _one_to_one_m(model, levels, s)
        for k, name in enumerate(names):
            if k not in left_out:
                fitted[name].append(session_m[k])
        found.append((s, model.prior * s.pairs, (model, levels)))
    m = []
    for k, comp in enumerate(comparisons):
        got = fitted[comp.name]
        m.append(np.mean(got, axis=0) if got else u[k].copy())
    matches, split = [], None
    for s, n, fitted_s in found:
        k = names.index(s.comparisons[0])
        if s.agree_level is None:
            continue
        agree = _agreement(comparisons, sessions, u, k, s.agree_level, household)
        if agree:
            both = present[k] if present is not None else 1.0
            matches.append(n / (agree * max(both, 1e-3)))
            split = split or _split(fitted_s, s)
    total = float(np.median(matches)) if matches else 0.01 * all_pairs
    prior = float(np.clip(total / max(all_pairs, 1), 1e-12, 0.5))
    return Model(tuple(comparisons), tuple(m), tuple(u), prior, converged=bool(matches),
                 split=split, household=household)  # fmt: skip


def _split(fitted: tuple[Model, np.ndarray], session: Session) -> tuple[float, ...] | None:
    """Each pair of sources' share of a session's matches, by its pairs' probabilities."""
    if session.pair is None:
        return None
    model, levels = fitted
    p = model.probability(levels)
    if session.weights is not None:
        p = p * session.weights
    mass = np.bincount(session.pair, weights=p)
    total = mass.sum()
    return tuple(float(x) for x in mass / total) if total > 0 else None


def _one_to_one_m(model: Model, levels: np.ndarray, session: Session) -> list[np.ndarray]:
    """m of a session's comparisons from its pairs' probabilities under its fit once a record's
    pairs compete for its one match (each pair's odds over both records' other pairs: one round
    of what :func:`~.link_fields.exclusive` iterates).

    EM sees one pair at a time, so a father and a son of one name at one address pass for one
    person whose date of birth was mistyped entirely, and namesakes born on other days for
    people who moved and mistyped it: m of "dates differ" came out 0.0105 where the truth is
    0.0012 (ukpop, 2 x 1M), and household members looked like matches. Where each of them has
    its own match in the session, the competition takes that share back.
    """
    if session.ends is None:
        return list(model.m)
    p = model.probability(levels)
    odds = p / np.maximum(1.0 - p, 1e-12)
    against = np.ones(len(p))
    for end in session.ends:
        _, group = np.unique(end, return_inverse=True)
        against *= 1.0 + np.maximum(np.bincount(group, weights=odds)[group] - odds, 0.0)
    share = odds / (against + odds)
    if session.weights is not None:
        share = share * session.weights
    return [_m_of(np.bincount(levels[:, c], weights=share, minlength=len(m)))
            if share[levels[:, c] != NULL].sum() > 0 else m
            for c, m in enumerate(model.m)]  # fmt: skip


def _m_of(mass: np.ndarray) -> np.ndarray:
    """m from the match mass at each level: null says nothing, and no level falls below
    :data:`M_FLOOR`."""
    mass = mass.astype(float)
    mass[NULL] = 0.0
    mass[1:] = np.maximum(mass[1:] / max(mass[1:].sum(), 1e-300), M_FLOOR)
    return mass / mass[1:].sum()


def _agreement(
    comparisons: Sequence[Comparison],
    sessions: Sequence[Session],
    u: Sequence[np.ndarray],
    k: int,
    level: int,
    household: tuple[np.ndarray, ...] | None = None,
) -> float | None:
    """How often matches are at ``level`` of comparison ``k``, in the sessions that did not
    block on it; None if none did.

    Each session gives two estimates, and the larger is kept. Both err by taking some non-matches
    for matches whose dates disagree, so both err low, each where the other holds:

    - by EM on comparison ``k`` alone: namesakes born on other days cannot be told from matches
      whose date was mistyped, and at a million records they outnumber them (ukpop 2 x 1M:
      0.861 for a true 0.867; our synthetic population, whose names are fewer: 0.902 for 0.948);
    - by EM on every comparison the session did not block on: namesakes at one address (a
      parent and a child of one name) pass for matches whose dates differ (ukpop 3 x 20k: 0.858
      for 0.870; 2 x 1M: 0.848 for 0.867; synthetic 2 x 1M: 0.943 for 0.948).

    Each share is taken with a record's pairs competing for its one match
    (:func:`_one_to_one_m`), as m is: pair by pair, the more namesakes a record has the more of
    them pass for matches with a mistyped date, and at a million records with high errors the
    share came out 0.867 for a true 0.883, so 3.2 % too many matches and recall estimated 0.026
    low (ukpop 2 x 626k). Competing, it errs high instead, by about as much whatever the
    namesakes (0.887 there; 0.946 for 0.927 at 2 x 1M, medium errors), since a match with a
    partial date shares its record with rivals as likely as itself; the session's count errs
    high too (namesakes born on one day, +1.2 % at both), and the two partly cancel.
    """
    name = comparisons[k].name
    shares = []
    for s in sessions:
        if name in s.comparisons:
            continue
        alone = np.zeros_like(s.levels)
        alone[:, k] = s.levels[:, k]
        others = s.levels.copy()
        others[:, [comparisons.index(c) for c in comparisons if c.name in s.comparisons]] = NULL
        fits = [(fit(comparisons, levels, u, weights=s.weights, household=household), levels)
                for levels in (alone, others)]  # fmt: skip
        shares.append(max(_one_to_one_m(f, levels, s)[k][level] for f, levels in fits))
    return float(np.mean(shares)) if shares else None
