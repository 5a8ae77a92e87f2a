"""Errors that ingest reports to the operator: each names the input and where in it."""

from __future__ import annotations


class IngestError(Exception):
    """Ingest could not complete; the store is unchanged."""


class InputError(IngestError):
    """An input file is malformed. The message names the file and, where known, line and field."""

    def __init__(self, name: str, problem: str, *, line: int | None = None,
                 field: str | None = None) -> None:
        self.name = name
        self.problem = problem
        self.line = line
        self.field = field
        where = name
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[object, ...]:  # raised in worker processes, so picklable
        return (_rebuild_input_error, (self.name, self.problem, self.line, self.field))


def _rebuild_input_error(name: str, problem: str, line: int | None,
                         field: str | None) -> InputError:
    return InputError(name, problem, line=line, field=field)
