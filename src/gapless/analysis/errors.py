"""Errors of the analysis layer: a bad condition or inconsistent measurements are permanent errors.

They say what is wrong with the user's analysis (a condition that does not parse, histograms whose
bucket bounds do not match), so retrying would not help; the caller reports them as an ``error``
verdict and stops the analysis run.
"""

from __future__ import annotations

from gapless.core.errors import GaplessError

__all__ = ["AnalysisError", "ExpressionError", "MissingValueError"]


class AnalysisError(GaplessError):
    """Measurements or an analysis configuration that cannot be judged."""


class ExpressionError(AnalysisError):
    """A condition that does not parse or cannot be evaluated; ``position`` is a 0-based offset."""

    def __init__(self, message: str, position: int, source: str = "") -> None:
        self.message = message
        self.position = position
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"{self.message} (at column {self.position + 1})"
        if self.source and len(self.source) <= 200 and "\n" not in self.source:
            text += f"\n  {self.source}\n  {' ' * self.position}^"
        return text


class MissingValueError(ExpressionError):
    """A name, key or index the environment does not have; ``default(x, y)`` turns it into ``y``."""
