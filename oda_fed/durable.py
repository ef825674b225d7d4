"""Writes that survive a crash whole or not at all, kept owner-only, and checked when read back.

A reader (or a restarted process) sees either the old file or the complete new one, never a
half-written file; the directory entry is fsynced so a file reported as written stays written.
Folders and files that hold CLKs, keys or state are the owner's alone (:func:`private_dir`,
:func:`private_file`), and a SQLite file is checked before it is trusted (:func:`check_sqlite`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from oda_fed.errors import StateError

#: Modes of what only the owner may read: state, CLKs, keys.
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600


def private_dir(path: Path) -> Path:
    """Make ``path`` and leave it readable by its owner only (0700), and so every parent folder
    it had to make (a parent that existed is left as it is)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    # mkdir(parents=True) makes missing parents with the umask's mode, not ``mode``: one by one.
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another thread
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        os.chmod(folder, PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode does not change a folder that existed
    return path


def private_file(path: Path) -> Path:
    """Leave ``path`` (a file, or a folder and everything in it) readable by its owner only."""
    path = Path(path)
    if not path.is_dir():
        if path.exists():
            os.chmod(path, PRIVATE_FILE_MODE)
        return path
    os.chmod(path, PRIVATE_DIR_MODE)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(Path(root) / name, PRIVATE_DIR_MODE)
        for name in files:
            os.chmod(Path(root) / name, PRIVATE_FILE_MODE)
    return path


def check_sqlite(db: sqlite3.Connection, *, path: Path, what: str, remedy: str) -> None:
    """Refuse a damaged SQLite file: its header must read and ``PRAGMA quick_check`` be clean.

    Raises
    ------
    StateError
        Naming ``what`` is damaged, where it is, what SQLite found, and ``remedy``.
    """
    try:
        rows = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        rows = [str(exc)]
    if rows != ["ok"]:
        found = "; ".join(rows[:3]) + (f" (and {len(rows) - 3} more)" if len(rows) > 3 else "")
        raise StateError(f"{what} {path} is damaged ({found}). {remedy}")


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def replacing(path: Path, *, private: bool = False) -> Iterator[Path]:
    """Yield a scratch path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the scratch file is removed and ``path`` keeps its earlier content. With
    ``private`` the file is owner-only (0600) before it takes ``path``'s place, so it is never
    readable by others under its name, whatever the umask.

    Examples
    --------
    >>> with replacing(Path("links.csv")) as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp, index=False)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            if private:
                os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(path: Path, write: Callable[[Path], object], *, private: bool = False) -> Path:
    """Call ``write(scratch_path)`` and move the result to ``path`` atomically (owner-only with
    ``private``)."""
    with replacing(path, private=private) as tmp:
        write(tmp)
    return path
