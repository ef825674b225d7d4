"""The index package's public surface changes only on purpose."""

from __future__ import annotations

import oda_fed.index as index


def test_all_snapshot() -> None:
    assert sorted(index.__all__) == [
        "Extract",
        "IndexReport",
        "IndexSummary",
        "LinkedIndex",
        "Relink",
        "SourceUpdate",
        "UpdateQuality",
        "describe_index",
    ]
    for name in index.__all__:
        assert getattr(index, name) is not None
