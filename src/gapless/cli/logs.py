"""``gapless logs``: the instances' log files, each line prefixed with its instance.

On the local platform every instance writes to ``<state_dir>/logs/<rollout>/<instance>.log``; the files
stay after the instance is stopped, so the logs of a failed revision can still be read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.text import Text

from gapless.cli.client import ApiClient
from gapless.core.errors import GaplessError

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
) -> int:
    """Print the logs; ``instance``: only that instance's (an error naming it if it has none)."""
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

    def emit(path: Path, line: str) -> None:
        color = colors.setdefault(path, _COLORS[len(colors) % len(_COLORS)])
        t = Text(f"{path.stem} ", style=color)
        t.append(line)
        console.print(t, highlight=False, soft_wrap=True)

    for path in files():
        data = path.read_bytes()
        offsets[path] = len(data)
        lines = data.decode(errors="replace").splitlines()
        for line in lines if tail < 0 else lines[-tail:] if tail else []:
            emit(path, line)
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
