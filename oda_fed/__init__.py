"""oda-fed: privacy-preserving federated record linkage and disclosure-controlled analysis.

The command line (``oda-fed``) is the main interface. From Python, the few names below cover
embedded linkage; everything else is internal and may change. They load on first use, so
importing a part of oda-fed (the wire protocol, say) does not load the matching engine.

Examples
--------
>>> from oda_fed import link_files, load_project, read_secret  # doctest: +SKIP
>>> project = load_project("project.toml")  # doctest: +SKIP
>>> result = link_files(["a.csv", "b.csv"], project=project,
...                     secret=read_secret("linkage.secret"))  # doctest: +SKIP
>>> result.links().head()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["LinkResult", "OdaFedError", "__version__", "link_files", "load_project", "read_secret"]

_HOME = {
    "LinkResult": "oda_fed.linkage",
    "OdaFedError": "oda_fed.errors",
    "link_files": "oda_fed.embedded",
    "load_project": "oda_fed.config",
    "read_secret": "oda_fed.pki",
}

if TYPE_CHECKING:
    from oda_fed.config import load_project
    from oda_fed.embedded import link_files
    from oda_fed.errors import OdaFedError
    from oda_fed.linkage import LinkResult
    from oda_fed.pki import read_secret


def __getattr__(name: str) -> object:
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oda_fed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
