"""Shared fixtures: every test gets its own state directory and nothing leaks between tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PYTHON = sys.executable


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh gapless state directory for one test."""
    d = tmp_path / "state"
    d.mkdir()
    return d


def in_ci() -> bool:
    """Whether the suite runs under CI, where a missing server is a failure rather than a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
