"""The router's files: its last config (so a restarted router routes as before) and its admin token.

The config is written atomically (temp file in the same directory, fsync, ``os.replace``, fsync of the
directory), so a crash leaves either the old or the new config on disk, never half of one. The token
is read once; only its sha256 digest stays in memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from gapless.router.config import RouterConfig

__all__ = ["load_config", "read_token_digest", "save_config", "token_digest", "validation_message"]


def token_digest(token: str) -> str:
    """The sha256 hex digest the admin API compares bearer tokens by."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_token_digest(path: str | Path) -> str:
    """Read the plaintext token the control plane wrote and return its digest; the token is not kept."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"{path}: the admin token file is empty")
    return token_digest(token)


def validation_message(exc: ValidationError) -> str:
    """One line per problem, each starting with the dotted path of the field."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(lines)


def load_config(path: str | Path) -> RouterConfig | None:
    """The config saved at ``path``, or None when there is none yet; raises ValueError if it is invalid."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return RouterConfig.model_validate_json(data)
    except ValidationError as exc:
        raise ValueError(f"{p}: {validation_message(exc)}") from exc


def save_config(path: str | Path, config: RouterConfig) -> None:
    """Write ``config`` to ``path`` atomically and durably (mode 0600)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(config.model_dump_json(indent=2).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
