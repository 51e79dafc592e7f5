"""Crash points: the process kills itself (SIGKILL) at a named line, to test what a crash there leaves.

A SIGKILL sent from outside lands wherever the process happens to be; a step that takes milliseconds (a
flag set through the flag service) cannot be hit between its two writes that way. A crash point makes
that window exact: ``GAPLESS_CRASH_AT=release.flag.set`` in the control plane's environment kills it
right after the flag service accepted a flag step's change and before the step records it. Unset (the
only state outside tests) it costs one dictionary lookup per point.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "crash_point"]

ENV = "GAPLESS_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process when ``name`` is one of the comma-separated names in ``$GAPLESS_CRASH_AT``."""
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
