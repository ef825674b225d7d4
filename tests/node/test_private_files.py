"""What holds CLKs, keys, entity ids, true counts or released products is owner-only (0600
files, 0700 folders) on both sides whatever the umask: a whole round over real mutual TLS under
umask 022, as many servers have, then the mode of every such file and folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from oda_fed.durable import private_dir, write_atomic

pytestmark = pytest.mark.grpc


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def loose(paths: list[Path], *, under: Path) -> dict[str, str]:
    """The paths not owner-only (a folder 0700, a file 0600), by path below ``under``."""
    wanted = {True: 0o700, False: 0o600}
    return {str(p.relative_to(under)): oct(mode(p)) for p in paths if mode(p) != wanted[p.is_dir()]}


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that leaves new files readable by everyone, set before the federation is made."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_makes_every_missing_parent_owner_only(tmp_path: Path, loose_umask) -> None:
    tmp_path.chmod(0o755)
    made = private_dir(tmp_path / "releases" / "r1" / "product")
    assert [mode(p) for p in (made, made.parent, made.parent.parent)] == [0o700] * 3
    assert mode(tmp_path) == 0o755  # a folder that existed is not the helper's to change
    written = write_atomic(made / "list.csv", lambda tmp: tmp.write_text("x"), private=True)
    assert mode(written) == 0o600


def test_every_private_file_is_owner_only_after_a_round(loose_umask, agreeing_federation) -> None:
    fed = agreeing_federation
    assert fed.run_round().state == "closed"
    fed.stop_coordinator()

    for partner in fed.partners:
        node = fed.workdir / "nodes" / partner
        state = node / "state"  # the workdir: rounds, entity ids, keys, received products
        held = [state, *state.rglob("*")]
        names = {p.relative_to(state).parts[0] for p in held[1:]}
        assert names >= {"rounds", "entities.csv", "keys", "releases"}
        assert any(p.suffix == ".csv" for p in (state / "releases").rglob("*"))
        assert loose([*held, node / "tls" / f"{partner}.key"], under=node) == {}, partner

    coordinator = fed.workdir / "coordinator"
    state = coordinator / "state"  # database, keys, release ledger, pending releases
    held = [state, *state.rglob("*")]
    assert {p.name for p in held} >= {"coordinator.sqlite", "pseudonyms.key", "disclosure.key"}
    assert any(p.name.startswith("ledger-") for p in held)
    assert loose([*held, coordinator / "tls" / "coordinator.key"], under=coordinator) == {}
    # Released products, the disclosure reports' true counts and the quality report: every
    # folder is the operator's alone, so no other user reaches a file in it.
    products = coordinator / "products"
    folders = [products, *(p for p in products.rglob("*") if p.is_dir())]
    assert len(folders) > 1 and any(products.rglob("*.disclosure.csv"))
    assert loose(folders, under=coordinator) == {}
