"""Shared CLI output: rich tables and progress for people, `--json` for machines.

rich loads when something is first shown to a person: a `--json` run never needs it, and
it is ~40 ms of a command that only queues work for the service.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table


_console: Console | None = None


def rich_console() -> Console:
    """The console itself, for rich objects that take one (`Progress(console=...)`)."""
    global _console
    if _console is None:
        from rich.console import Console

        # soft_wrap: a message or path is never broken across lines (rich wraps at 80
        # columns when stderr is not a terminal, which splits what people grep for).
        _console = Console(stderr=True, soft_wrap=True)
    return _console


class _LazyConsole:
    """Stands in for the console until it is used; hand rich `rich_console()` instead
    (rich enters a console as a context manager, which a stand-in cannot forward)."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(rich_console(), attr)


console = cast("Console", _LazyConsole())
"""Human output goes to stderr so stdout stays clean for `--json` and pipes."""


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def table(*columns: str, title: str | None = None) -> Table:
    """A rich table with these column headers."""
    from rich.table import Table

    return Table(*columns, title=title)


class _NoBars:
    """The progress display of a `--json` run: nothing shown, rich never loaded."""

    def __enter__(self) -> _NoBars:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, *, total: float | None = None) -> TaskID:
        return cast("TaskID", 0)

    def advance(self, task: TaskID, advance: float = 1) -> None:
        return None

    def update(
        self, task: TaskID, *, completed: float | None = None, total: float | None = None
    ) -> None:
        return None

    def remove_task(self, task: TaskID) -> None:
        return None


def transfer_progress(*, disable: bool = False) -> Progress | _NoBars:
    """A progress display for byte transfers: bar, bytes, rate, ETA (none with `disable`)."""
    if disable:
        return _NoBars()
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=rich_console(),
        transient=False,
    )


def count_progress(unit: str, *, disable: bool = False) -> Progress | _NoBars:
    """A progress display counting things (`3/101 images`), with the time so far."""
    if disable:
        return _NoBars()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=rich_console(),
        transient=False,
    )
