"""``oda-fed node check``: what a partner's IT team can check before a round, without taking part.

Each check reads only local files, except the last, which opens a TLS connection to the
coordinator and closes it without a call (so nothing is sent, and neither audit log changes).
A check that fails says what to do; a check that cannot run because an earlier one failed is
not run. No check prints a value from the data or the secret.
"""

from __future__ import annotations

import datetime as dt
import stat
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from oda_fed.config import LoadedProject, NodeConfig, load_node_config, load_pinned_project
from oda_fed.errors import OdaFedError

#: A certificate that expires within this many days is worth a warning.
EXPIRY_WARNING_DAYS = 30


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, how it went, and what to do about it."""

    name: str
    outcome: Outcome
    detail: str


def check_node(config_path: Path, *, timeout: float = 5.0) -> list[Check]:
    """Check a node's configuration, files, permissions, certificate and coordinator.

    Never raises for a problem it finds: each becomes a failed :class:`Check`.

    Examples
    --------
    >>> [c.outcome for c in check_node(Path("node.toml"))]  # doctest: +SKIP
    [<Outcome.OK: 'ok'>, ...]
    """
    checks: list[Check] = []
    config = _run(checks, "configuration", lambda: _load(config_path))
    if config is None:
        return checks
    loaded = _run(checks, "project", lambda: _project(config, config_path))
    if loaded is not None:
        _run(checks, "extract", lambda: _extract(config, loaded))
    for name, path in _side_files(config):
        _run(checks, name, lambda path=path: _exists(path))
    for name, path in _private_files(config):
        _run(checks, name, lambda path=path: _owner_only(path))
    _run(checks, "secret", lambda: _secret(config))
    certified = _run(checks, "certificate", lambda: _certificate(config))
    if certified is not None:
        _run(checks, "coordinator", lambda: _reachable(config, timeout=timeout))
    return checks


class _Warning(Exception):
    """A check passed, with something to say; ``value`` is what it gives the checks after it."""

    def __init__(self, message: str, value: object = True) -> None:
        super().__init__(message)
        self.value = value


T = TypeVar("T")


def _run(checks: list[Check], name: str, fn: Callable[[], tuple[T, str]]) -> T | None:
    """Run one check and record it; ``fn`` returns (its value, what to show). Returns the value,
    or None when the check failed (a warning still returns it)."""
    try:
        value, detail = fn()
    except _Warning as exc:
        checks.append(Check(name, Outcome.WARN, str(exc)))
        return exc.value
    except OdaFedError as exc:
        checks.append(Check(name, Outcome.FAIL, str(exc)))
        return None
    checks.append(Check(name, Outcome.OK, detail))
    return value


def _load(path: Path) -> tuple[NodeConfig, str]:
    config = load_node_config(path)
    return config, f"{path}: partner '{config.partner}'"


def _project(config: NodeConfig, config_path: Path) -> tuple[LoadedProject, str]:
    from oda_fed.errors import ConfigError

    loaded = load_pinned_project(
        config.project, pinned=config.project_fingerprint, pinned_in=config_path
    )
    if config.partner not in loaded.project.partner_ids:
        raise ConfigError(
            f"{config_path}: partner '{config.partner}' is not a partner in project "
            f"'{loaded.project.name}' ({', '.join(loaded.project.partner_ids)})"
        )
    return loaded, f"'{loaded.project.name}', {loaded.fingerprint} as pinned"


def _extract(config: NodeConfig, loaded: LoadedProject) -> tuple[None, str]:
    """The extract's header names every mapped column, and it holds records."""
    from oda_fed.node.sources import (
        count_rows,
        extract_path,
        layout_for,
        read_source,
        require_columns,
        require_records,
    )

    path = extract_path(config.source)
    layout = layout_for(loaded.project, config.partner, config.source)
    with closing(read_source(path, chunk_rows=1, options=layout.read)) as frames:
        first = next(frames)
    require_columns(first, path, layout)
    # A sheet's recorded size may count blank rows: the first chunk says whether any is a record.
    rows = count_rows(path, layout.read) if len(first) else 0
    require_records(path, rows)
    return None, f"{path}: {rows} records; every mapped column is there"


def _side_files(config: NodeConfig) -> Iterator[tuple[str, Path]]:
    """Files the node reads besides the extract: lookup tables, event tables, CA, certificate."""
    if config.source.query_file is not None:
        yield "query file", config.source.query_file
    for name, path in config.source.lookups.items():
        yield f"lookup table '{name}'", path
    for table in config.source.events:
        yield f"event table '{table.name}'", table.path
    yield "CA certificate", config.tls.ca


def _exists(path: Path) -> tuple[None, str]:
    from oda_fed.errors import InputDataError

    if not path.is_file():
        raise InputDataError(f"{path}: file not found; check the path in node.toml")
    return None, str(path)


def _owner_only(path: Path) -> tuple[None, str]:
    from oda_fed.errors import AuthError, ConfigError

    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; check the path in node.toml") from None
    if mode & 0o077:
        raise AuthError(
            f"{path} can be read by other users (mode {mode:04o}); make it the node user's "
            f"only: chmod 600 {path}"
        )
    return None, f"{path}: {mode:04o}"


def _private_files(config: NodeConfig) -> list[tuple[str, Path]]:
    """The files only the node user may read: the TLS key, and the secret file or the agreed
    secrets and agreement key in ``keys_dir``."""
    files = [("key permissions", config.tls.key)]
    if config.source.password_file is not None:  # a SQL source's database password
        files.append(("database password permissions", config.source.password_file))
    if config.secret_file is not None:
        return [("secret permissions", config.secret_file), *files]
    keys = sorted(config.keys_dir.glob("linkage-*.secret")) if config.keys_dir.is_dir() else []
    agreement = config.keys_dir / "agreement.key"
    if agreement.exists():
        keys.insert(0, agreement)
    return [(f"{p.name} permissions", p) for p in keys] + files


def _secret(config: NodeConfig) -> tuple[None, str]:
    from oda_fed.pki import read_secret

    if config.secret_file is None:
        held = sorted(config.keys_dir.glob("linkage-*.secret")) if config.keys_dir.is_dir() else []
        if not held:
            raise _Warning(
                "no secret yet: the nodes agree one through the coordinator on the first run "
                "(or run `oda-fed node keys agree`)",
                None,
            )
        for path in held:
            read_secret(path)
        return None, f"{len(held)} agreed secret(s) in {config.keys_dir}"
    read_secret(config.secret_file)
    return None, f"{config.secret_file}: a linkage secret"


def _certificate(config: NodeConfig) -> tuple[bool, str]:
    """Issued by the partnership CA to this partner, and not expired (a warning when close)."""
    from oda_fed.node.agent import check_certificate
    from oda_fed.pki import load_certificate

    check_certificate(config)
    expires = load_certificate(config.tls.cert).not_valid_after_utc
    left = expires - dt.datetime.now(dt.UTC)
    said = f"{config.tls.cert}: node '{config.partner}', expires {expires:%Y-%m-%d}"
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        raise _Warning(
            f"{said}, in {left.days} day(s): ask the partnership CA for a new certificate "
            "(`oda-fed pki request`, then `pki sign`) before it does"
        )
    return True, said


def _reachable(config: NodeConfig, *, timeout: float) -> tuple[None, str]:
    """A TLS handshake with the coordinator, then hang up: no call, nothing sent or logged."""
    import grpc

    from oda_fed.errors import ProtocolError
    from oda_fed.transport.channel import create_channel

    address, name = config.coordinator.address, config.coordinator.server_name
    channel = create_channel(address=address, tls=config.tls, server_name=name)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ProtocolError(
            f"{address}: no TLS connection within {timeout:.0f}s. Is the coordinator running and "
            "reachable from here (address, firewall)? Is [coordinator] server_name the name in "
            "its certificate? Were both certificates issued by the partnership CA?"
        ) from None
    finally:
        channel.close()
    return None, f"{address}: TLS handshake completed"
