"""Config errors that name the file, the key and what was expected, one line each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConfigProblem:
    file: Path | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file is not None else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigError(ValueError):
    """One or more problems in a config; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in problems))
