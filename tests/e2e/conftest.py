"""End-to-end fixtures: a gapless installation that is always torn down, leaving no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Gapless


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Gapless]:
    """A gapless state directory; everything started in it is stopped afterwards."""
    inst = Gapless(tmp_path / "state")
    try:
        yield inst
    finally:
        # A test that ran `down` itself (or never started anything) leaves nothing to stop: a second
        # `down` would only start the CLI to say so.
        if (inst.state_dir / "state.db").exists() and inst.processes():
            inst.down()
        for p in inst.processes():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pgid, signal.SIGKILL)
