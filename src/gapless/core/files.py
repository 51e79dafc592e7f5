"""The names of the files a control plane keeps in its state directory.

Here, apart from the modules that write them, so that the CLI can find them without importing the
control plane (a verb starts in well under 150 ms only if it imports little).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs the quick verbs' start-up a few milliseconds
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "API_SOCKET",
    "DASHBOARD_URL_FILE",
    "FLAGS_ADMIN_TOKEN",
    "FLAGS_DASHBOARD_TOKEN",
    "FLAGS_DB",
    "FLAGS_URL_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "ROUTERS_DIR",
    "SOCKET_PATH_MAX",
    "STDERR_FILE",
    "TOKEN_FILE",
    "longest_socket",
    "router_socket",
]

API_SOCKET = "api.sock"
"""The control plane's HTTP API (a unix socket, owner only)."""
TOKEN_FILE = "token"  # noqa: S105 -- a file name, not a secret
"""The admin token in plain text, 0600; the database keeps only its digest."""
FLAGS_DB = "flags.db"
"""The flag service mounted at ``/flags`` of the API keeps its data here (``gapless flags serve`` too)."""
FLAGS_ADMIN_TOKEN = "flags-admin-token"  # noqa: S105 -- a file name, not a secret
"""The flag service's first admin token, 0600 (the ``flags`` verbs act with it unless given another)."""
FLAGS_URL_FILE = "flags.url"
"""Where ``gapless flags serve`` writes the URL it serves on (removed on exit), for the ``flags`` verbs."""
FLAGS_DASHBOARD_TOKEN = "flags-dashboard-token"  # noqa: S105 -- a file name, not a secret
"""The flag admin token the dashboard acts with (named ``gapless dashboard`` in the flag audit log)."""
LOCK_FILE = "control-plane.lock"
LOG_FILE = "control-plane.log"
STDERR_FILE = "control-plane.stderr"
"""The control plane's own stdout and stderr (``gapless up`` starts it detached); the log is ``LOG_FILE``."""
DASHBOARD_URL_FILE = "dashboard.url"
"""Where a control plane serving the dashboard writes its URL (``gapless dashboard`` prints it)."""

ROUTERS_DIR = "routers"
"""Each rollout's router keeps its admin socket and saved configuration here."""
SOCKET_PATH_MAX = 107
"""Bytes a unix socket path may have on Linux (``sun_path`` less its terminating NUL)."""


def router_socket(state_dir: Path, rollout: str, suffix: str = ".sock") -> Path:
    """The admin socket of ``rollout``'s router: ``routers/NAME.sock``, or a hashed short name when
    that path is too long for a unix socket (a long rollout name under a deep state directory)."""
    import hashlib
    import os

    plain = state_dir / ROUTERS_DIR / f"{rollout}{suffix}"
    if len(os.fsencode(plain)) <= SOCKET_PATH_MAX:
        return plain
    digest = hashlib.sha256(rollout.encode()).hexdigest()[:8]
    return state_dir / ROUTERS_DIR / f"{digest}{suffix}"


def longest_socket(state_dir: Path) -> Path:
    """The longest unix socket path a control plane of ``state_dir`` binds (its API or a router's)."""
    return max(state_dir / API_SOCKET, router_socket(state_dir, "r" * 63), key=lambda p: len(str(p)))
