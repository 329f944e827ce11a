"""Errors a notebook or the CLI shows to a person.

Every error the kit raises on purpose derives from :class:`LabError`, so a notebook can catch
one class and the CLI can print a message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class LabError(Exception):
    """An error whose message is meant for the student, not a traceback."""


class InputError(LabError):
    """Bad input: names the file, and the line and field when they are known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class ServicesNotRunning(LabError):
    """The local services are needed but not running; the message says how to start them."""
