"""Errors that cross layers.

Permanent errors (a bad spec, an unknown rollout) are reported and stop the operation; temporary ones
(a refused connection to a process that is starting) are retried by the caller with backoff.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GaplessError", "NotFoundError", "Problem", "SpecError", "StateWriteError", "TemporaryError"]


class GaplessError(Exception):
    """Base of every error gapless raises on purpose."""


class Problem(NamedTuple):
    """One problem in an input document, named by the dotted path of its field.

    A named tuple rather than a dataclass: the CLI's quick paths import this module, and
    ``dataclasses`` (through ``inspect``) costs them about 20 ms of start-up.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(GaplessError):
    """A spec file is invalid; carries every problem found, not only the first."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class NotFoundError(GaplessError):
    """A named object (rollout, revision, instance) does not exist."""


class TemporaryError(GaplessError):
    """A failure worth retrying with backoff."""


class StateWriteError(TemporaryError):
    """The state could not be written (disk full, read-only file system, I/O error, locked).

    Temporary: nothing was changed (the transaction was rolled back), and the same write succeeds once
    the cause is gone. ``cause`` is a short phrase for messages ("the disk is full").
    """

    def __init__(self, cause: str, detail: str) -> None:
        self.cause = cause
        super().__init__(f"{cause} ({detail})")
