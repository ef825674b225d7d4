"""Embedded mode through the real CLI: synth, link, links.csv, and bad input that loses nothing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w
from typer.testing import CliRunner

from oda_fed.cli import app
from oda_fed.synth import write_ward_boundaries

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = runner.invoke(
        app,
        [
            "synth",
            "--population",
            "1500",
            "--partners",
            "3",
            "--out",
            str(out),
            "--seed",
            "5",
            "--errors",
            "medium",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["pki", "secret", "--out", str(out / "linkage.secret")])
    assert result.exit_code == 0, result.output
    return out


def link(
    data: Path,
    out: Path,
    *files: str | Path,
    project: Path | None = None,
    secret: Path | None = None,
    extra: tuple[str, ...] = (),
):
    """Run `oda-fed link` on files (names in ``data``, or paths; default: the three partners)."""
    paths = [str(data / f) for f in files] or [
        str(data / f"{p}.csv") for p in ("council", "police", "social_care")
    ]
    return runner.invoke(
        app,
        [
            "link",
            *paths,
            "--project",
            str(project or data / "project.toml"),
            "--secret-file",
            str(secret or data / "linkage.secret"),
            "--out",
            str(out),
            *extra,
        ],
    )


def project_with(data: Path, tmp_path: Path, **linkage: object) -> Path:
    """A copy of the synthetic project with some [linkage] settings changed."""
    doc = tomllib.loads((data / "project.toml").read_text())
    doc["linkage"].update(linkage)
    project = tmp_path / "project.toml"
    project.write_text(tomli_w.dumps(doc))
    return project


def measured_quality(output: str) -> tuple[float, float]:
    """Precision and recall from the line `link --truth` prints."""
    match = re.search(r"against .*?precision\s+(\S+),\s+recall\s+(\S+),", output, re.S)
    assert match, output
    return float(match[1]), float(match[2])


def test_link_writes_links_and_reports_quality(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "links.csv"
    result = link(data, out, extra=("--truth", str(data / "truth.csv")))
    assert result.exit_code == 0, result.output
    links = pd.read_csv(out, dtype=str)
    assert list(links.columns) == ["entity_id", "source", "record_id", "score"]
    assert set(links.source) == {"council", "police", "social_care"}
    assert (links.groupby("entity_id").size() >= 2).all()
    assert (links.groupby(["entity_id", "source"]).size() == 1).all()
    # The project leaves threshold = "auto": the estimate picks it, above the 0.5 floor.
    assert links.score.astype(float).between(0.5, 1.0).all()

    truth = pd.read_csv(data / "truth.csv", dtype=str)
    merged = links.merge(truth, on=["source", "record_id"], how="left")
    assert merged.person_id.notna().all()
    pure = merged.groupby("entity_id").person_id.nunique().eq(1).mean()
    assert pure >= 0.95
    assert "precision" in result.output and "recall" in result.output


def test_link_says_when_one_file_links_to_no_one(data: Path, tmp_path: Path) -> None:
    """The wrong extract for one partner (another population's records): the links are written,
    but the command says plainly that they are not to be trusted, and names the pair."""
    other = tmp_path / "other"
    assert runner.invoke(app, ["synth", "--population", "300", "--partners", "3", "--out",
                               str(other), "--seed", "77"]).exit_code == 0  # fmt: skip
    result = link(data, tmp_path / "links.csv", "council.csv", "social_care.csv",
                  other / "police.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "degenerate fit, do not trust these entities" in said
    assert "'council' and 'police' share" in said and "'social_care' and 'police' share" in said
    assert "'council' and 'social_care'" not in said
    assert "degenerate fit" not in " ".join(link(data, tmp_path / "ok.csv").output.split())


def test_all_records_adds_singletons(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    assert link(data, out, extra=("--all-records",)).exit_code == 0
    links = pd.read_csv(out, dtype=str, keep_default_na=False)
    total = sum(len(pd.read_csv(data / f"{p}.csv")) for p in ("council", "police", "social_care"))
    assert len(links) == total
    assert (links.score == "").any()


def test_missing_column_is_a_clear_error_and_writes_nothing(data: Path, tmp_path: Path) -> None:
    police = pd.read_csv(data / "police.csv", dtype=str, keep_default_na=False)
    broken_dir = tmp_path / "in"
    broken_dir.mkdir()
    police.drop(columns=["family_name"]).to_csv(broken_dir / "police.csv", index=False)
    (broken_dir / "council.csv").write_bytes((data / "council.csv").read_bytes())
    out = tmp_path / "links.csv"
    result = link(data, out, broken_dir / "council.csv", broken_dir / "police.csv")
    assert result.exit_code == 3
    assert "no column 'family_name'" in result.output
    assert not out.exists()


def test_malformed_date_names_row_and_column(data: Path, tmp_path: Path) -> None:
    council = pd.read_csv(data / "council.csv", dtype=str, keep_default_na=False)
    council.loc[4, "dob"] = "31/02/1980"
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    council.to_csv(in_dir / "council.csv", index=False)
    (in_dir / "police.csv").write_bytes((data / "police.csv").read_bytes())
    out = tmp_path / "links.csv"
    out.write_text("earlier results\n")
    result = link(data, out, in_dir / "council.csv", in_dir / "police.csv")
    assert result.exit_code == 3
    assert "row 6, column 'dob'" in result.output
    assert out.read_text() == "earlier results\n"  # earlier output stays intact


def test_missing_secret_file_is_a_config_error(data: Path, tmp_path: Path) -> None:
    result = link(data, tmp_path / "x.csv", "council.csv", "police.csv", secret=tmp_path / "nope")
    assert result.exit_code == 2
    assert "nope" in result.output


def test_encode_writes_clks_with_the_project_settings(data: Path, tmp_path: Path) -> None:
    import numpy as np

    out = tmp_path / "council.npy"
    result = runner.invoke(
        app,
        [
            "encode",
            "--project",
            str(data / "project.toml"),
            "--secret-file",
            str(data / "linkage.secret"),
            "--input",
            str(data / "council.csv"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    clks = np.load(out)
    rows = len(pd.read_csv(data / "council.csv"))
    assert clks.dtype == np.uint64 and clks.shape == (rows, 16)
    fill = np.unpackbits(clks.view(np.uint8), axis=1).mean()
    assert 0.2 < fill < 0.6
    assert "missing" in result.output and "invalid" in result.output
    again = tmp_path / "again.npy"
    runner.invoke(
        app,
        [
            "encode",
            "--project",
            str(data / "project.toml"),
            "--secret-file",
            str(data / "linkage.secret"),
            "--input",
            str(data / "council.csv"),
            "--out",
            str(again),
        ],
    )
    assert np.array_equal(np.load(again), clks)


def test_project_explain_prints_fields_and_fill(data: Path) -> None:
    result = runner.invoke(
        app,
        [
            "project",
            "explain",
            str(data / "project.toml"),
            "--sample",
            str(data / "council.csv"),
            "--secret-file",
            str(data / "linkage.secret"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "first_name" in result.output and "expected fill" in result.output
    assert "measured fill" in result.output


def test_hardened_project_still_links(data: Path, tmp_path: Path) -> None:
    project = project_with(data, tmp_path, hardening={"balance": True, "diffusion_taps": 3})
    out = tmp_path / "links.csv"
    result = link(
        data,
        out,
        "council.csv",
        "police.csv",
        project=project,
        extra=("--truth", str(data / "truth.csv")),
    )
    assert result.exit_code == 0, result.output
    precision, recall = measured_quality(result.output)
    assert precision > 0.9 and recall > 0.8

    from oda_fed.config import load_project

    assert load_project(project).project.linkage.wire_bits == 2048


@pytest.fixture(scope="module")
def keyed(tmp_path_factory) -> Path:
    """Five partners with high errors; social care and the NHS trust hold NHS numbers, which the
    project (``project.toml`` beside them) links as keyed tokens."""
    out = tmp_path_factory.mktemp("keyed")
    synth = ["synth", "--population", "1200", "--partners", "5", "--out", str(out), "--seed",
             "9", "--errors", "high"]  # fmt: skip
    assert runner.invoke(app, synth).exit_code == 0
    assert runner.invoke(app, ["pki", "secret", "--out", str(out / "k")]).exit_code == 0
    doc = tomllib.loads((out / "project.toml").read_text())
    doc["linkage"]["fields"].append(
        {"name": "nhs_number", "type": "nhs_number", "keyed_token": True}
    )
    for partner in doc["partners"]:
        if partner["id"] in ("social_care", "nhs_trust"):
            frame = pd.read_csv(out / f"{partner['id']}.csv", dtype=str, nrows=0)
            column = next(c for c in frame.columns if "nhs" in c.lower())
            partner["source"]["columns"]["nhs_number"] = column
    (out / "project.toml").write_text(tomli_w.dumps(doc))
    return out


def _with(keyed: Path, tmp_path: Path, **linkage: object) -> Path:
    """The keyed project with some ``[linkage]`` settings changed, or an NHS field's keyed_token
    (``keyed_token=False``)."""
    doc = tomllib.loads((keyed / "project.toml").read_text())
    keyed_token = linkage.pop("keyed_token", True)
    doc["linkage"]["fields"][-1]["keyed_token"] = keyed_token
    doc["linkage"].update(linkage)
    path = tmp_path / f"project-{len(list(tmp_path.glob('project-*')))}.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


@pytest.mark.parametrize("method", ["clk", "fields"])
def test_keyed_nhs_tokens_link_exactly(keyed: Path, tmp_path: Path, method: str) -> None:
    def quality(project_path: Path) -> tuple[float, float]:
        result = link(
            keyed,
            tmp_path / "links.csv",
            "social_care.csv",
            "nhs_trust.csv",
            project=project_path,
            secret=keyed / "k",
            extra=("--truth", str(keyed / "truth.csv")),
        )
        assert result.exit_code == 0, result.output
        return measured_quality(result.output)

    _, recall_plain = quality(_with(keyed, tmp_path, method=method, keyed_token=False))
    precision, recall = quality(_with(keyed, tmp_path, method=method))
    # Field-aware linkage weighs the NHS number as evidence already; the rule adds what it missed.
    assert recall > recall_plain if method == "clk" else recall >= recall_plain
    assert precision > 0.95
    links = pd.read_csv(tmp_path / "links.csv", dtype=str)
    assert (links.score.astype(float) == 1.0).sum() > 0  # token matches carry score 1.0


def test_keyed_tokens_are_rules_in_field_aware_linkage(keyed: Path, tmp_path: Path) -> None:
    """Two NHS trust records trade NHS numbers. Under the default token_conflict = "token" the
    numbers are trusted over everything else the evidence says, as in CLK linkage: each social
    care record links to the trust record that holds its number, and never to the one that
    holds another, however alike the two records are."""
    truth = pd.read_csv(keyed / "truth.csv", dtype=str)
    care = pd.read_csv(keyed / "social_care.csv", dtype=str)
    trust = pd.read_csv(keyed / "nhs_trust.csv", dtype=str)
    column = next(c for c in trust.columns if "nhs" in c.lower())
    rid = {"care": care.columns[0], "trust": trust.columns[0]}  # the record ids come first
    person = truth.set_index(["source", "record_id"])["person_id"]
    held = trust[trust[column].notna()]
    in_care = {person[("social_care", r)]: r for r in care[rid["care"]]}
    pairs = [(r, in_care[person[("nhs_trust", r)]]) for r in held[rid["trust"]]
             if person[("nhs_trust", r)] in in_care]  # fmt: skip
    (a, care_a), (b, care_b) = pairs[0], pairs[1]
    ia, ib = trust.index[trust[rid["trust"]] == a][0], trust.index[trust[rid["trust"]] == b][0]
    trust.loc[[ia, ib], column] = trust.loc[[ib, ia], column].to_numpy()
    folder = tmp_path / "swapped"
    folder.mkdir()
    care.to_csv(folder / "social_care.csv", index=False)
    trust.to_csv(folder / "nhs_trust.csv", index=False)
    project = _with(keyed, tmp_path, method="fields")
    result = link(folder, tmp_path / "links.csv", "social_care.csv", "nhs_trust.csv",
                  project=project, secret=keyed / "k")  # fmt: skip
    assert result.exit_code == 0, result.output
    links = pd.read_csv(tmp_path / "links.csv", dtype=str)
    entity = links.set_index(["source", "record_id"])["entity_id"]
    linked = {(x, y): entity.get(("social_care", x)) == entity.get(("nhs_trust", y))
              for x in (care_a, care_b) for y in (a, b)}  # fmt: skip
    assert linked[care_a, b] and linked[care_b, a]
    assert not linked[care_a, a] and not linked[care_b, b]


def test_on_invalid_missing_counts_instead_of_stopping(data: Path, tmp_path: Path) -> None:
    council = pd.read_csv(data / "council.csv", dtype=str, keep_default_na=False)
    council.loc[[4, 9], "dob"] = ["31/02/1980", "13/13/2001"]
    bad = tmp_path / "council.csv"
    council.to_csv(bad, index=False)
    out = tmp_path / "c.npy"
    args = [
        "encode",
        "--project",
        str(data / "project.toml"),
        "--secret-file",
        str(data / "linkage.secret"),
        "--input",
        str(bad),
        "--out",
        str(out),
    ]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 3 and "row 6, column 'dob'" in stopped.output
    assert not out.exists()
    counted = runner.invoke(app, [*args, "--on-invalid", "missing"])
    assert counted.exit_code == 0, counted.output
    row = next(line for line in counted.output.splitlines() if "date_of_birth" in line)
    assert row.split("│")[3].strip() == "2"  # invalid column
    assert len(np.load(out)) == len(council)  # no row dropped
    linked = link(data, tmp_path / "l.csv", bad, "police.csv", extra=("--on-invalid", "missing"))
    assert linked.exit_code == 0, linked.output


def test_link_writes_a_quality_report_and_takes_auto_threshold(data: Path, tmp_path: Path) -> None:
    project = project_with(data, tmp_path, threshold="auto")
    out = tmp_path / "links.csv"
    result = link(
        data,
        out,
        "council.csv",
        "police.csv",
        project=project,
        extra=("--truth", str(data / "truth.csv")),
    )
    assert result.exit_code == 0, result.output
    assert "chosen automatically" in result.output
    assert "estimated without truth" in result.output
    report = tmp_path / "links-quality" / "quality.html"
    assert report.exists()
    assert 'id="internal"' not in report.read_text()  # the user's own files: nothing withheld
    assert (tmp_path / "links-quality" / "score_histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_link_with_an_index_and_bad_input_leaves_the_index_as_it_was(
    data: Path, tmp_path: Path
) -> None:
    index = tmp_path / "links.index"
    out = tmp_path / "links.csv"
    built = link(data, out, "council.csv", "police.csv", extra=("--index", str(index)))
    assert built.exit_code == 0, built.output
    raw, links = index.read_bytes(), out.read_text()
    police = pd.read_csv(data / "police.csv", dtype=str, keep_default_na=False)
    police.loc[2, "date_of_birth"] = "1980-02-31"
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    police.to_csv(in_dir / "police.csv", index=False)
    result = link(data, out, in_dir / "police.csv", extra=("--index", str(index)))
    assert result.exit_code == 3
    assert "column 'date_of_birth'" in result.output
    assert index.read_bytes() == raw and out.read_text() == links
    # The same extract again changes nothing, and links.csv keeps every entity id.
    again = link(data, out, "council.csv", "police.csv", extra=("--index", str(index)))
    assert again.exit_code == 0, again.output
    assert out.read_text() == links


# --- analyse --------------------------------------------------------------------------------------


def analysis_project(data: Path, tmp_path: Path) -> Path:
    """The synthetic project with a cross-tabulation by ward and age band and a rate over the
    police's incident table."""
    doc = tomllib.loads((data / "project.toml").read_text())
    doc["attributes"] += [
        {"name": "age", "partner": "social_care", "derive": "age_band", "at": "2026-04-01",
         "bands": [0, 18, 65]},
        {"name": "recent_incident", "partner": "police", "derive": "event_any",
         "events": "incidents", "at": "2026-04-01", "window_days": 365},
    ]  # fmt: skip
    doc["products"] += [
        {"id": "ward_by_age", "kind": "count", "title": "By ward and age",
         "by": ["council.ward", "social_care.age"], "cohort": {"min_partners": 2},
         "recipients": ["council"]},
        {"id": "incident_share", "kind": "rate", "title": "Share with a recent incident",
         "by": ["council.ward"], "numerator": {"police.recent_incident": ["yes"]},
         "recipients": ["council"]},
        {"id": "incident_map", "kind": "map", "title": "Where incidents are",
         "by": ["council.ward"], "numerator": {"police.recent_incident": ["yes"]},
         "boundaries": "wards", "recipients": ["council"]},
    ]  # fmt: skip
    project = tmp_path / "project.toml"
    project.write_text(tomli_w.dumps(doc))
    return project


def sources_file(data: Path, tmp_path: Path, **council: object) -> Path:
    """A --sources file as the nodes' node.toml [source] tables would say it: social care's
    birth date column for the age band, and the police's incident table (relative paths)."""
    police = pd.read_csv(data / "police.csv", dtype=str)
    rng = np.random.default_rng(3)
    ids = police.iloc[:, 0].to_numpy()
    chosen = rng.choice(ids, size=len(ids) // 2, replace=False)
    days = rng.integers(0, 700, size=len(chosen))
    on = pd.Timestamp("2026-04-01") - pd.to_timedelta(days, unit="D")
    pd.DataFrame({"person": chosen, "on": on.strftime("%Y-%m-%d")}).to_csv(
        tmp_path / "incidents.csv", index=False
    )
    doc = {
        "source": {
            "social_care": {"attributes": {"age": "birth_date"}},
            "police": {
                "events": [
                    {
                        "name": "incidents",
                        "path": "incidents.csv",
                        "record_id": "person",
                        "date": "on",
                    }
                ]
            },  # fmt: skip
            **({"council": council} if council else {}),
        }
    }
    path = tmp_path / "sources.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def analyse(data: Path, project: Path, sources: Path, out: Path, *files: Path, extra=(),
            boundaries: bool = True):  # fmt: skip
    paths = files or tuple(data / f"{p}.csv" for p in ("council", "police", "social_care"))
    wards = write_ward_boundaries(data / "wards.geojson")
    return runner.invoke(
        app,
        ["analyse", *map(str, paths), "--project", str(project),
         "--secret-file", str(data / "linkage.secret"), "--sources", str(sources),
         "--out", str(out), *(["--boundaries", f"wards={wards}"] if boundaries else []), *extra],
    )  # fmt: skip


def test_analyse_releases_every_product_and_the_ledger_holds_a_differencing_release(
    data: Path, tmp_path: Path
) -> None:
    project = analysis_project(data, tmp_path)
    sources = sources_file(data, tmp_path)
    out = tmp_path / "products"
    unmapped = analyse(data, project, sources, out, boundaries=False)
    assert unmapped.exit_code == 2 and "--boundaries wards=" in unmapped.output
    assert not out.exists()
    first = analyse(data, project, sources, out)
    assert first.exit_code == 0, first.output
    products = ("known_to_services_by_ward", "ward_by_age", "incident_share", "incident_map")
    for product in products:
        assert (out / f"{product}.png").read_bytes()[:4] == b"\x89PNG"
        table = pd.read_csv(out / f"{product}.csv", dtype=str, keep_default_na=False)
        hidden = table[table.suppressed == "true"]
        assert len(hidden) and (hidden["count"] == "suppressed").all()
    # The map draws the rate's table; the dashboard holds every table with its chart.
    assert (out / "incident_map.csv").read_text() == (out / "incident_share.csv").read_text()
    dashboard = (out / "dashboard.html").read_text()
    assert all(f'id="product-{p}"' in dashboard for p in products), dashboard[:2000]
    ages = pd.read_csv(out / "ward_by_age.csv", dtype=str)
    assert set(ages["social_care.age"]) == {"0-17", "18-64", "65+", "not known"}
    rate = pd.read_csv(out / "incident_share.csv", dtype=str)
    assert (rate.rate != "suppressed").sum() > 0
    # True counts stay in the state folder (for the approver), never beside the products.
    assert not list(out.glob("*disclosure*"))
    state = tmp_path / "products.state"
    assert len(list((state / "reports").glob("*/ward_by_age.disclosure.csv"))) == 1
    assert (state / "disclosure.key").stat().st_mode & 0o077 == 0

    # The same files again: the same cells, published the same way, nothing held.
    again = analyse(data, project, sources, out)
    assert again.exit_code == 0 and "held" not in again.output, again.output
    assert (out / "ward_by_age.csv").read_text() == ages.to_csv(index=False).replace('"', "")

    # Differencing: the council drops 3 records of one ward and re-runs to learn about them.
    council = pd.read_csv(data / "council.csv", dtype=str, keep_default_na=False)
    ward = council["ward_code"].value_counts().index[0]
    dropped = council.drop(council.index[council["ward_code"] == ward][:3])
    (tmp_path / "in").mkdir()
    dropped.to_csv(tmp_path / "in" / "council.csv", index=False)
    files = (tmp_path / "in" / "council.csv", data / "police.csv", data / "social_care.csv")
    attack = analyse(data, project, sources, out, *files)
    assert attack.exit_code == 0, attack.output
    assert "held" in attack.output and f"area={ward}" in attack.output
    by_ward = pd.read_csv(out / "known_to_services_by_ward.csv", dtype=str)
    assert (by_ward[by_ward.area == ward]["count"] == "suppressed").any()


def test_analyse_with_bad_input_writes_nothing_and_keeps_the_ledger(
    data: Path, tmp_path: Path
) -> None:
    project = analysis_project(data, tmp_path)
    out = tmp_path / "products"
    good = analyse(data, project, sources_file(data, tmp_path), out)
    assert good.exit_code == 0, good.output
    state = tmp_path / "products.state"
    before = {p: p.read_bytes() for p in [*out.iterdir(), *state.glob("ledger-*")]}

    # A ward mapped by mistake to the surname column: refused before anything is written.
    wrong = sources_file(data, tmp_path, attributes={"ward": "surname"})
    result = analyse(data, project, wrong, out)
    assert result.exit_code == 3
    assert "attribute 'ward'" in result.output and "nothing was sent" in result.output
    surnames = set(pd.read_csv(data / "council.csv", dtype=str)["surname"].head(50))
    assert not any(name in result.output for name in surnames)
    assert {p: p.read_bytes() for p in before} == before
    assert not list((state / "pending-releases").glob("*"))

    stray = tmp_path / "fire.csv"
    stray.write_text("x\n1\n")
    result = analyse(data, project, sources_file(data, tmp_path), out, stray, data / "police.csv")
    assert result.exit_code == 3 and "one file per partner" in result.output

    twice = tmp_path / "twice.toml"
    twice.write_text(f'[source.council]\npath = "{data / "council.csv"}"\n')
    result = analyse(data, project, twice, out)
    assert result.exit_code == 2 and "given twice" in result.output

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[source.fire]\n")
    result = analyse(data, project, unknown, out)
    assert result.exit_code == 2 and "[source.fire] names no partner" in result.output
    assert {p: p.read_bytes() for p in before} == before


def test_analyse_releases_a_list_and_an_alert_with_the_owners_record_ids(
    data: Path, tmp_path: Path
) -> None:
    project = analysis_project(data, tmp_path)
    doc = tomllib.loads(project.read_text())
    doc["linkage"]["stable_entity_ids"] = True
    doc["products"] += [
        {"id": "visit_first", "kind": "list", "title": "Visit first", "owner": "council",
         "recipients": ["council"], "score_bands": [2, 4], "show_groups": True,
         "indicators": [
             {"attribute": "police.recent_incident", "points": {"yes": 3}, "group": "police"},
             {"attribute": "social_care.age", "points": {"65+": 2}, "group": "social_care"}]},
        {"id": "newly", "kind": "alert", "title": "Newly with an incident", "owner": "council",
         "recipients": ["council"], "cohort": {"where": {"police.recent_incident": ["yes"]}}},
    ]  # fmt: skip
    project.write_text(tomli_w.dumps(doc))
    sources = sources_file(data, tmp_path)
    out = tmp_path / "products"
    refused = analyse(data, project, sources, out)
    assert refused.exit_code == 3 and "--index" in refused.output and not out.exists()

    index = ("--index", str(tmp_path / "links.index"))
    first = analyse(data, project, sources, out, extra=index)
    assert first.exit_code == 0, first.output
    visit = pd.read_csv(out / "visit_first.csv", dtype=str)
    council = set(pd.read_csv(data / "council.csv", dtype=str)["person_ref"])
    assert list(visit.columns) == ["record_id", "rank", "score_band", "groups"]
    assert len(visit) > 10 and set(visit.record_id) <= council
    assert pd.read_csv(out / "newly.csv").empty and "sets the baseline" in first.output

    # 30 more police records get an incident the day before the reference date.
    events = pd.read_csv(tmp_path / "incidents.csv", dtype=str)
    police = pd.read_csv(data / "police.csv", dtype=str).iloc[:, 0]
    fresh = police[~police.isin(events.person)].head(30)
    pd.concat([events, pd.DataFrame({"person": fresh, "on": "2026-03-31"})]).to_csv(
        tmp_path / "incidents.csv", index=False
    )
    second = analyse(data, project, sources, out, extra=index)
    assert second.exit_code == 0, second.output
    alert = pd.read_csv(out / "newly.csv", dtype=str)
    assert len(alert) >= 5 and set(alert.record_id) <= council
    # Each alerted record's entity, as the same index links it, holds a freshly flagged record.
    files = [data / f"{p}.csv" for p in ("council", "police", "social_care")]
    linked = link(data, tmp_path / "links.csv", *files, project=project, extra=index)
    assert linked.exit_code == 0, linked.output
    links = pd.read_csv(tmp_path / "links.csv", dtype=str)
    entity = links.set_index(["source", "record_id"]).entity_id
    flagged = {entity[("police", p)] for p in fresh if ("police", p) in entity}
    assert {entity[("council", r)] for r in alert.record_id} <= flagged


def test_analysis_returns_the_population_its_products_were_built_from(
    data: Path, tmp_path: Path
) -> None:
    from oda_fed.config import load_project
    from oda_fed.embedded import analyse_files
    from oda_fed.pki import read_secret
    from oda_fed.products.build import true_cells

    loaded = load_project(data / "project.toml")
    analysis = analyse_files(
        {p: data / f"{p}.csv" for p in ("council", "police", "social_care")},
        project=loaded,
        secret=read_secret(data / "linkage.secret"),
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
    )
    population = analysis.population
    assert population.partners.equals(analysis.linked.partners_per_entity())
    # Each council record's ward, under the entity its record joined.
    council = pd.read_csv(data / "council.csv", dtype=str, keep_default_na=False)
    members = analysis.linked.members
    entity = members[members.source == "council"].set_index("record_id")["entity_id"]
    wards = population.values["council.ward"]
    assert dict(zip(entity[council["person_ref"]], council["ward_code"], strict=True)) == dict(
        zip(wards.index, wards, strict=True)
    )
    (product, _), prod = analysis.products[0], loaded.project.products[0]
    (table,) = true_cells(loaded.project, prod, population)
    assert table.cells["count"].sum() == len(population.partners)
    shown = product.table["count"].to_numpy(dtype=float, na_value=np.nan)
    published = ~np.isnan(shown)
    assert np.abs(shown[published] - table.cells["count"].to_numpy()[published]).max() < 5


def test_link_on_a_dask_cluster_writes_the_same_links(
    data: Path, tmp_path: Path, dask_address: str
) -> None:
    here, there = tmp_path / "here.csv", tmp_path / "there.csv"
    assert link(data, here).exit_code == 0
    result = link(data, there, extra=("--dask", dask_address, "--dask-shared",
                                      str(tmp_path / "shared")))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert there.read_text() == here.read_text()
    assert list((tmp_path / "shared").iterdir()) == []  # no CLKs left behind
