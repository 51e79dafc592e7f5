"""HAProxy tests reuse the end-to-end fixture: a gapless installation always torn down."""

from __future__ import annotations

from tests.e2e.conftest import g

__all__ = ["g"]
