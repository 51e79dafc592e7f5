"""Regression test of issue 14: control-plane.log is rotated by size instead of growing for ever."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapless.server import process
from gapless.server.process import LOG_FILE, configure_logging


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_restore_logging")
def test_control_plane_log_rotates_and_keeps_a_few_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the size limit the log moves to .1, .2, .3 and no more than those are kept."""
    monkeypatch.setattr(process, "LOG_MAX_BYTES", 10_000)
    configure_logging(tmp_path)
    log = logging.getLogger("gapless.controller")
    for i in range(2000):
        log.info("line %d %s", i, "x" * 100)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2", f"{LOG_FILE}.3"]
    assert all(p.stat().st_size <= 10_000 + 200 for p in tmp_path.iterdir())
    assert "line 1999" in (tmp_path / LOG_FILE).read_text()
