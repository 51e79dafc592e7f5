"""The error of a metric provider: a measurement that could not be taken.

It is data for the analysis run, not a verdict: the run counts it toward ``consecutiveErrorLimit`` and
tries again at the next interval. The message says what failed and where (the URL, the HTTP status,
Prometheus' ``errorType`` and ``error``), because the operator reads it in ``gapless analysis``.
"""

from __future__ import annotations

from gapless.core.errors import GaplessError

__all__ = ["ProviderError"]


class ProviderError(GaplessError):
    """A measurement could not be taken; the message names the source and what went wrong."""
