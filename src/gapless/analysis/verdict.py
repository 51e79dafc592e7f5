"""Verdicts: what a judge concluded about one measurement, in Argo Rollouts' phase words.

``running`` exists for sequential judges that have not concluded yet; ``inconclusive`` means the data
cannot decide (too few requests, or a sequential test that hit its maximum); ``error`` means the
analysis itself is broken (a condition that fails to evaluate, a metric the provider does not give).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Phase", "Verdict"]

Phase = Literal["successful", "failed", "inconclusive", "error", "running"]


@dataclass(frozen=True)
class Verdict:
    """A judge's conclusion, the observed values it rests on, and one human sentence."""

    phase: Phase
    value: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
