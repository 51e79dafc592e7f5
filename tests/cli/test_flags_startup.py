"""The ``flags`` verbs that send a request or two start without the flag service's own modules.

Before, ``flags kill`` imported the flag service (FastAPI, SQLAlchemy, Alembic) and httpx to send one
POST: about 1,100 modules and 2 s. This fails when any of them, or pydantic, yaml or asyncio, creeps
back into a verb that does not need it. bench/flags_cli.py measures the time itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = (
    "asyncio",
    "httpx",
    "pydantic",
    "yaml",
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "sqlite3",
    "gapless.flags",
    "gapless.server",
    "gapless.controller",
    "gapless.store",
    "gapless.spec",
)
MODULE_BUDGET = 280
"""As many modules as the other fast verbs may import (typer, rich and http.client)."""

VERBS = [
    ["flags", "kill", "shop", "new-checkout", "production"],
    ["flags", "enable", "shop", "new-checkout", "production"],
    ["flags", "get", "shop", "new-checkout"],
    ["flags", "get", "shop", "new-checkout", "-o", "json"],
    ["flags", "advance", "shop", "new-checkout", "production"],
]


@pytest.mark.parametrize("argv", VERBS, ids=" ".join)
def test_flags_verbs_import_little(argv: list[str], tmp_path: Path) -> None:
    """With no service (exit 1, nothing answers), the verb imported none of the heavy modules."""
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "gapless",
            *argv,
            "--state-dir",
            str(tmp_path),
            "--url",
            "http://127.0.0.1:9",  # discard: nothing answers
        ],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"},
        timeout=60,
    )
    modules = [
        line.split("|")[2].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line and "self [us]" not in line
    ]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "no flag service answers" in proc.stderr
    heavy = sorted({m for m in modules for f in FORBIDDEN if m == f or m.startswith(f + ".")})
    assert not heavy, f"`gapless {' '.join(argv)}` imports {heavy}"
    assert len(modules) <= MODULE_BUDGET, f"`gapless {' '.join(argv)}` imports {len(modules)} modules"
