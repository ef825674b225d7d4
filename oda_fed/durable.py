"""Writes that survive a crash whole or not at all.

A reader (or a restarted process) sees either the old file or the complete new one, never a
half-written file; the directory entry is fsynced so a file reported as written stays written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a scratch path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the scratch file is removed and ``path`` keeps its earlier content.

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
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(scratch_path)`` and move the result to ``path`` atomically."""
    with replacing(path) as tmp:
        write(tmp)
    return path
