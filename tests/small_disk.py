"""A real small file system to fill: a tmpfs mounted for one test, or a skip that says why not.

Writes that fail for want of space must be tested against a disk that is really full, not a patched
``sqlite3``: SQLite reuses pages of its WAL and only fails when a file must grow, and that is exactly the
behaviour worth seeing. Mounting needs root (or CAP_SYS_ADMIN); where that is missing the test is
skipped with the reason, never faked. A loop device would need the same privilege, and filling the
real disk of a shared machine is not acceptable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "small_tmpfs"]


@contextlib.contextmanager
def small_tmpfs(path: Path, size_mib: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_mib`` MiB on ``path`` (created) for the block; skip when it cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {r.stderr.strip() or r.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system has no space left; returns the file."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return filler
                chunk = chunk[: len(chunk) // 16 or 1]
    finally:
        os.close(fd)
