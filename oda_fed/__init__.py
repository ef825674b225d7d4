"""oda-fed: privacy-preserving federated record linkage and disclosure-controlled analysis.

The command line (``oda-fed``) is the main interface. From Python, the few names below cover
embedded linkage; everything else is internal and may change.

Examples
--------
>>> from oda_fed import link_files, load_project, read_secret  # doctest: +SKIP
>>> project = load_project("project.toml").project  # doctest: +SKIP
>>> result = link_files(["a.csv", "b.csv"], project=project,
...                     secret=read_secret("linkage.secret"))  # doctest: +SKIP
>>> result.links().head()  # doctest: +SKIP
"""

from oda_fed.config import load_project
from oda_fed.embedded import LinkResult, link_files
from oda_fed.errors import OdaFedError
from oda_fed.pki import read_secret

__version__ = "0.1.0"

__all__ = ["LinkResult", "OdaFedError", "__version__", "link_files", "load_project", "read_secret"]
