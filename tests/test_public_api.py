"""The public surface is deliberate: changing it means changing this snapshot."""

import oda_fed


def test_public_names_snapshot() -> None:
    assert sorted(oda_fed.__all__) == [
        "LinkResult",
        "OdaFedError",
        "__version__",
        "link_files",
        "load_project",
        "read_secret",
    ]
    for name in oda_fed.__all__:
        assert hasattr(oda_fed, name)
