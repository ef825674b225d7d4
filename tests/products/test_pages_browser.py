"""The pages as a reader sees them, in headless Chromium: the internal reports, a product's page,
the dashboard and the index stand alone (nothing fetched, no console error), their charts decode,
a suppressed cell reads "suppressed" and looks unlike a count, and hostile text stays text."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oda_fed.disclosure import DisclosureRules
from oda_fed.matching.quality import estimate_quality
from oda_fed.products import ProductTable, partner_count_by_area, render_report, write_product
from oda_fed.products.note import Provenance
from oda_fed.products.pages import UNRELEASED, write_dashboard, write_index
from oda_fed.products.quality_report import write_quality_report

pytestmark = pytest.mark.browser

#: Every cell of a product's table as rendered: (row label, column header, text, class).
_CELLS = """table => {
  const heads = [...table.querySelectorAll('thead th')].map(h => h.innerText.trim());
  const out = [];
  for (const tr of table.querySelectorAll('tbody tr')) {
    const label = tr.querySelector('th').innerText.trim();
    [...tr.querySelectorAll('td')].forEach(
      (td, i) => out.push([label, heads[i + 1], td.innerText.trim(), td.className]));
  }
  return out;
}"""

_STYLE = """td => { const s = getComputedStyle(td);
  return [s.color, s.backgroundColor, s.backgroundImage, s.fontStyle]; }"""


def rendered_cells(opened, table_selector: str) -> dict[tuple[str, str], tuple[str, str]]:
    rows = opened.page.eval_on_selector(table_selector, _CELLS)
    return {(label, column): (text, cls) for label, column, text, cls in rows}


def csv_cells(product: ProductTable, csv: Path) -> dict[tuple[str, str], tuple[bool, str]]:
    """Each CSV row's cell as a reader's table places it, with whether the CSV suppresses it."""
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    dims = product.dims
    out = {}
    for _, row in table.iterrows():
        if len(dims) > 1:
            key = (" · ".join(row[d] for d in dims[:-1]),
                   product.label((dims[-1],), (row[dims[-1]],)).capitalize())  # fmt: skip
        else:
            key = (row[dims[0]], "Share" if product.is_rate else "Count")
        column = "rate" if product.is_rate else "count"
        out[key] = (row[column] == "suppressed", row["count"])
    return out


def assert_cells_match_csv(opened, product: ProductTable, csv: Path, selector: str) -> None:
    shown = rendered_cells(opened, selector)
    expected = csv_cells(product, csv)
    assert set(shown) == set(expected)
    hidden = 0
    for key, (suppressed, count) in expected.items():
        text, cls = shown[key]
        if suppressed:
            hidden += 1
            assert text == "suppressed" and "suppressed" in cls.split(), (key, text)
            assert text not in ("0", "", "0.0%"), key  # never a zero, never blank
        else:
            assert text != "suppressed" and "suppressed" not in cls.split(), key
            if not product.is_rate:
                assert text == f"{int(count):,}", (key, text, count)
    assert hidden > 0, "the fixture should suppress some cells"


def assert_suppressed_looks_different(opened, scope: str = "") -> None:
    page = opened.page
    hidden = page.eval_on_selector(f"{scope} td.suppressed", _STYLE)
    shown = page.eval_on_selector(f"{scope} td.num", _STYLE)
    color, background, pattern, font_style = hidden
    assert color != shown[0] and font_style == "italic" != shown[3]
    assert (background, pattern) != (shown[1], shown[2])


def test_the_round_report_stands_alone_and_says_it_is_internal(
    released_round, open_page, tmp_path: Path
) -> None:
    path = render_report(
        out_path=tmp_path / "report.html", project_name="Pilot", project_fingerprint="sha256:ab",
        round_id="r1", generated_at="2026-04-01T09:00:00Z",
        linkage={"records_per_partner": {"council": 100}, "entities": 90, "threshold": 0.8},
        products=released_round.products, audit={"chain verified": True},
    )  # fmt: skip
    opened = open_page(path)
    opened.assert_clean()
    assert opened.page.locator("#internal").is_visible()
    images = opened.images()
    assert len(images) == len(released_round.products)
    assert all(complete and width > 0 for complete, width in images)
    for product, paths in released_round.products:
        selector = f"#product-{product.product_id} table:not(.decisions)"
        assert_cells_match_csv(opened, product, paths["csv"], selector)
    assert_suppressed_looks_different(opened)


def test_the_quality_report_stands_alone_and_says_it_is_internal(open_page, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.beta(20, 3, 400), rng.beta(5, 6, 1600)])
    paths = write_quality_report(
        out_dir=tmp_path, title="Round r1", scores=scores, estimate=estimate_quality(scores),
        chosen_threshold=0.8, block_stats={"pairs scored": 1000},
        entities_by_partner_count={1: 10, 2: 5}, internal=True,
    )  # fmt: skip
    opened = open_page(paths["html"])
    opened.assert_clean()
    assert opened.page.locator("#internal").is_visible()
    images = opened.images()
    assert len(images) == 2 and all(complete and width > 0 for complete, width in images)


@pytest.mark.parametrize("index", [0, 1, 2], ids=["by_area", "cross_tabulation", "rate"])
def test_a_product_page_shows_suppressed_cells_as_suppressed(
    released_round, open_page, index: int
) -> None:
    product, paths = released_round.products[index]
    opened = open_page(paths["html"])
    opened.assert_clean()
    page = opened.page
    assert page.locator("h1").inner_text() == product.title
    [(complete, width)] = opened.images()
    assert complete and width > 0
    assert_cells_match_csv(opened, product, paths["csv"], "table.product")
    assert_suppressed_looks_different(opened)
    assert page.locator("p.legend").is_visible()
    note = page.locator("#note")
    assert note.is_visible()
    text = note.inner_text()
    assert "Suppressed does not mean zero" in text and "not known" in text
    assert released_round.provenance.release_id in text


def test_the_dashboard_holds_every_product_with_its_chart_and_note(
    released_round, open_page
) -> None:
    opened = open_page(released_round.dashboard)
    opened.assert_clean()
    page = opened.page
    images = opened.images()
    assert len(images) == len(released_round.products)
    assert all(complete and width > 0 for complete, width in images)
    assert page.locator("#about").is_visible()
    assert "Suppressed does not mean zero" in page.locator("#about").inner_text()
    # The contents list leads to every product, and each product has its table and note.
    links = page.eval_on_selector_all("nav.contents a", "els => els.map(a => a.hash)")
    assert links == ["#about"] + [f"#product-{p.product_id}" for p, _ in released_round.products]
    for product, paths in released_round.products:
        section = page.locator(f"#product-{product.product_id}")
        assert section.is_visible()
        assert section.locator("h2").inner_text() == product.title
        assert section.locator("section.note").is_visible()
        scope = f"#product-{product.product_id}"
        assert_cells_match_csv(opened, product, paths["csv"], f"{scope} table.product")
        assert_suppressed_looks_different(opened, scope)
    body = page.locator("body").inner_text().lower()
    for internal in ("precision", "recall", "records per partner", "threshold", "internal"):
        assert internal not in body


def test_the_index_lists_released_rounds_newest_first_and_its_links_open(
    released_round, open_page, tmp_path: Path
) -> None:
    root = tmp_path / "published"
    shutil.copytree(released_round.folder, root / released_round.folder.name)
    later = [(p, paths) for p, paths in released_round.products[:1]]
    provenance = Provenance(
        project=released_round.project, fingerprint="sha256:cd", release_id="r2",
        generated_at="2026-05-01T09:00:00+00:00",
    )  # fmt: skip
    write_dashboard(root / "r2", products=later, provenance=provenance)
    waiting = Provenance(
        project=released_round.project, fingerprint="sha256:cd", release_id="r3",
        generated_at="2026-06-01T09:00:00+00:00",
    )  # fmt: skip
    write_dashboard(root / "r3", products=later, provenance=waiting, name=UNRELEASED)
    index = write_index(root, title=released_round.project.title)

    opened = open_page(index)
    opened.assert_clean()
    page = opened.page
    rows = page.eval_on_selector_all(
        "table.rounds tbody tr", "trs => trs.map(tr => [...tr.cells].map(c => c.innerText.trim()))"
    )
    assert rows == [
        ["r2", "1 May 2026", "1"],
        [released_round.provenance.release_id, "1 April 2026", "3"],
    ]  # r3 awaits release: not listed
    hrefs = page.eval_on_selector_all("table.rounds a", "els => els.map(a => a.href)")
    for href in hrefs:
        opened.page.goto(href)
        opened.page.wait_for_load_state("load")
        assert Path(opened.page.url.removeprefix("file://")).is_file()
        assert opened.page.url.endswith("/dashboard.html")
        assert opened.page.locator("#about").is_visible()
        assert all(complete and width > 0 for complete, width in opened.images())
    opened.assert_clean()


HOSTILE_TITLE = "<script>window.pwned = 1; alert('title')</script>Known <b>bold</b>"
HOSTILE_AREA = "<img src=x onerror=\"window.pwned = 2; alert('area')\">"


def test_hostile_titles_and_labels_stay_inert(released_round, open_page, tmp_path: Path) -> None:
    product = partner_count_by_area(
        entity_partners=pd.Series([1, 2] * 20, index=[f"e{i}" for i in range(40)]),
        entity_area=pd.Series([HOSTILE_AREA] * 40, index=[f"e{i}" for i in range(40)]),
        product_id="hostile", title=HOSTILE_TITLE, rules=DisclosureRules(min_cell=5),
        n_partners=2,
    )  # fmt: skip
    project = released_round.project.model_copy(update={"title": HOSTILE_TITLE})
    provenance = Provenance(
        project=project, fingerprint="sha256:ee", release_id="r-hostile",
        generated_at="2026-04-01T09:00:00+00:00",
    )  # fmt: skip
    folder = tmp_path / '"><img src=y onerror=alert(3)>'
    paths = write_product(product, folder, provenance=provenance)
    dashboard = write_dashboard(folder, products=[(product, paths)], provenance=provenance)
    index = write_index(tmp_path, title=HOSTILE_TITLE)
    for page_path in (paths["html"], dashboard, index):
        opened = open_page(page_path)
        page = opened.page
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.eval_on_selector_all("script, [onerror], b", "els => els.length") == 0
        assert HOSTILE_TITLE in page.locator("h1").inner_text()
        opened.assert_clean()  # no dialog, no request for x or y
    opened = open_page(paths["html"])
    assert HOSTILE_AREA in opened.page.locator("table.product tbody th").first.inner_text()
