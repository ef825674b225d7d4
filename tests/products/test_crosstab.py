"""Raw cells of a table: every combination counted once, zeros kept, unknowns in their own row."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from oda_fed.products.crosstab import NOT_KNOWN, Dimension, ProductError, count_cells


def test_counts_match_a_plain_count_in_every_cell(rng: np.random.Generator) -> None:
    n = 500
    people = pd.DataFrame(
        {
            "ward": rng.choice(["W1", "W2", ""], size=n),
            "age": rng.choice(["0-17", "18-64", "65+"], size=n),
            "flag": rng.choice(["yes", "no"], size=n),
        }
    )
    cohort = pd.Series(rng.random(n) < 0.7)
    dims = [
        Dimension("ward", ("W1", "W2", "W3")),
        Dimension("age", ("0-17", "18-64", "65+"), not_known=False),
        Dimension("flag", ("yes", "no"), not_known=False),
    ]
    cells = count_cells(people, dims=dims, cohort=cohort)
    assert len(cells) == 4 * 3 * 2 and cells["count"].sum() == int(cohort.sum())
    expected = [
        int(
            (
                (people.ward.replace("", NOT_KNOWN) == w)
                & (people.age == a)
                & (people.flag == f)
                & cohort
            ).sum()
        )  # fmt: skip
        for w, a, f in itertools.product(*(d.categories for d in dims))
    ]
    assert cells["count"].tolist() == expected
    assert (cells[cells.ward == "W3"]["count"] == 0).all()  # kept, as zeros


def test_what_cannot_be_tabled_is_refused() -> None:
    people = pd.DataFrame({"ward": ["W9"]})
    with pytest.raises(ProductError, match="not among its 2 categories"):
        count_cells(people, dims=[Dimension("ward", ("W1",))])
    with pytest.raises(ProductError, match="1 to 3 dimensions"):
        count_cells(people, dims=[])
    with pytest.raises(ProductError, match="no column"):
        count_cells(people, dims=[Dimension("age", ("1",))])
    empty = count_cells(people.iloc[:0], dims=[Dimension("ward", ("W1",))])
    assert empty["count"].tolist() == [0, 0]
