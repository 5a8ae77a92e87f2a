"""Terminal output shared by the commands: errors (reported in one place for every command, see
:class:`ReportingGroup`), tables, progress bars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from typer.core import TyperGroup

from genofed.errors import GenofedError

console = Console()
errors = Console(stderr=True)


class ReportingGroup(TyperGroup):
    """The root command group: any :class:`~genofed.errors.GenofedError` a command lets out is
    printed with its hint, and the command exits with status 1 (no traceback)."""

    # `ctx` is typer's vendored click Context, which typer does not export.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GenofedError as exc:
            fail(str(exc), exc.hint)


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Print an error (and what to do about it) to stderr and exit with status 1."""
    # Messages name files, fields and extras such as 'genofed[sim]': never read as markup.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        errors.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@contextmanager
def stage_progress(labels: dict[str, str]) -> Iterator[Callable[[str, float, float], None]]:
    """A progress bar per stage; yields `update(stage, done, total)`. Drawn on stderr."""
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=errors, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: float, total: float) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(labels.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update
