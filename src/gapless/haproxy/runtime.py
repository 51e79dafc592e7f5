"""HAProxy's runtime API on its unix socket, and its ``show stat`` CSV.

Each command opens the socket, sends one line and reads until HAProxy closes the connection. A command HAProxy refuses answers with text instead of
an empty line; ``run`` returns every answer so the caller decides which matter.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RuntimeApiError", "ServerStat", "parse_stat", "run", "run_one", "run_payload"]

TIMEOUT = 5.0
"""Seconds one exchange with the runtime API may take."""


class RuntimeApiError(OSError):
    """The runtime API did not answer (no socket, refused, timed out)."""


async def run(socket_path: Path, commands: Sequence[str]) -> list[str]:
    """Send ``commands`` in order, each in its own connection; HAProxy's answer to each.

    One connection per command, because the answers of commands joined by ``;`` cannot be told apart
    (a command that succeeds silently may answer nothing at all). A connection costs about 0.1 ms.
    """
    for c in commands:
        if not c or any(ch in c for ch in ";\n\r"):
            raise ValueError(f"not a single runtime command: {c!r}")
    return [await _exchange(socket_path, c) for c in commands]


SOCKET_PATH_MAX = 107
"""Bytes of a unix socket path (``sun_path`` less its NUL); a longer one is reached through its directory."""


async def _connect(socket_path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``socket_path``, through ``/proc/self/fd/N/`` of its directory when the path is too
    long for a unix socket (HAProxy binds it relative to its own working directory)."""
    if len(os.fsencode(socket_path)) <= SOCKET_PATH_MAX:
        return await asyncio.open_unix_connection(str(socket_path))
    fd = os.open(socket_path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}/{socket_path.name}")
    finally:
        os.close(fd)


async def _exchange(socket_path: Path, command: str) -> str:
    try:
        reader, writer = await asyncio.wait_for(_connect(socket_path), TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise RuntimeApiError(f"HAProxy runtime API at {socket_path}: {e}") from e
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise RuntimeApiError(f"HAProxy runtime API at {socket_path}: {e}") from e
    finally:
        writer.close()
    return data.decode(errors="replace").strip("\n")


async def run_one(socket_path: Path, command: str) -> str:
    """One command's answer."""
    return (await run(socket_path, [command]))[0]


async def run_payload(socket_path: Path, command: str, payload: str) -> str:
    """One command with a multi-line payload (``command <<``, the lines, an empty line); its answer.

    The payload ends at its first empty line, so it must have none (``tls.payload_lines`` drops them).
    """
    if not command or any(ch in command for ch in ";\n\r"):
        raise ValueError(f"not a single runtime command: {command!r}")
    lines = payload.rstrip("\n").split("\n")
    if not payload.strip() or any(not line.strip() or "\r" in line for line in lines):
        raise ValueError("a runtime payload must be non-empty lines")
    return await _exchange(socket_path, command + " <<\n" + "\n".join(lines) + "\n")


@dataclass(frozen=True)
class ServerStat:
    """One server's line of ``show stat``."""

    name: str
    status: str
    weight: int
    current: int
    """Sessions on the server right now (requests in flight)."""
    total: int
    bytes_in: int
    bytes_out: int
    connection_errors: int
    response_errors: int
    responses: dict[str, int]
    """Responses by class: ``1xx`` .. ``5xx`` and ``other``."""


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or ""
    return int(value) if value.isdigit() else 0


def parse_stat(text: str, backend: str) -> dict[str, ServerStat]:
    """The servers of ``backend`` in ``show stat`` output (CSV with a ``# `` header line)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not show stat output: {text[:80]!r}")
    rows = csv.DictReader([lines[0][2:], *lines[1:]])
    out: dict[str, ServerStat] = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        name = str(row["svname"])
        out[name] = ServerStat(
            name=name,
            status=row.get("status") or "",
            weight=_int(row, "weight"),
            current=_int(row, "scur"),
            total=_int(row, "stot"),
            bytes_in=_int(row, "bin"),
            bytes_out=_int(row, "bout"),
            connection_errors=_int(row, "econ"),
            response_errors=_int(row, "eresp"),
            responses={c: _int(row, f"hrsp_{c}") for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")},
        )
    return out
