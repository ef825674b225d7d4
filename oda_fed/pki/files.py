"""Writing key material to disk: owner-only, never overwritten by accident, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from oda_fed.durable import fsync_dir
from oda_fed.errors import ConfigError

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def refuse_existing(paths: list[Path], *, force: bool) -> None:
    """Raise :class:`ConfigError` if any of ``paths`` exists and ``force`` is False.

    Checking every path before writing any means a refused call leaves no partial set of files.
    """
    if force:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise ConfigError(
                f"{path} already exists; refusing to overwrite key material. Move it away first, "
                "or pass force=True (--force) if replacing it is intended"
            )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(path: Path, data: bytes, *, private: bool, force: bool) -> Path:
    """Write ``data`` to ``path`` atomically; mode 0600 if ``private``, else 0644.

    Without ``force`` the file is created with ``O_EXCL``, so an existing file (or a symlink
    planted in its place) is never replaced, even by a concurrent writer. With ``force`` it is
    written to a temporary file in the same folder and renamed over the old one.

    Raises
    ------
    ConfigError
        If the file exists and ``force`` is False, or it cannot be written.

    Examples
    --------
    >>> write_file(Path("ca.key"), pem, private=True, force=False)  # doctest: +SKIP
    PosixPath('ca.key')
    """
    mode = PRIVATE_MODE if private else PUBLIC_MODE
    refuse_existing([path], force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if force:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, mode)
                _write_all(fd, data)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                os.unlink(tmp)
                raise
            os.close(fd)
            os.replace(tmp, path)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, mode)
            try:
                # The umask may have cleared bits from 0644; 0600 must hold whatever the umask.
                os.fchmod(fd, mode)
                _write_all(fd, data)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            os.close(fd)
    except FileExistsError:
        refuse_existing([path], force=False)
        raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    fsync_dir(path.parent)
    return path


def read_file(path: Path, *, what: str, hint: str) -> bytes:
    """Read ``path`` or raise :class:`ConfigError` saying what was expected there and what to do."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; {hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder, not a file; {hint}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
