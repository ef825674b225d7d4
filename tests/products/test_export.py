"""write_product: the released CSV and PNG."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd

from oda_fed.disclosure import DisclosureRules
from oda_fed.products import ProductTable, partner_count_by_area, write_product

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    # The IHDR chunk comes first: 4-byte length, b"IHDR", then width and height.
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_csv_writes_the_word_suppressed_for_suppressed_cells(
    controlled_product: ProductTable, tmp_path: Path
) -> None:
    paths = write_product(controlled_product, tmp_path)
    assert paths["csv"] == tmp_path / "known_to_services.csv"
    lines = paths["csv"].read_text(encoding="utf-8").splitlines()
    assert lines == [
        "area,partners,count,suppressed",
        "W1,1,suppressed,true",
        "W1,2,suppressed,true",
        "W1,3,suppressed,true",
        "W2,1,suppressed,true",  # a complement: the area partner knows W2's total
        "W2,2,suppressed,true",
        "W2,3,suppressed,true",
        "area not known,1,2,false",
        "area not known,2,suppressed,true",
        "area not known,3,suppressed,true",
    ]


def test_csv_zero_is_only_written_when_published(
    exact_product: ProductTable, tmp_path: Path
) -> None:
    text = write_product(exact_product, tmp_path)["csv"].read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    zero = [r for r in rows if r["area"] == "W2" and r["partners"] == "3"]
    assert zero == [{"area": "W2", "partners": "3", "count": "0", "suppressed": "false"}]


def test_csv_quotes_and_defuses_awkward_area_labels(tmp_path: Path) -> None:
    product = partner_count_by_area(
        entity_partners=pd.Series([1, 1], index=["a", "b"]),
        entity_area=pd.Series(["=HYPERLINK(1)", "Ward, North"], index=["a", "b"]),
        product_id="p",
        title="t",
        rules=DisclosureRules(min_cell=0, rounding_base=1),
        n_partners=1,
    )
    text = write_product(product, tmp_path)["csv"].read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines()))
    assert rows[1] == ["'=HYPERLINK(1)", "1", "1", "false"]
    assert rows[2] == ["Ward, North", "1", "1", "false"]


def test_png_is_a_real_non_trivial_image(controlled_product: ProductTable, tmp_path: Path) -> None:
    paths = write_product(controlled_product, tmp_path / "new" / "folder")
    assert paths["png"] == tmp_path / "new" / "folder" / "known_to_services.png"
    data = paths["png"].read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = _png_size(data)
    assert width >= 600 and height >= 400
    assert len(data) > 10_000


def test_png_survives_mathtext_in_labels(tmp_path: Path) -> None:
    product = partner_count_by_area(
        entity_partners=pd.Series([1], index=["a"]),
        entity_area=pd.Series(["$\\frac{unclosed"], index=["a"]),
        product_id="p",
        title="cost in $ and $$",
        rules=DisclosureRules(),
        n_partners=2,
    )
    assert write_product(product, tmp_path)["png"].read_bytes().startswith(PNG_SIGNATURE)


def test_writing_never_imports_pyplot(tmp_path: Path) -> None:
    code = (
        "import sys, pandas as pd\n"
        "from pathlib import Path\n"
        "from oda_fed.disclosure import DisclosureRules\n"
        "from oda_fed.products import partner_count_by_area, write_product\n"
        "p = partner_count_by_area(entity_partners=pd.Series([1]),"
        " entity_area=pd.Series(['W1']), product_id='p', title='t',"
        " rules=DisclosureRules(), n_partners=1)\n"
        f"write_product(p, Path({str(tmp_path)!r}))\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
