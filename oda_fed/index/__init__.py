"""The linked index: stable entity ids across linkage runs, incremental updates, persistence.

Examples
--------
>>> from oda_fed.index import Extract, LinkedIndex
>>> from oda_fed.matching.settings import LinkSettings
>>> with LinkedIndex.open(path, fingerprint=fp, words=16, create=True) as index:  # doctest: +SKIP
...     index.link({"council": council, "police": police}, settings=LinkSettings(threshold=0.8))
"""

from oda_fed.index.extract import Extract
from oda_fed.index.linked import LinkedIndex
from oda_fed.index.reports import (
    IndexReport,
    IndexSummary,
    Relink,
    SourceUpdate,
    UpdateQuality,
    describe_index,
)

__all__ = [
    "Extract",
    "IndexReport",
    "IndexSummary",
    "LinkedIndex",
    "Relink",
    "SourceUpdate",
    "UpdateQuality",
    "describe_index",
]
