"""Terminal output shared by the commands: errors (reported in one place for every command, see
:class:`ReportingGroup`), tables, JSON, progress bars.

Every command that prints a table prints it through :func:`print_table`, so that one rule holds
everywhere: a person at a terminal gets a table, a script gets tab-separated lines with a header
(`genofed access list node/ | cut -f1` gives whole ids), and nothing is ever shortened for either.
A script that wants more than columns asks for ``--json`` (:func:`print_json`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import typer
from rich.cells import cell_len
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
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from genofed.errors import GenofedError

console = Console()
#: Piped or redirected, a line is not wrapped at some assumed width: a reader (or `grep`) gets
#: each message, id and path on one line, whole.
console.soft_wrap = not console.is_terminal
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


# -- tables and JSON: one rule for people and scripts ---------------------------------------------

@dataclass(frozen=True)
class Column:
    """A column of :func:`print_table`.

    `identifier` marks values a reader copies into another command (ids, jtis, identities,
    fingerprints, URLs): on a terminal they are the first kept on one line when the table is
    too wide for every column to be, and folded (never cut) only when even they cannot be.
    `width` is the fixed width of a column in the streamed terminal form (`stream=True`);
    columns without one are written as they come, so put them last."""

    name: str
    justify: Literal["left", "right"] = "left"
    identifier: bool = False
    width: int | None = None


def stdout_is_terminal() -> bool:
    """Whether a person reads standard output (else a pipe or file: scripts get plain TSV)."""
    return sys.stdout.isatty()


def note(text: str, *, markup: bool = True) -> None:
    """Context printed around a table (a title, a count, "nothing yet: do this"): on a
    terminal with the table; otherwise on stderr, so a script's stdout holds only the table's
    header line and rows. `markup=False` for text with paths or ids, which may hold '['."""
    if stdout_is_terminal():
        console.print(text, highlight=False, markup=markup)
    else:
        errors.print(text, highlight=False, markup=markup, soft_wrap=True)


def print_table(columns: Sequence[Column], rows: Iterable[Sequence[str]], *,
                title: str | None = None, empty: str | None = None,
                terminal: bool | None = None, stream: bool = False) -> int:
    """Print rows (strings, one per column) and return how many.

    On a terminal (`terminal`, default: is stdout one?) a rich table, or with `stream=True`
    aligned lines written as the rows come (for more rows than fit in memory: a rich table must
    see them all first). Otherwise tab-separated lines under a header line, values whole (a tab
    or line break inside a value becomes a space: one row, one line). `title` and `empty` (said
    when there are no rows) are plain-text notes: on stderr when stdout is not a terminal. A
    reader that stops early (`| head`) ends the command quietly."""
    terminal = stdout_is_terminal() if terminal is None else terminal
    if title is not None and not (terminal and not stream):
        note(title, markup=False)
    with reader_may_leave():
        if not terminal:
            count = _write_tsv(columns, rows)
        elif stream:
            count = _write_aligned(columns, rows)
        else:
            table_rows = list(rows)
            count = len(table_rows)
            if table_rows or empty is None:
                _write_rich(columns, table_rows, title)
        sys.stdout.flush()
    if count == 0 and empty is not None:
        note(empty, markup=False)
    return count


def print_json(document: Any) -> None:
    """One JSON document on stdout (indented, UTF-8 kept readable), nothing else."""
    with reader_may_leave():
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def json_option(what: str, keys: str) -> Any:
    """The `--json` option of a command that prints `what` (e.g. "the application"); `keys`
    tells a script's author what the document holds."""
    return typer.Option(False, "--json", help=f"Print {what} as JSON on standard output, and "
                        f"nothing else there (for scripts; notes go to standard error). {keys}")


def _write_tsv(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> int:
    out = sys.stdout
    out.write("\t".join(c.name for c in columns) + "\n")
    count = 0
    for row in rows:
        out.write("\t".join(_one_line(value) for value in row) + "\n")
        count += 1
    return count


def _one_line(value: str) -> str:
    return value.replace("\t", " ").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _write_aligned(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> int:
    out = sys.stdout
    formats = [("{:>%d}" if c.justify == "right" else "{:<%d}") % c.width if c.width else "{}"
               for c in columns]
    line = "  ".join(formats) + "\n"
    out.write(line.format(*(c.name for c in columns)))
    count = 0
    for row in rows:
        out.write(line.format(*row))
        count += 1
    return count


def _write_rich(columns: Sequence[Column], rows: list[Sequence[str]], title: str | None) -> None:
    """A rich table in which nothing is cut off: every column folds what does not fit (rich's
    default is an ellipsis), and columns stay on one line as far as the width allows,
    identifiers first (rich would cut a no-wrap column that cannot fit, so the rest fold)."""
    longest = [max([cell_len(c.name),
                    *(cell_len(line) for row in rows for line in row[i].splitlines())])
               for i, c in enumerate(columns)]
    # borders (n + 1) and padding (2 per column), every column folded narrow ...
    needed = len(columns) + 1 + sum(2 + min(width, 4) for width in longest)
    whole: set[int] = set()
    for i in sorted(range(len(columns)), key=lambda i: not columns[i].identifier):
        extra = longest[i] - min(longest[i], 4)  # ... then widened, while they fit
        if needed + extra <= console.width:
            whole.add(i)
            needed += extra
    table = Table(title=Text(title) if title is not None else None)
    for i, column in enumerate(columns):
        table.add_column(column.name, justify=column.justify, overflow="fold",
                         no_wrap=i in whole)
    for row in rows:
        table.add_row(*(Text(value) for value in row))  # values are never read as markup
    console.print(table)


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """A reader that closes the pipe early (`| head`) has seen enough: exit 0, no traceback."""
    try:
        yield
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise typer.Exit(0) from None
