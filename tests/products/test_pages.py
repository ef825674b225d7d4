"""The published pages as files: a product's page and its note, the dashboard and its facts, and
the index over released rounds (what a browser makes of them is in test_pages_browser.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd

from oda_fed.products import ProductTable, write_product
from oda_fed.products.note import Provenance, about_figures, councillor_note, product_note
from oda_fed.products.pages import (
    DASHBOARD,
    INDEX,
    UNRELEASED,
    publish_dashboard,
    released_dashboards,
    write_dashboard,
    write_index,
)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def text_of(sections) -> str:
    return "\n".join(p for s in sections for p in (s.heading, *s.paragraphs))


def test_write_product_writes_a_page_beside_the_csv(controlled_product, tmp_path: Path) -> None:
    paths = write_product(controlled_product, tmp_path)
    assert sorted(paths) == ["csv", "html", "png"]
    assert paths["html"] == tmp_path / "known_to_services.html"
    html = paths["html"].read_text()
    assert CSP in html and "<script" not in html and "data:image/png;base64," in html
    # Every suppressed cell reads "suppressed"; none is blank.
    assert html.count('<td class="suppressed">suppressed</td>') == 8
    assert '<td class="num"></td>' not in html
    assert "Counts below 2 are suppressed" in html
    # Written without the release's details, the note says so rather than guessing.
    assert "without the details of the project and release" in html


def test_every_product_gets_the_whole_note(released_round) -> None:
    project, provenance = released_round.project, released_round.provenance
    for product, _ in released_round.products:
        note = councillor_note(product, provenance)
        headings = [s.heading for s in note]
        assert headings == ["What is counted", f'Why "{product.unknown_area}"', "Suppressed cells",
                            "Rounding", "Where the figures came from"]  # fmt: skip
        text = text_of(note)
        # Suppression: small counts hidden, not zero, others hidden so it cannot be worked out.
        assert "smaller than 10" in text and "does not mean zero" in text
        assert "cannot be worked out" in text
        assert "multiple of 5" in text and "may not add up" in text
        # Where from: every partner by name, linked how, the round, the date, the fingerprint.
        for partner in project.partners:
            assert partner.name in text
        assert "coded keys" in text and "names" in text
        assert provenance.release_id in text and "1 April 2026" in text
        assert provenance.fingerprint in text
        # "not known": the partner that gives the value, by name, and the two reasons.
        council = project.partner("council").name
        assert f"{council} does not know the person" in text
        assert "holds no electoral ward of the address" in text


def test_the_note_follows_the_product_not_its_name(released_round) -> None:
    by_id = {p.product_id: p for p, _ in released_round.products}
    provenance = released_round.provenance
    cross = text_of(product_note(by_id["ward_by_age"], provenance))
    assert "at least 2 partners" in cross
    care = released_round.project.partner("social_care").name
    assert f"age band on 1 april 2026 {care} cannot give".lower() in cross.lower()
    rate = text_of(product_note(by_id["older_share"], provenance))
    assert '"65+"' in rate and "suppressed wherever either of its counts is" in rate
    by_area = text_of(product_note(by_id["known_to_services_by_ward"], provenance))
    assert '"Known to 2 partners"' in by_area and "of the 3 partners" in by_area


def test_embedded_figures_say_they_were_linked_in_one_run(released_round) -> None:
    provenance = Provenance(
        project=released_round.project, fingerprint="sha256:ab", release_id="run-1",
        generated_at="2026-04-01", federated=False,
    )  # fmt: skip
    text = text_of(about_figures([p for p, _ in released_round.products], provenance))
    assert "in one run on the partners' files" in text and "Produced in run run-1" in text
    assert "Office of Data Analytics" not in text


def test_rules_the_products_do_not_share_are_left_to_each_table(controlled_product) -> None:
    other = ProductTable(
        **{
            **controlled_product.__dict__,
            "rules": controlled_product.rules.__class__(min_cell=5, rounding_base=1),
        }  # fmt: skip
    )
    text = text_of(about_figures([controlled_product, other], None))
    assert "each table says the limit" in text


def test_the_dashboard_holds_released_products_and_nothing_internal(released_round) -> None:
    html = released_round.dashboard.read_text()
    assert CSP in html and "<script" not in html
    for product, _ in released_round.products:
        assert f'id="product-{product.product_id}"' in html
        assert f'href="#product-{product.product_id}"' in html
    assert html.count("data:image/png;base64,") == len(released_round.products)
    assert html.count('<td class="suppressed">suppressed</td>') == sum(
        int(p.table["rate"].isna().sum()) if p.is_rate else p.suppressed_cells
        for p, _ in released_round.products
    )
    # No linkage figures and no disclosure decisions: those are the operator's.
    for internal in ("Precision", "Records per partner", "Match threshold", "Entities",
                     "disclosure.csv", "left exposed"):  # fmt: skip
        assert internal not in html
    facts = json.loads((released_round.folder / "dashboard.json").read_text())
    assert facts["release_id"] == released_round.provenance.release_id
    assert facts["products"] == [p.product_id for p, _ in released_round.products]
    assert facts["date"] == "1 April 2026"


def test_an_unreleased_dashboard_is_not_listed_until_published(
    released_round, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    provenance = released_round.provenance
    write_dashboard(root / "r1", products=released_round.products, provenance=provenance,
                    name=UNRELEASED)  # fmt: skip
    assert not (root / "r1" / DASHBOARD).exists()
    assert released_dashboards(root) == []
    assert "Nothing has been released yet" in write_index(root, title="T").read_text()

    assert publish_dashboard(root / "r1") == root / "r1" / DASHBOARD
    assert not (root / "r1" / UNRELEASED).exists()
    assert publish_dashboard(root / "r1") is None  # nothing left to publish
    [entry] = released_dashboards(root)
    assert (entry.release_id, entry.products, entry.href) == (
        provenance.release_id, 3, "./r1/dashboard.html")  # fmt: skip
    assert 'href="./r1/dashboard.html"' in write_index(root, title="T").read_text()


def test_the_index_is_newest_first_and_lists_only_the_releases_given(
    released_round, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    for release_id, when in (("r1", "2026-01-01T00:00:00+00:00"),
                             ("r3", "2026-03-01T00:00:00+00:00"),
                             ("r2", "2026-02-01T00:00:00+00:00")):  # fmt: skip
        provenance = Provenance(project=released_round.project, fingerprint="sha256:ab",
                                release_id=release_id, generated_at=when)  # fmt: skip
        write_dashboard(root / release_id, products=released_round.products[:1],
                        provenance=provenance)  # fmt: skip
    (root / "broken").mkdir()
    (root / "broken" / DASHBOARD).write_text("<p>")
    (root / "broken" / "dashboard.json").write_text("{not json")
    assert [e.release_id for e in released_dashboards(root)] == ["r3", "r2", "r1"]
    html = write_index(root, title="Pilot").read_text()
    assert re.findall(r'href="\./(r\d)/dashboard.html"', html) == ["r3", "r2", "r1"]
    html = write_index(root, title="Pilot", releases=["r1", "r2"]).read_text()
    assert re.findall(r'href="\./(r\d)/dashboard.html"', html) == ["r2", "r1"]
    assert (root / INDEX).exists()


def test_an_index_link_stays_relative_whatever_the_folder_is_called(
    released_round, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    odd = 'javascript:alert(1)"><b>x'
    shutil.copytree(released_round.folder, root / odd)
    html = write_index(root, title="T").read_text()
    assert 'href="./javascript%3Aalert%281%29%22%3E%3Cb%3Ex/dashboard.html"' in html
    assert "<b>x" not in html


def test_a_rate_shows_its_base_as_a_whole_count(released_round) -> None:
    _, paths = next((p, paths) for p, paths in released_round.products if p.is_rate)
    html = paths["html"].read_text()
    assert re.search(r"% of \d[\d,]*</td>", html) and not re.search(r"% of [\d,]+\.0<", html)


def test_a_dashboard_with_no_products_says_so(released_round, tmp_path: Path) -> None:
    page = write_dashboard(tmp_path, products=[], provenance=released_round.provenance)
    assert "No products were released in this round" in page.read_text()


def test_cells_of_the_csv_and_the_page_agree(released_round) -> None:
    # The CSV keeps the word "suppressed" too: the page and the file say the same thing.
    for product, paths in released_round.products:
        table = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
        hidden = table[table["suppressed"] == "true"]
        assert (hidden["count"] == "suppressed").all()
        assert len(hidden) == product.suppressed_cells
