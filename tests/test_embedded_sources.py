"""Linking partners' real exports: a cp1252 ';' CSV against an xlsx or Parquet extract links as
the same data as UTF-8 CSV does."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from oda_fed.cli import app
from oda_fed.config import AnalysisSource, load_project
from oda_fed.embedded import link_files

SECRET = b"s" * 32


@pytest.fixture(scope="module")
def synth(tmp_path_factory, synth_folder) -> Path:
    out = synth_folder(
        tmp_path_factory.mktemp("synth"), population=400, partners=2, seed=11, errors="low"
    )
    for name in ("council", "police"):  # names a UTF-8-only reader would stumble on
        frame = pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False)
        first = "forename" if name == "council" else "first_names"
        frame.loc[0, first], frame.loc[1, first] = "Zoë", "Siân"
        frame.to_csv(out / f"{name}.csv", index=False)
    # A cp1252 export cannot hold every name (Wiśniewski): the council's system held it without.
    text = (out / "council.csv").read_text(encoding="utf-8")
    council = text.encode("cp1252", "replace").decode("cp1252")
    (out / "council.csv").write_text(council, encoding="utf-8")
    return out


def police_as(fmt: str, police: pd.DataFrame, path: Path) -> None:
    """The police extract with its dates of birth as dates, as a database export holds them."""
    dob = pd.to_datetime(police["date_of_birth"], format="%Y-%m-%d", errors="coerce")
    assert (dob.notna() | (police["date_of_birth"] == "")).all()
    dates = [None if pd.isna(d) else d.date() for d in dob]
    if fmt == "parquet":
        table = pa.Table.from_pandas(police.drop(columns="date_of_birth"), preserve_index=False)
        pq.write_table(table.append_column("date_of_birth", pa.array(dates, pa.date32())), path)
        return
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(police.columns))
    for values, dob_value in zip(police.itertuples(index=False), dates, strict=True):
        row = dict(zip(police.columns, values, strict=True), date_of_birth=dob_value)
        sheet.append([row[c] if row[c] != "" else None for c in police.columns])
    book.save(path)


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
def test_cp1252_csv_links_with_xlsx_or_parquet_as_utf8_csv_does(
    synth: Path, tmp_path: Path, fmt: str
) -> None:
    project = load_project(synth / "project.toml")
    expected = link_files(
        [synth / "council.csv", synth / "police.csv"], project=project, secret=SECRET
    ).links()
    assert expected.entity_id.nunique() < len(expected)  # some records do link

    council = pd.read_csv(synth / "council.csv", dtype=str, keep_default_na=False)
    council.to_csv(tmp_path / "council.csv", index=False, sep=";", encoding="cp1252")
    police = pd.read_csv(synth / "police.csv", dtype=str, keep_default_na=False)
    police_as(fmt, police, tmp_path / f"police.{fmt}")
    got = link_files(
        [tmp_path / "council.csv", tmp_path / f"police.{fmt}"],
        project=project,
        secret=SECRET,
        sources={"council": AnalysisSource(encoding="cp1252", delimiter=";")},
    ).links()
    pd.testing.assert_frame_equal(got, expected)


def test_an_extract_read_from_postgresql_links_as_its_csv_does(
    synth: Path, postgres_url: str, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    project = load_project(synth / "project.toml")
    expected = link_files(
        [synth / "council.csv", synth / "police.csv"], project=project, secret=SECRET
    ).links()
    police = pd.read_csv(synth / "police.csv", dtype=str, keep_default_na=False)
    table = police.replace("", None)  # an empty cell is NULL in the police's system
    table["date_of_birth"] = pd.to_datetime(table["date_of_birth"], format="%Y-%m-%d").dt.date
    engine = sa.create_engine(postgres_url)
    try:
        table.to_sql("custody_people", engine, index=False, dtype={"date_of_birth": sa.Date})
    finally:
        engine.dispose()
    sql = AnalysisSource(format="sql", url=postgres_url, query="SELECT * FROM custody_people")
    got = link_files(
        [synth / "council.csv", Path("police")],
        project=project,
        secret=SECRET,
        sources={"police": sql},
    ).links()
    pd.testing.assert_frame_equal(got, expected)

    # The command line, with the query in a --sources file: the same links.
    (tmp_path / "k").write_text(SECRET.hex())
    (tmp_path / "sources.toml").write_text(
        f'[source.police]\nformat = "sql"\nurl = "{postgres_url}"\n'
        'query = "SELECT * FROM custody_people"\n'
    )
    args = ["link", str(synth / "council.csv"), "--project", str(synth / "project.toml"),
            "--secret-file", str(tmp_path / "k"), "--out", str(tmp_path / "links.csv"),
            "--sources", str(tmp_path / "sources.toml")]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    written = pd.read_csv(tmp_path / "links.csv", dtype=str, keep_default_na=False)
    assert written.to_csv(index=False) == expected.astype(str).to_csv(index=False)

    # A database that cannot be reached is one line, not a traceback.
    port_gone = sa.make_url(postgres_url).set(port=1).render_as_string(hide_password=False)
    (tmp_path / "sources.toml").write_text(
        f'[source.police]\nformat = "sql"\nurl = "{port_gone}"\nquery = "SELECT 1"\n'
    )
    done = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert done.exit_code != 0 and done.output.strip().startswith("error:"), done.output
    assert "cannot connect to 127.0.0.1 port 1" in done.output and "Traceback" not in done.output
