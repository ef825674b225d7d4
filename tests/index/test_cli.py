"""`oda-fed link --index` and `oda-fed index show` through the real command line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import tomli_w
from typer.testing import CliRunner

from oda_fed.cli import app

if TYPE_CHECKING:
    from conftest import Region  # only for annotations: conftest is not importable at run time

runner = CliRunner()


@pytest.fixture
def files(region: Region, tmp_path: Path) -> Path:
    """A folder with the region's project, a secret, and the council file cut to 80%."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("project.toml", "police.csv", "social_care.csv", "truth.csv"):
        (folder / name).write_bytes((region.folder / name).read_bytes())
    council = pd.read_csv(region.folder / "council.csv", dtype=str, keep_default_na=False)
    council.iloc[: int(len(council) * 0.8)].to_csv(folder / "council.csv", index=False)
    (folder / "linkage.secret").write_text(region.secret.hex())
    return folder


def link(folder: Path, *names: str, extra: tuple[str, ...] = (), project: Path | None = None):
    return runner.invoke(
        app,
        [
            "link",
            *(str(folder / n) for n in names),
            "--project",
            str(project or folder / "project.toml"),
            "--secret-file",
            str(folder / "linkage.secret"),
            "--out",
            str(folder / "links.csv"),
            *extra,
        ],
    )


def read_links(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "links.csv", dtype=str, keep_default_na=False)


def test_link_with_an_index_keeps_entity_ids_across_runs(files: Path, region: Region) -> None:
    index = files / "links.index"
    result = link(
        files, "council.csv", "police.csv", extra=("--index", str(index), "--all-records")
    )
    assert result.exit_code == 0, result.output
    assert "built linked index" in result.output and "quality report" in result.output
    first = read_links(files)
    assert list(first.columns) == ["entity_id", "source", "record_id", "score"]
    assert set(first.source) == {"council", "police"}

    # The council's full extract and a new partner: one call, one transaction.
    (files / "council.csv").write_bytes((region.folder / "council.csv").read_bytes())
    result = link(
        files,
        "council.csv",
        "social_care.csv",
        extra=("--index", str(index), "--all-records", "--truth", str(files / "truth.csv")),
    )
    assert result.exit_code == 0, result.output
    assert "updated linked index" in result.output
    assert "matched only the" in result.output and "quality report of this update" in result.output
    assert "precision" in result.output
    # The update's report: estimated from its new and changed records, which it names.
    page = (files / "links-quality" / "quality.html").read_text()
    assert "new and changed records" in page and "social_care" in page
    second = read_links(files)
    assert set(second.source) == {"council", "police", "social_care"}  # police stays in
    merged = first.merge(second, on=["source", "record_id"], suffixes=("_first", "_second"))
    assert len(merged) == len(first)
    assert (merged.entity_id_first == merged.entity_id_second).all()

    shown = runner.invoke(app, ["index", "show", str(index)])
    assert shown.exit_code == 0, shown.output
    for source in ("council", "police", "social_care"):
        assert source in shown.output
    assert region.loaded.fingerprint in shown.output.replace("\n", "")
    assert "update social_care" in shown.output

    rebuilt = link(files, "police.csv", extra=("--index", str(index), "--rebuild-index"))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt linked index" in rebuilt.output and "earlier entity ids kept" in rebuilt.output


def test_an_index_of_another_project_is_refused_untouched(files: Path, tmp_path: Path) -> None:
    index = files / "links.index"
    assert link(files, "council.csv", "police.csv", extra=("--index", str(index))).exit_code == 0
    raw = index.read_bytes()
    doc = tomllib.loads((files / "project.toml").read_text())
    doc["linkage"]["threshold"] = 0.85
    amended = tmp_path / "amended.toml"
    amended.write_text(tomli_w.dumps(doc))
    (files / "links.csv").unlink()
    result = link(files, "police.csv", extra=("--index", str(index)), project=amended)
    assert result.exit_code == 4, result.output
    assert "project fingerprint" in result.output
    assert index.read_bytes() == raw
    assert not (files / "links.csv").exists()


def test_index_options_are_checked(files: Path) -> None:
    result = link(files, "council.csv", "police.csv", extra=("--rebuild-index",))
    assert result.exit_code == 2 and "--index" in result.output
    index = files / "new.index"
    result = link(files, "council.csv", extra=("--index", str(index)))
    assert result.exit_code == 3 and "at least two" in result.output
    assert not index.exists()  # bad input leaves no half-made index behind
    shown = runner.invoke(app, ["index", "show", str(files / "council.csv")])
    assert shown.exit_code == 3 and "not an oda-fed linked index" in shown.output
