"""Finding the HAProxy executable and checking its version (>= 2.6, for the runtime API gapless uses).

``add server`` / ``del server`` with weights on the runtime API and the master CLI are there from 2.6
(Debian 12's package); older versions are refused before anything starts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["DEFAULT_BINARY", "MIN_VERSION", "BinaryError", "HaproxyBinary", "check_binary"]

DEFAULT_BINARY = "haproxy"
MIN_VERSION = (2, 6)
_VERSION = re.compile(r"HA-?Proxy version (\d+)\.(\d+)(?:\.(\d+))?")


class BinaryError(ValueError):
    """The HAProxy executable is missing, does not run, or is too old."""


@dataclass(frozen=True)
class HaproxyBinary:
    path: str
    version: tuple[int, int, int]


def check_binary(binary: str | None) -> HaproxyBinary:
    """The executable ``binary`` names (else ``haproxy`` on PATH), checked to be HAProxy >= 2.6."""
    name = binary or DEFAULT_BINARY
    path = shutil.which(name)
    if path is None:
        raise BinaryError(
            f"HAProxy executable {name!r} not found"
            + ("" if binary else " on PATH (install HAProxy >= 2.6, e.g. Debian's package haproxy)")
        )
    try:
        done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BinaryError(f"{path} -v did not run: {e}") from e
    m = _VERSION.search(done.stdout + done.stderr)
    if m is None:
        first = (done.stdout + done.stderr).strip().splitlines()[:1]
        raise BinaryError(f"{path} does not look like HAProxy: `{path} -v` printed {first or 'nothing'}")
    version = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if version[:2] < MIN_VERSION:
        shown = ".".join(map(str, version))
        raise BinaryError(f"{path} is HAProxy {shown}; gapless needs HAProxy >= 2.6")
    return HaproxyBinary(path, version)
