"""``gapless logs``: the instances' log files, each line prefixed with its instance.

On the local platform every instance writes to ``<state_dir>/logs/<rollout>/<instance>.log``; the files
stay after the instance is stopped, so the logs of a failed revision can still be read. ``--since`` and
``--timestamps`` use the times the control plane notes beside each file (``gapless.platform.logtimes``):
a line's time is when it was first seen, within a second.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from gapless.cli.client import ApiClient
from gapless.cli.times import rfc3339
from gapless.core.errors import GaplessError
from gapless.platform.logtimes import checkpoints, line_times

__all__ = ["show_logs"]

_COLORS = ["cyan", "magenta", "green", "yellow", "blue", "red"]


async def _revision_prefix(state_dir: Path, name: str, revision: int) -> str:
    client = ApiClient(state_dir)
    try:
        items = (await client.request("GET", f"/api/v1/rollouts/{name}/history"))["items"]
    finally:
        await client.aclose()
    for r in items:
        if r["number"] == revision:
            return f"{name}-{r['hash'][:6]}-"
    raise GaplessError(f"revision {revision} of {name!r} not found")


async def show_logs(
    state_dir: Path,
    name: str,
    *,
    revision: int | None,
    follow: bool,
    tail: int,
    console: Console,
    instance: str | None = None,
    since: float | None = None,
    timestamps: bool = False,
) -> int:
    """Print the logs; ``instance``: only that instance's (an error naming it if it has none).

    ``since`` (epoch seconds): only lines written then or later; ``timestamps``: each line with its time.
    """
    folder = state_dir / "logs" / name
    if not folder.is_dir():
        raise GaplessError(f"no logs for rollout {name!r} in {folder}")
    prefix = f"{name}-" if revision is None else await _revision_prefix(state_dir, name, revision)
    if instance is not None:
        if not (instance.startswith(prefix) and (folder / f"{instance}.log").is_file()):
            known = ", ".join(sorted(p.stem for p in folder.glob("*.log") if p.name.startswith(prefix)))
            raise GaplessError(
                f"no logs of instance {instance!r} of rollout {name!r}"
                + (f" revision {revision}" if revision is not None else "")
                + f" (known: {known or 'none'})"
            )
        prefix = instance
    offsets: dict[Path, int] = {}
    colors: dict[Path, str] = {}

    def files() -> list[Path]:
        if instance is not None:
            return [folder / f"{instance}.log"]
        return sorted(p for p in folder.glob("*.log") if p.name.startswith(prefix))

    def emit(path: Path, line: str, when: float | None = None) -> None:
        color = colors.setdefault(path, _COLORS[len(colors) % len(_COLORS)])
        t = Text(f"{path.stem} ", style=color)
        if timestamps:
            t.append(f"{rfc3339(time.time() if when is None else when)} ")
        t.append(line)
        console.print(t, highlight=False, soft_wrap=True)

    for path in files():
        data = path.read_bytes()
        offsets[path] = len(data)
        lines, ends = _split(data)
        if since is not None or timestamps:
            times = line_times(ends, checkpoints(path), path.stat().st_mtime)
        else:
            times = [0.0] * len(lines)
        shown = list(zip(lines, times, strict=True))
        if since is not None:
            shown = [(line, t) for line, t in shown if t >= since]
        for line, when in shown if tail < 0 else shown[-tail:] if tail else []:
            emit(path, line, when)
    while follow:
        await asyncio.sleep(0.2)
        for path in files():
            start = offsets.get(path, 0)
            size = path.stat().st_size
            if size <= start:
                continue
            with path.open("rb") as f:
                f.seek(start)
                chunk = f.read(size - start)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                continue
            offsets[path] = start + cut
            for line in chunk[:cut].decode(errors="replace").splitlines():
                emit(path, line)
    return 0


def _split(data: bytes) -> tuple[list[str], list[int]]:
    """The lines of ``data`` and the byte offset where each ends (after its newline)."""
    lines: list[str] = []
    ends: list[int] = []
    start = 0
    while start < len(data):
        nl = data.find(b"\n", start)
        end = len(data) if nl < 0 else nl + 1
        lines.append(data[start:end].rstrip(b"\r\n").decode(errors="replace"))
        ends.append(end)
        start = end
    return lines, ends
