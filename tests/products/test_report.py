"""render_report: one self-contained, escaped HTML file."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from oda_fed.disclosure import DisclosureRules
from oda_fed.products import (
    ProductError,
    ProductTable,
    partner_count_by_area,
    render_report,
    write_product,
)

FINGERPRINT = "sha256:9f2c4e0d5b7a61c3"

LINKAGE = {
    "records_per_partner": {"council": 12_345, "police": 987},
    "entities": 13_001,
    "entities_by_partner_count": {2: 300, 1: 12_600, 3: 101},
    "threshold": 0.85,
}


def _render(tmp_path: Path, products: list[ProductTable], **overrides: object) -> str:
    kwargs: dict[str, object] = {
        "out_path": tmp_path / "out" / "report.html",
        "project_name": "Tameside ODA pilot",
        "project_fingerprint": FINGERPRINT,
        "round_id": "round-0007",
        "generated_at": "2025-03-01T09:30:00Z",
        "linkage": LINKAGE,
        "products": [(p, write_product(p, tmp_path / "products")) for p in products],
    }
    kwargs.update(overrides)
    path = render_report(**kwargs)  # type: ignore[arg-type]
    assert path == kwargs["out_path"]
    return path.read_text(encoding="utf-8")


def test_report_shows_heading_fingerprint_and_linkage(
    exact_product: ProductTable, tmp_path: Path
) -> None:
    html = _render(tmp_path, [exact_product])
    assert "Tameside ODA pilot" in html
    assert FINGERPRINT in html
    assert "round-0007" in html
    assert "2025-03-01T09:30:00Z" in html
    assert "12,345" in html and "987" in html and "13,001" in html
    assert "0.850" in html
    # Entities by partner count, in partner-count order.
    assert html.index("12,600") < html.index(">300<") < html.index(">101<")
    assert "Precision" not in html and "Recall" not in html


def test_optional_quality_metrics_render_when_given(
    exact_product: ProductTable, tmp_path: Path
) -> None:
    linkage = {**LINKAGE, "precision": 0.9912, "recall": 0.95, "f1": 0.97}
    html = _render(tmp_path, [exact_product], linkage=linkage)
    assert "Precision" in html and "0.991" in html
    assert "Recall" in html and "0.950" in html
    assert "F1" in html and "0.970" in html


def test_product_table_values_and_suppressed_cells(
    controlled_product: ProductTable, tmp_path: Path
) -> None:
    html = _render(tmp_path, [controlled_product])
    assert "Known to services" in html
    assert "Known to 1 partner" in html and "Known to 3 partners" in html
    assert html.count('<td class="suppressed">suppressed</td>') == 8
    assert re.search(r'<th scope="row">area not known</th>\s*<td class="num">2</td>', html)
    assert "Counts below 2 are suppressed, and so are cells that would let" in html
    assert "No totals are published" in html
    assert "known_to_services.csv" in html
    assert str(tmp_path) not in html  # file names only, never local folders


def test_chart_is_embedded_as_the_written_png(
    controlled_product: ProductTable, tmp_path: Path
) -> None:
    html = _render(tmp_path, [controlled_product])
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert match is not None
    png = (tmp_path / "products" / "known_to_services.png").read_bytes()
    assert base64.b64decode(match.group(1)) == png
    assert "http://" not in html and "https://" not in html


def test_everything_is_escaped(tmp_path: Path) -> None:
    product = partner_count_by_area(
        entity_partners=pd.Series([1] * 12, index=range(12)),
        entity_area=pd.Series(["<script>alert('ward')</script>"] * 12, index=range(12)),
        product_id="evil",
        title="<img src=x onerror=alert(1)>",
        rules=DisclosureRules(),
        n_partners=2,
    )
    html = _render(
        tmp_path,
        [product],
        project_name="<b>bold</b>",
        audit={"<i>key</i>": "<script>x</script>"},
    )
    assert "<script" not in html
    assert "<img src=x" not in html and "<b>bold" not in html and "<i>key" not in html
    assert "&lt;script&gt;alert(&#39;ward&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_audit_section_only_when_given(exact_product: ProductTable, tmp_path: Path) -> None:
    assert "<h2>Audit</h2>" not in _render(tmp_path, [exact_product])
    html = _render(
        tmp_path,
        [exact_product],
        audit={"logs verified": True, "entries": {"coordinator": 1_204, "council": 57}},
    )
    assert "<h2>Audit</h2>" in html
    assert "logs verified" in html and "yes" in html
    assert "coordinator: 1,204" in html and "council: 57" in html


def test_report_without_products(tmp_path: Path) -> None:
    html = _render(tmp_path, [], linkage={"entities": 5})
    assert "No data products were released" in html
    assert "Records per partner" not in html


def test_missing_or_fake_chart_raises(exact_product: ProductTable, tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("<svg onload=alert(1)>")
    common = {
        "out_path": tmp_path / "r.html",
        "project_name": "p",
        "project_fingerprint": FINGERPRINT,
        "round_id": "r",
        "generated_at": "now",
        "linkage": LINKAGE,
    }
    with pytest.raises(ProductError):
        render_report(**common, products=[(exact_product, {"png": fake})])
    with pytest.raises(ProductError):
        render_report(**common, products=[(exact_product, {"png": tmp_path / "none.png"})])
