"""The privacy cost of field evidence, measured by attacking exactly what the nodes send.

Run it with::

    .venv/bin/python benchmarks/attacks.py                # both data sets, 5-7 minutes
    .venv/bin/python benchmarks/attacks.py --data synth   # one data set, 2-3 minutes
    .venv/bin/python benchmarks/attacks.py --markdown     # the same tables as Markdown
    .venv/bin/python benchmarks/attacks.py --only-sex     # the sex table alone, about 1 minute

A region of three partners with medium errors is written as CSV files, from one of two data
sets (``--data``): ``synth``, made by our own generator (``oda_fed.synth``), or ``ukpop``, the
independent population of ``benchmarks/ukpop.py`` (its own name lists and error model), so the
figures are not only those of the data oda-fed was tuned on. Each partner's file is encoded by
the node's own code (:func:`oda_fed.node.encode.encode_file`): the CLKs, hardened as the
project says, and with ``method = "fields"`` the field evidence
(:class:`oda_fed.encoding.evidence.EvidenceEncoder`). The attacker is the coordinator: it holds
everything the nodes upload and the project file (so it knows the encoding scheme), but not the
linkage secret. It also holds public-like data drawn from the same distribution as the region
but *not* the region's own counts: a different population of the same data set, of
``--public`` people (another seed), standardised as a node would. Both data sets go through the
same code: only :func:`make_region` and :func:`public_sample` know which one they read.

Attacks
-------
Frequency alignment
    The encoded values of one encoding (distinct filters or tokens) are sorted by how many
    records carry them, the attacker's plaintext values (cut as the encoding cuts them: a name, a
    birth year, a postcode district...) by their count in its public sample, and rank ``i`` is
    guessed to be plaintext ``i`` (ties in random order). On CLKs the same is done with exact
    duplicate CLKs against family names: it is the only frequency attack that works on whole
    records without more machinery. Pattern mining (Christen et al. 2018) is not attempted.
Similarity graph (Vidanage et al. 2020)
    The attacker computes the Dice similarity graph of the encodings (the ``k`` nearest
    neighbours of each) and the same graph of its plaintext, which it encodes itself under a key
    of its own with the public scheme (so Bloom-filter collisions shape both graphs alike and no
    calibration is needed). Each node gets features from its neighbours' similarities (the
    similarity at ranks 1, 2, 3, 5, 10 and 20 and how many neighbours pass 0.5 to 0.9); nodes are
    matched across the graphs by the distance between features (greedy one-to-one, or the nearest
    for CLKs). For the names and address filters the nodes are the most frequent distinct filters
    against the attacker's distinct values; for CLKs, one partner's records against a register of
    the region's people (the population itself, cleanly standardised: the attacker's best case).

Sex, from the bits (a table of its own)
    Sex is a linkage field of both data sets' projects, so the CLK sets 10 positions for one
    value and 10 others for the other. With no key and no truth, the attacker takes the most
    anti-correlated pair of bit positions as seeds, gathers the positions that go with one seed
    and against the other (:func:`two_valued_split`), and puts each record with the set of which
    it has more positions set. The sex token is split by its commonest value. *Sex read* is the
    share of records put with their own sex under the better of the two labellings (which group
    is which the split does not say; a population table or one known record does); records
    without a sex are left out. It is also done on plain CLKs made without the sex field.

A record counts as re-identified when the guess for its encoded value is its own plaintext part
(for CLKs: its family name, or its person in the register); *distinct* is the share of distinct
encoded values guessed right; *prior* is the share of records that carry the attacker's most
frequent plaintext, i.e. what guessing one value for everybody gets right.

Each row carries the linkage F1 (pairwise, against the data set's truth) of the mode that sends the
encoding: ``method = "clk"`` with that hardening, or ``method = "fields"``, from a run of
:func:`oda_fed.embedded.link_files` on the same files.

The field evidence's names are the unordered pair of a record's names (``@names``): a guess is
right when it is the pair. A ``@names:born`` token is right when it is the date of birth with the
sound of the name behind it (``@names:placed``: the postcode); the attacker's list holds both
names of each public person.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks
from hardening import render  # noqa: E402

from oda_fed.config import LoadedProject, load_project
from oda_fed.embedded import link_files
from oda_fed.encoding import FieldEncoding, encode_records
from oda_fed.encoding.clk import ClkEncoder
from oda_fed.encoding.evidence import (
    BORN,
    BORN_INITIAL,
    FILTER_BITS,
    FILTER_K,
    NAMES,
    PLACED,
    PLACED_INITIAL,
    Evidence,
    EvidenceEncoder,
)
from oda_fed.encoding.hardening import Hardening, harden, salts_for
from oda_fed.matching import dice_candidates
from oda_fed.matching.candidates import MAX_CANDIDATES
from oda_fed.node.encode import encode_file, field_encodings
from oda_fed.node.sources import iter_prepared, layout_for
from oda_fed.standardise import standardise_column
from oda_fed.synth import project_document, write
from oda_fed.synth.dates import format_days
from oda_fed.synth.generator import simulate
from oda_fed.synth.population import Population

SECRET = b"attacks benchmark linkage secret"
#: The attacker encodes its own plaintext under a key of its own: the scheme is public.
ATTACKER_SECRET = b"the attacker's own key, not ours"
ATTACKER_CONTEXT = "attacker"
#: Neighbours per node in the similarity graphs.
NEIGHBOURS = 20
_RANKS = (0, 1, 2, 4, 9, 19)
_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Most distinct values per side in a graph attack on filters (the frequent ones).
MAX_GRAPH_NODES = 3000
#: The partner whose records the CLK graph attack targets (one record per person).
GRAPH_PARTNER = "council"
#: Malformed values (impossible dates) count as missing, as ``--on-invalid missing`` does.
ON_INVALID = "missing"

CLK_OPTIONS: tuple[tuple[str, Hardening], ...] = (
    ("plain", Hardening()),
    ("salt: year of birth", Hardening(salt_field="date_of_birth")),
    ("balance", Hardening(balance=True)),
    ("xor fold", Hardening(xor_fold=True)),
    ("diffusion t=3", Hardening(diffusion_taps=3)),
    ("BLIP f=0.02", Hardening(blip=0.02)),
)


# --- the regions, the nodes' uploads and the attacker's public data ------------------------------

#: The data sets a region can be made of: ``oda_fed.synth``, or the independent ``ukpop.py``.
DATA = ("synth", "ukpop")


def field_types(document: Mapping) -> dict[str, str]:
    """The linkage fields of a project document: name -> type."""
    return {f["name"]: f["type"] for f in document["linkage"]["fields"]}


def standardised(raw: Mapping[str, Sequence], types: Mapping[str, str]) -> dict[str, np.ndarray]:
    """People's true values (ISO dates), standardised as a node would: field -> values."""
    out = {}
    for name, kind in types.items():
        fmt = "%Y-%m-%d" if kind == "date_of_birth" else None
        clean, _ = standardise_column(pd.Series(list(raw[name]), dtype=object), kind, fmt=fmt)
        out[name] = clean.to_numpy(dtype=object)
    return out


def synth_people(population: Population) -> dict[str, np.ndarray]:
    """The true identities of an ``oda_fed.synth`` population, raw: field -> values."""
    return {
        "first_name": population.first_name,
        "last_name": population.last_name,
        "date_of_birth": format_days(population.dob, "%Y-%m-%d"),
        "sex": np.where(population.male, "m", "f"),
        "postcode": population.households.postcode[population.household],
    }


@dataclass(frozen=True)
class Region:
    """A region written as partner files, with what scoring needs."""

    root: Path
    paths: list[Path]
    truth: pd.DataFrame  # source, record_id, person_id
    document: dict  # the project, every linkage setting default
    members: dict[str, np.ndarray]  # partner -> person number of each row, file order
    register: dict[str, np.ndarray]  # the people's true values, by person number

    @property
    def types(self) -> dict[str, str]:
        return field_types(self.document)


def make_region(root: Path, *, data: str, population: int, seed: int) -> Region:
    """Three partners' files of ``population`` people with medium errors, from ``data``."""
    if data not in DATA:
        raise ValueError(f"data must be one of {', '.join(DATA)}, not {data!r}")
    if data == "synth":
        sim = simulate(population=population, partners=3, seed=seed, errors="medium")
        files = write(sim.synthetic, root)
        document = project_document(sim.synthetic.profiles, sources=True)
        return Region(
            root=root,
            paths=[p for p in files if p.stem != "truth"],
            truth=sim.synthetic.truth,
            document=document,
            members=sim.members,
            register=standardised(synth_people(sim.population), field_types(document)),
        )
    from ukpop import make_population

    folder = make_population(root, people=population, partners=3, errors="medium", seed=seed)
    document = tomllib.loads((folder / "project.toml").read_text())
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    paths = [folder / f"{p['id']}.csv" for p in document["partners"]]
    members = {}
    for path in paths:
        ids = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["record_id"])
        own = truth[truth.source == path.stem].set_index("record_id").person_id
        members[path.stem] = own.loc[ids.record_id].str[1:].astype(int).to_numpy()
    return Region(
        root=folder,
        paths=paths,
        truth=truth,
        document=document,
        members=members,
        register=_ukpop_people(folder, field_types(document)),
    )


def _ukpop_people(folder: Path, types: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The people of a ``ukpop.py`` population (``people.csv``, person ``i`` on row ``i``)."""
    people = pd.read_csv(folder / "people.csv", dtype=str, keep_default_na=False)
    assert (people.person_id.str[1:].astype(int) == np.arange(len(people))).all()
    return standardised(people, types)


def public_sample(
    root: Path, *, data: str, people: int, seed: int, types: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """The attacker's public-like data: another population of ``data`` (its own seed), not the
    region's own counts, standardised as a node would."""
    if data == "synth":
        return standardised(
            synth_people(simulate(population=people, partners=2, seed=seed).population), types
        )
    from ukpop import make_population

    return _ukpop_people(make_population(root, people=people, partners=2, seed=seed), types)


def project_for(region: Region, *, method: str, hardening: Hardening, name: str) -> LoadedProject:
    """The region's project file with ``method`` and ``hardening``, written and loaded."""
    doc = copy.deepcopy(region.document)
    doc["linkage"]["method"] = method
    options = {k: v for k, v in asdict(hardening).items() if v not in (None, False, 0, 0.0)}
    if options:
        doc["linkage"]["hardening"] = options
    path = region.root / f"project-{name}.toml"
    path.write_text(tomli_w.dumps(doc))
    return load_project(path)


@dataclass(frozen=True)
class Upload:
    """Everything the nodes send, all partners in file order, and the plaintext behind it."""

    clks: np.ndarray
    evidence: Evidence | None
    plain: dict[str, np.ndarray]  # field -> standardised value per record (None if missing)
    partner: np.ndarray
    person: np.ndarray


def node_uploads(region: Region, loaded: LoadedProject) -> Upload:
    clks, evidence, partner, person = [], [], [], []
    plain: dict[str, list] = {f.name: [] for f in loaded.project.linkage.fields}
    for path in region.paths:
        # Impossible dates (ukpop keeps them, as real extracts do) count as missing.
        layout = replace(layout_for(loaded.project, path.stem, None), on_invalid=ON_INVALID)
        encoded = encode_file(path, project=loaded.project, layout=layout, secret=SECRET)
        clks.append(encoded.clks)
        if encoded.evidence is not None:
            evidence.append(encoded.evidence)
        for chunk in iter_prepared(path, project=loaded.project, layout=layout):
            for name in plain:
                plain[name].extend(chunk.fields[name])
        partner.append(np.full(len(encoded), path.stem, dtype=object))
        person.append(region.members[path.stem])
    return Upload(
        clks=np.concatenate(clks),
        evidence=Evidence.concat(evidence) if evidence else None,
        plain={k: np.array(v, dtype=object) for k, v in plain.items()},
        partner=np.concatenate(partner),
        person=np.concatenate(person),
    )


# --- what an encoding cuts from a value (the public scheme of oda_fed.encoding.evidence) ---------


def _metaphone(value: str) -> str:
    import jellyfish

    from oda_fed.standardise.names import canonical_given_name

    word = canonical_given_name(value.split()[0]) if value.strip() else ""
    return jellyfish.metaphone(word) if word else ""


def _swap(value: str) -> str:
    return value[:4] + "-" + "-".join(sorted((value[5:7], value[8:10])))


CUTS: dict[str, Callable[[str], str]] = {
    "value": lambda v: v,
    "phonetic": _metaphone,
    "initials": lambda v: v[:1],
    "ymd": lambda v: v,
    "ym": lambda v: v[:7],
    "md": lambda v: v[5:],
    "swap": _swap,
    "unit": lambda v: v,
    "sector": lambda v: v[:-2] if " " in v else "",
}


def cut_all(values: Sequence[object], part: str) -> np.ndarray:
    """``CUTS[part]`` of each value, each distinct value once; "" where missing."""
    codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), use_na_sentinel=True)
    cut = CUTS[part]
    parts = np.array([cut(v) if isinstance(v, str) and v else "" for v in uniques] + [""])
    return parts.astype(object)[np.where(codes >= 0, codes, len(uniques))]


# --- frequency alignment -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reid:
    """Re-identification by one attack: shares of records and of distinct encoded values."""

    records: float
    distinct: float
    prior: float = float("nan")
    n: int = 0


def value_codes(encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An integer code per record for its encoded value (a token, or a filter's bytes), and
    whether the value is missing (token 0, all-zero filter)."""
    if encoded.ndim == 1:
        return pd.factorize(encoded)[0], encoded == 0
    rows = np.ascontiguousarray(encoded)
    keys = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()
    return pd.factorize(pd.Series([k.tobytes() for k in keys]))[0], ~rows.any(axis=1)


def _majority(codes: np.ndarray, truth: np.ndarray, n_codes: int) -> np.ndarray:
    """The most common plaintext behind each code."""
    frame = pd.DataFrame({"code": codes, "truth": truth})
    top = frame.value_counts().reset_index().drop_duplicates("code")
    out = np.full(n_codes, None, dtype=object)
    out[top["code"].to_numpy()] = top["truth"].to_numpy()
    return out


def frequency_alignment(
    encoded: np.ndarray, truth: np.ndarray, public: np.ndarray, *, rng: np.random.Generator
) -> Reid:
    """Align encoded values with the attacker's plaintext by frequency rank.

    Parameters
    ----------
    encoded
        ``uint64[n]`` tokens or ``uint64[n, words]`` filters, one per record.
    truth
        The plaintext part behind each record's value (scoring only; "" where missing).
    public
        The attacker's plaintext parts, one per person of its public sample.
    """
    codes, missing = value_codes(encoded)
    keep = ~missing & (truth != "")
    codes, truth = pd.factorize(codes[keep])[0], truth[keep]
    counts = np.bincount(codes)
    order = np.lexsort((rng.random(len(counts)), -counts))
    listed = pd.Series(public[public != ""]).value_counts()
    listed = listed.iloc[np.lexsort((rng.random(len(listed)), -listed.to_numpy()))]
    guess = np.full(len(counts), None, dtype=object)
    m = min(len(counts), len(listed))
    guess[order[:m]] = listed.index.to_numpy(dtype=object)[:m]
    right = guess[codes] == truth
    distinct = guess == _majority(codes, truth, len(counts))
    prior = float(np.mean(truth == listed.index[0])) if len(listed) else 0.0
    return Reid(records=float(right.mean()), distinct=float(distinct.mean()), prior=prior,
                n=len(truth))  # fmt: skip


# --- similarity-graph matching -------------------------------------------------------------------


def graph_features(filters: np.ndarray) -> np.ndarray:
    """Features of each node of the Dice graph of ``filters``: the similarity of its neighbours
    at a few ranks, and how many of its ``NEIGHBOURS`` nearest pass each of ``_LEVELS``."""
    n = len(filters)
    threshold = _neighbour_threshold(filters)
    parts = []
    # Left rows in blocks: a call refuses to let more pairs than MAX_CANDIDATES pass its
    # threshold before keeping the top k, and a low threshold lets nearly all pass.
    block = max(1, MAX_CANDIDATES // max(n, 1))
    for lo in range(0, n, block):
        found = dice_candidates(
            filters[lo : lo + block], filters, threshold=threshold, top_k=NEIGHBOURS + 1
        )
        parts.append(pd.DataFrame({"left": found.left + lo, "right": found.right,
                                   "score": found.score}))  # fmt: skip
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame.left != frame.right].sort_values(["left", "score"], ascending=[True, False])
    rank = frame.groupby("left").cumcount().to_numpy()
    keep = rank < NEIGHBOURS
    sims = np.zeros((n, NEIGHBOURS))
    sims[frame.left.to_numpy()[keep], rank[keep]] = frame.score.to_numpy()[keep]
    counts = np.stack([(sims >= level).sum(axis=1) for level in _LEVELS], axis=1)
    return np.hstack([sims[:, list(_RANKS)], counts / NEIGHBOURS])


def _neighbour_threshold(filters: np.ndarray, *, sample: int = 256) -> float:
    """A Dice threshold that nearly every node's ``NEIGHBOURS`` nearest pass (the 1st percentile
    of a sample's last neighbour): scoring is slow when nearly all pairs pass."""
    rows = np.random.default_rng(0).choice(len(filters), min(sample, len(filters)), replace=False)
    found = dice_candidates(
        np.ascontiguousarray(filters[np.sort(rows)]), filters, threshold=0.01,
        top_k=NEIGHBOURS + 1,
    )  # fmt: skip
    last = pd.Series(found.score).groupby(found.left).min()
    full = pd.Series(found.left).value_counts() >= NEIGHBOURS + 1
    if not full.all():
        return 0.01
    return float(max(0.01, np.floor(np.percentile(last, 1) * 100) / 100))


def _scaled(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.vstack([a, b])
    mean, std = both.mean(axis=0), both.std(axis=0) + 1e-9
    return (a - mean) / std, (b - mean) / std


def greedy_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-to-one matching of feature rows, closest pairs first: ``b``'s row for each of ``a``'s
    (-1 when none is left).

    Done in rounds of mutual nearest pairs, which is the greedy order without a loop over every
    pair: the closest pair left is always mutual."""
    a, b = _scaled(a, b)
    dist = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2 * a @ b.T
    match = np.full(len(a), -1)
    rows, cols = np.arange(len(a)), np.arange(len(b))
    while len(rows) and len(cols):
        sub = dist[np.ix_(rows, cols)]
        best_col = sub.argmin(axis=1)
        mutual = sub.argmin(axis=0)[best_col] == np.arange(len(rows))
        match[rows[mutual]] = cols[best_col[mutual]]
        rows, cols = rows[~mutual], np.delete(cols, best_col[mutual])
    return match


def nearest_match(a: np.ndarray, b: np.ndarray, *, block: int = 2048) -> np.ndarray:
    """``b``'s nearest row (in scaled feature space) for each row of ``a``, not one-to-one."""
    a, b = _scaled(a, b)
    out = np.empty(len(a), dtype=np.int64)
    b_sq = (b**2).sum(axis=1)
    for lo in range(0, len(a), block):
        part = a[lo : lo + block]
        out[lo : lo + block] = np.argmin(b_sq[None, :] - 2 * part @ b.T, axis=1)
    return out


def attacker_filters(values: Sequence[str], kind: str) -> np.ndarray:
    """The attacker's own field filters of its plaintext: the evidence scheme, its own key.
    ``kind`` :data:`NAMES`: values are ``"a|b"`` name pairs, encoded as the names' filter is."""
    kind_of = "name" if kind == NAMES else kind
    encoding = FieldEncoding("value", kind_of, ngram=2, bits_per_token=FILTER_K)
    encoder = ClkEncoder(
        [encoding], secret=ATTACKER_SECRET, context=ATTACKER_CONTEXT, bits=FILTER_BITS
    )
    if kind != NAMES:
        return encoder.encode({"value": list(values)})
    parts = [v.split("|") for v in values]
    width = max((len(p) for p in parts), default=1)
    columns = [[p[i] if i < len(p) else None for p in parts] for i in range(width)]
    return np.bitwise_or.reduce([encoder.encode({"value": c}) for c in columns])


def filter_graph_attack(
    filters: np.ndarray, truth: np.ndarray, public: np.ndarray, *, kind: str
) -> Reid:
    """Match the graph of the most frequent distinct filters with that of the attacker's
    distinct plaintext values."""
    codes, missing = value_codes(filters)
    keep = ~missing & (truth != "")
    codes, truth, rows = codes[keep], truth[keep], np.flatnonzero(keep)
    codes = pd.factorize(codes)[0]
    counts = np.bincount(codes)
    listed = pd.Series(public[public != ""]).value_counts()
    nodes = min(len(listed), MAX_GRAPH_NODES)
    top = np.argsort(-counts, kind="stable")[:nodes]
    first_row = np.full(len(counts), -1)
    first_row[codes[::-1]] = rows[::-1]
    encoded = np.ascontiguousarray(filters[first_row[top]])
    plain_values = listed.index.to_numpy(dtype=object)[:nodes]
    plain = attacker_filters(list(plain_values), kind)
    match = greedy_match(graph_features(encoded), graph_features(plain))
    guess = np.full(len(counts), None, dtype=object)
    guess[top] = np.where(match >= 0, plain_values[match], None)
    right = guess[codes] == truth
    distinct = (guess == _majority(codes, truth, len(counts)))[top]
    return Reid(records=float(right.mean()), distinct=float(distinct.mean()), n=len(truth))


def clk_graph_attack(
    upload: Upload, register: Mapping[str, np.ndarray], loaded: LoadedProject, options: Hardening
) -> Reid:
    """Match one partner's CLK graph with the graph of the attacker's register, which it
    encodes and hardens with the project's scheme under its own key."""
    rows = np.flatnonzero(upload.partner == GRAPH_PARTNER)
    encoded = np.ascontiguousarray(upload.clks[rows])
    table = {k: list(v) for k, v in register.items()}
    salts = salts_for(table["date_of_birth"], hardening=options)
    plain = encode_records(
        table,
        fields=field_encodings(loaded.project),
        secret=ATTACKER_SECRET,
        context=ATTACKER_CONTEXT,
        bits=loaded.project.linkage.bits,
        **({"salts": salts} if salts is not None else {}),
    )
    if options != Hardening():
        plain = harden(plain, hardening=options, secret=ATTACKER_SECRET, context=ATTACKER_CONTEXT)
    match = nearest_match(graph_features(encoded), graph_features(plain))
    right = match == upload.person[rows]
    return Reid(records=float(right.mean()), distinct=float(right.mean()), n=len(rows))


# --- a two-valued field read from the bits ------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Records split in two by an attack, scored against a two-valued field (sex)."""

    accuracy: float  # records put with their own value, under the better of the two labellings
    prior: float  # the commoner value's share: what one guess for everybody gets right
    n: int  # records scored: those holding one of the two values
    missing: float  # the share left out: value missing (or a third one, such as "u")
    positions: int = 0  # bit positions the split read (CLKs)


def bit_correlation(bits: np.ndarray, *, block: int = 4096) -> np.ndarray:
    """The correlation matrix of the columns of a 0/1 matrix, none constant (summed in row
    blocks, exact in float32, so that no float copy of the whole matrix is made)."""
    both = np.zeros((bits.shape[1], bits.shape[1]))
    for lo in range(0, len(bits), block):
        part = bits[lo : lo + block].astype(np.float32)
        both += part.T @ part
    share = bits.mean(axis=0)
    spread = np.sqrt(share * (1 - share))
    return (both / len(bits) - np.outer(share, share)) / np.outer(spread, spread)


def two_valued_split(clks: np.ndarray) -> tuple[np.ndarray, int]:
    """Split records in two by the bit positions a two-valued field sets, from the CLKs alone.

    A two-valued field (sex) sets ``k`` positions for one value and ``k`` others for the other,
    so a record holding it has one set of positions all set and the other at the background
    rate: the positions of one set rise together, and fall when the other set's rise. A name
    bigram or a birth month sets its positions in a few records and has no one opposite, so
    the most anti-correlated pair of positions seeds the two sets. A position joins the first
    set when its correlation with the first seed, less that with the second, is more than the
    seeds' own anti-correlation (both halved), and the second set the other way round. A record
    goes with the set of which it has the larger share of positions set. Constant positions,
    and positions that copy another (a balanced CLK's complements), are dropped first.

    Returns each record's group (True: the first seed's) and how many positions were read.
    """
    bits = np.unpackbits(np.ascontiguousarray(clks).view(np.uint8), axis=1)
    share = bits.mean(axis=0)
    bits = bits[:, (share > 0) & (share < 1)]
    corr = bit_correlation(bits)
    copies = np.triu(np.abs(corr) > 0.99, 1).any(axis=0)
    bits, corr = bits[:, ~copies], corr[np.ix_(~copies, ~copies)]
    i, j = np.unravel_index(np.argmin(corr), corr.shape)
    side, cut = (corr[:, i] - corr[:, j]) / 2, -corr[i, j] / 2
    first, second = side > cut, side < -cut
    score = bits[:, first].mean(axis=1) - bits[:, second].mean(axis=1)
    return score > 0, int(first.sum() + second.sum())


def clk_sex(clks: np.ndarray, truth: np.ndarray) -> Split:
    """:func:`two_valued_split` of the CLKs, scored against each record's sex."""
    groups, positions = two_valued_split(clks)
    return split_accuracy(groups, truth, positions=positions)


def token_split(tokens: np.ndarray) -> np.ndarray:
    """Records split by a token: those holding its commonest value, and the rest."""
    held = tokens[tokens != 0]
    values, counts = np.unique(held, return_counts=True)
    return tokens == values[np.argmax(counts)] if len(values) else np.zeros(len(tokens), bool)


def split_accuracy(groups: np.ndarray, truth: np.ndarray, *, positions: int = 0) -> Split:
    """Score a split against ``truth`` (a value per record, "" where missing): records holding
    neither of its two commonest values are left out."""
    values = pd.Series(truth[truth != ""]).value_counts().index[:2]
    held = np.isin(truth, values)
    first = truth[held] == values[0]
    same = float(np.mean(groups[held] == first))
    return Split(accuracy=max(same, 1 - same), prior=float(max(first.mean(), 1 - first.mean())),
                 n=int(held.sum()), missing=float(1 - held.mean()), positions=positions)  # fmt: skip


def sex_field(loaded: LoadedProject) -> str | None:
    """The project's linkage field of type sex, if it has one."""
    return next((f.name for f in loaded.project.linkage.fields if f.type == "sex"), None)


# --- what a names encoding stands for ------------------------------------------------------------


def _joined(values: Mapping[str, np.ndarray], part: str = "value") -> np.ndarray:
    """The unordered pair of a record's names, cut by ``part``: what a joined encoding hides."""
    first, last = cut_all(values["first_name"], part), cut_all(values["last_name"], part)
    pairs = ["|".join(sorted(x for x in p if x)) for p in zip(first, last, strict=True)]
    return np.array(pairs, dtype=object)


#: The token families of one name with another field's value (``@names:born``,
#: ``@names:placed``): what each cuts from the name, and the field type it pairs the name with.
_ANCHORED = {
    BORN: ("phonetic", "date_of_birth"),
    BORN_INITIAL: ("initials", "date_of_birth"),
    PLACED: ("phonetic", "postcode"),
    PLACED_INITIAL: ("initials", "postcode"),
}


def _anchored(values: Mapping[str, np.ndarray], part: str, anchor: str) -> dict[str, np.ndarray]:
    """Each name cut by ``part``, with the value of field ``anchor`` (``"value|part"``), per name
    field."""
    anchors = cut_all(values[anchor], "value")
    out = {}
    for name in ("first_name", "last_name"):
        cut = cut_all(values[name], part)
        out[name] = np.array([f"{d}|{c}" if d and c else "" for d, c in
                              zip(anchors, cut, strict=True)], dtype=object)  # fmt: skip
    return out


def anchored_truth(upload: Upload, loaded: LoadedProject) -> dict[str, np.ndarray]:
    """The plaintext behind each ``@names:born...:i`` and ``@names:placed...:i`` column: which
    name a column holds differs from record to record (the tokens are sorted by value), so each
    name's token is made on its own, as the node makes it, and matched back."""
    project = loaded.project
    fields = field_encodings(project)
    assert upload.evidence is not None
    out = {}
    for family, (part, kind) in _ANCHORED.items():
        anchors = [f for f in fields if f.type == kind]
        if not anchors:
            continue
        plain = _anchored(upload.plain, part, anchors[0].name)
        own = {}
        for f in (f for f in fields if f.type == "name"):
            encoder = EvidenceEncoder([f, anchors[0]], secret=SECRET, context=project.name)
            table = {
                f.name: list(upload.plain[f.name]),
                anchors[0].name: list(upload.plain[anchors[0].name]),
            }
            own[f.name] = encoder.encode(table).tokens[f"{family}:0"]
        for column, tokens in upload.evidence.tokens.items():
            if column.rsplit(":", 1)[0] == family:
                truth = np.full(len(tokens), "", dtype=object)
                for name, token in own.items():
                    hit = (token == tokens) & (tokens != 0)
                    truth[hit] = plain[name][hit]
                out[column] = truth
    return out


# --- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    encoding: str
    setting: str
    frequency: Reid
    graph: Reid | None
    f1: float


@dataclass(frozen=True)
class SexRow:
    source: str
    setting: str
    split: Split


@dataclass
class Run:
    region: Region
    public: dict[str, np.ndarray]
    seed: int
    only_sex: bool = False  # the sex attacks alone: no other attack, no linkage
    rows: list[Row] = field(default_factory=list)
    sex: list[SexRow] = field(default_factory=list)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def f1(self, loaded: LoadedProject) -> float:
        result = link_files(self.region.paths, project=loaded, secret=SECRET, on_invalid=ON_INVALID)
        return float(result.quality(self.region.truth).f1)

    def clk_rows(self, label: str, options: Hardening) -> None:
        loaded = project_for(self.region, method="clk", hardening=options, name=f"clk-{label}")
        upload = node_uploads(self.region, loaded)
        if (sex := sex_field(loaded)) is not None:
            split = clk_sex(upload.clks, cut_all(upload.plain[sex], "value"))
            self.sex.append(SexRow("CLK (1024 bits)", label, split))
        if self.only_sex:
            return
        surnames = cut_all(upload.plain["last_name"], "value")
        frequency = frequency_alignment(
            upload.clks, surnames, self.public["last_name"], rng=self.rng()
        )
        graph = clk_graph_attack(upload, self.region.register, loaded, options)
        self.rows.append(Row("CLK (1024 bits)", label, frequency, graph, self.f1(loaded)))

    def sex_without_its_field(self) -> None:
        """Sex read from plain CLKs of every linkage field but sex: what the others carry."""
        loaded = project_for(self.region, method="clk", hardening=Hardening(), name="clk-plain")
        if (sex := sex_field(loaded)) is None:
            return
        truth = cut_all(node_uploads(self.region, loaded).plain[sex], "value")
        document = copy.deepcopy(self.region.document)
        linkage = document["linkage"]
        linkage["fields"] = [f for f in linkage["fields"] if f["name"] != sex]
        region = replace(self.region, document=document)
        loaded = project_for(region, method="clk", hardening=Hardening(), name="clk-no-sex")
        split = clk_sex(node_uploads(region, loaded).clks, truth)
        self.sex.append(SexRow("CLK (1024 bits)", f"plain, {sex} not a linkage field", split))

    def evidence_rows(self) -> None:
        """Every filter and token column of the default field evidence."""
        loaded = project_for(self.region, method="fields", hardening=Hardening(), name="fields")
        upload = node_uploads(self.region, loaded)
        assert upload.evidence is not None
        if (sex := sex_field(loaded)) is not None:
            groups = token_split(upload.evidence.tokens[f"{sex}:value"])
            split = split_accuracy(groups, cut_all(upload.plain[sex], "value"))
            self.sex.append(SexRow(f"token {sex}:value", "default", split))
        if self.only_sex:
            return
        f1 = self.f1(loaded)
        types = {f.name: f.type for f in loaded.project.linkage.fields}
        anchored = anchored_truth(upload, loaded)
        for name, filters in upload.evidence.filters.items():
            if name == NAMES:
                truth, public, kind = _joined(upload.plain), _joined(self.public), NAMES
            else:
                truth = cut_all(upload.plain[name], "value")
                public, kind = cut_all(self.public[name], "value"), types[name]
            frequency = frequency_alignment(filters, truth, public, rng=self.rng())
            graph = filter_graph_attack(filters, truth, public, kind=kind)
            self.rows.append(Row(f"filter {name}", "default", frequency, graph, f1))
        anchors = {f.type: f.name for f in loaded.project.linkage.fields}
        public_anchored = {
            family: np.concatenate(list(_anchored(self.public, part, anchors[kind]).values()))
            for family, (part, kind) in _ANCHORED.items()
            if kind in anchors
        }
        for name, tokens in upload.evidence.tokens.items():
            field_name, part = name.rsplit(":", 1)
            if name in anchored:
                truth, public = anchored[name], public_anchored[field_name]
            elif field_name == NAMES:
                truth, public = _joined(upload.plain, part), _joined(self.public, part)
            else:
                truth = cut_all(upload.plain[field_name], part)
                public = cut_all(self.public[field_name], part)
            frequency = frequency_alignment(tokens, truth, public, rng=self.rng())
            self.rows.append(Row(f"token {name}", "default", frequency, None, f1))


# --- output --------------------------------------------------------------------------------------

HEADER = (
    "encoding",
    "setting",
    "records",
    "freq: records re-id",
    "freq: distinct",
    "prior",
    "graph: records re-id",
    "graph: distinct",
    "F1 of its mode",
)


def cells(row: Row) -> list[str]:
    def pct(x: float) -> str:
        return f"{100 * x:.1f} %" if x == x else "–"

    graph = row.graph
    return [
        row.encoding,
        row.setting,
        f"{row.frequency.n:,}",
        pct(row.frequency.records),
        pct(row.frequency.distinct),
        pct(row.frequency.prior),
        pct(graph.records) if graph else "–",
        pct(graph.distinct) if graph else "–",
        f"{row.f1:.4f}",
    ]


SEX_HEADER = (
    "read from",
    "setting",
    "records",
    "sex missing (left out)",
    "sex read",
    "larger group",
    "bit positions read",
)


def sex_cells(row: SexRow) -> list[str]:
    split = row.split
    return [
        row.source,
        row.setting,
        f"{split.n:,}",
        f"{100 * split.missing:.1f} %",
        f"{100 * split.accuracy:.2f} %",
        f"{100 * split.prior:.1f} %",
        f"{split.positions}" if split.positions else "–",
    ]


def attack(
    root: Path,
    *,
    data: str,
    population: int,
    public: int,
    seed: int,
    clk_options: Sequence[tuple[str, Hardening]] = CLK_OPTIONS,
    only_sex: bool = False,
) -> Run:
    """Make a region of ``data`` in ``root`` and the attacker's public sample (seed + 1000), and
    run every attack: a row per CLK option of ``clk_options``, then the field evidence.
    ``only_sex``: read sex from the CLKs and the sex token, and nothing else."""
    region = make_region(root / "region", data=data, population=population, seed=seed)
    sample = public_sample(
        root / "public", data=data, people=public, seed=seed + 1000, types=region.types
    )
    run = Run(region=region, public=sample, seed=seed, only_sex=only_sex)
    for label, hardening in clk_options:
        run.clk_rows(label, hardening)
    run.sex_without_its_field()
    run.evidence_rows()
    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--data", default=",".join(DATA), help=f"comma-separated data sets: {', '.join(DATA)}"
    )
    parser.add_argument("--population", type=int, default=20_000, help="people in the region")
    parser.add_argument("--public", type=int, default=50_000, help="people in the public sample")
    parser.add_argument("--seed", type=int, default=1, help="seed of the region")
    parser.add_argument("--skip-clk-options", action="store_true", help="plain CLKs only")
    parser.add_argument(
        "--only-sex", action="store_true", help="only read sex from the CLKs and the sex token"
    )
    args = parser.parse_args(argv)
    data = [d.strip() for d in args.data.split(",") if d.strip()]
    if unknown := sorted(set(data) - set(DATA)):
        parser.error(f"unknown data set {', '.join(unknown)}; choose from {', '.join(DATA)}")

    for name in data:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            run = attack(
                Path(tmp), data=name, population=args.population, public=args.public,
                seed=args.seed, clk_options=CLK_OPTIONS[:1] if args.skip_clk_options else CLK_OPTIONS,
                only_sex=args.only_sex,
            )  # fmt: skip
        members = run.region.members
        records = sum(len(m) for m in members.values())
        print(
            f"\n{name}: {args.population:,} people, {records:,} records over "
            f"{', '.join(members)} (medium errors); public sample {args.public:,} other people "
            f"(seed {args.seed + 1000}); CLK graph: the {GRAPH_PARTNER}'s "
            f"{len(members[GRAPH_PARTNER]):,} records; {time.perf_counter() - started:.0f} s"
        )
        if run.rows:
            print(render([cells(r) for r in run.rows], markdown=args.markdown, header=HEADER))
        if run.sex:
            print("\nsex, read by splitting records in two (no key, no truth):")
            print(
                render([sex_cells(r) for r in run.sex], markdown=args.markdown, header=SEX_HEADER)
            )


if __name__ == "__main__":
    main()
