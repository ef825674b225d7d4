"""What every command group shares: the consoles, one-line errors, logging and progress display.

Like the command modules, this imports only the standard library, typer, rich and
``oda_fed.errors`` at module level, so that ``oda-fed --help`` starts fast.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from oda_fed.errors import ConfigError, OdaFedError

if TYPE_CHECKING:
    from rich.progress import Progress

P = ParamSpec("P")
T = TypeVar("T")

console = Console(log_path=False)
err_console = Console(stderr=True)

ON_INVALID = ("error", "missing", "keep")

OnInvalid = Annotated[
    str,
    typer.Option(
        help="error: stop at a malformed value (e.g. 31/02/1980), naming its row and column; "
        "missing: count malformed values as missing and go on; keep: encode what a malformed "
        "value still says (29/02/2009 keeps its year, month and day) and go on."
    ),
]


def skip_collection_at_exit() -> None:
    """End this process without the garbage collector walking every object as it shuts down.

    Interpreter shutdown collects garbage while it tears down the modules; with Numba loaded that
    walks its typing registries and takes 0.2 to 0.4 s, longer than the rest of a small command.
    Freezing the objects (:func:`gc.freeze`) once the exit handlers run leaves them to reference
    counting, which frees the same memory. Only for commands whose files are written, flushed and
    closed before they return.
    """
    atexit.register(gc.freeze)  # runs after the handlers registered later, such as libraries'


def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call into the library; turn a user-fixable error into one line and its exit code."""
    try:
        return fn(*args, **kwargs)
    except OdaFedError as exc:
        fail(str(exc), exit_code=exc.exit_code)


def fail(message: str, *, exit_code: int) -> NoReturn:
    """Print ``message`` as one error line and exit with ``exit_code``."""
    # Escaped: messages quote TOML sections such as [operator], which rich would take as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code) from None


def check_on_invalid(value: str) -> str:
    """The ``--on-invalid`` value, checked."""
    if value not in ON_INVALID:
        raise ConfigError(f"--on-invalid must be one of {', '.join(ON_INVALID)}, not '{value}'")
    return value


MetricsOption = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, unauthenticated: "
        "localhost or your monitoring network only). Overrides `metrics` in the config; off "
        "unless one of them sets it.",
    ),
]
LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        metavar="text|json",
        help="text: lines for a person (the default); json: one JSON object a line, for a log "
        "shipper. Overrides `log_format` in the config.",
    ),
]


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """Log to stderr, at DEBUG with ``--verbose``; for the long-running services. ``text``
    logs through rich; ``json`` one JSON object a line (:mod:`oda_fed.monitoring.logs`)."""
    import logging

    if log_format == "json":
        import sys

        from oda_fed.monitoring.logs import JsonFormatter

        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif log_format == "text":
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False)
    else:
        fail(f"--log-format must be text or json, not '{log_format}'", exit_code=2)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[handler],
    )


def spinner(*, counts: bool = False) -> Progress:
    """A transient progress line on the console: a bar, with done/total when ``counts``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if counts:
        columns.append(MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True)


def with_status(description: str, fn: Callable[..., T], **kwargs: object) -> T:
    """Call ``fn(**kwargs, progress=...)`` under a spinner whose line ``progress`` rewrites."""
    with spinner() as progress:
        task = progress.add_task(description, total=None)
        return fn(**kwargs, progress=lambda msg: progress.update(task, description=msg))


def shown(path: Path | str) -> str:
    """A path relative to the current folder when it is inside it (shorter to read and copy)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def yes_no(flag: bool) -> str:
    """How a table cell says a flag: ``yes`` or ``no``."""
    return "yes" if flag else "no"
