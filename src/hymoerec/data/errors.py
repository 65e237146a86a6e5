"""Errors raised by the data pipeline."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file or option is unusable; the message names the problem."""


class MalformedRowError(DataError):
    """A row of a data file cannot be parsed."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        super().__init__(f"{path}, line {line}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem
