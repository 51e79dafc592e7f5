"""CLI fixtures: the end-to-end suite's gapless installation (``g``), always torn down."""

from __future__ import annotations

from tests.e2e.conftest import g

__all__ = ["g"]
