"""Data is printed as text, never as rich markup: a flag's stage ``[beta]`` shows, ``[/x]`` does not crash.

Rich reads ``[...]`` in a plain string as a style tag: ``[beta]`` vanished from ``flags list`` and a
closing tag such as ``[/x]`` in a user's text raised ``MarkupError``. Rule: for any text in a flag's key,
stage or stale reasons, the printed table contains it unchanged.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from gapless.cli.flags_cmd import flags_table

texts = st.text("ab[]/=\\ ", min_size=1, max_size=12).filter(lambda t: t.strip() == t)


def printed(renderable: Any) -> str:
    console = Console(width=400, record=True, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


@given(key=texts, stage=texts, reason=texts)
def test_flags_list_prints_its_data_literally(key: str, stage: str, reason: str) -> None:
    item = {
        "key": key,
        "archived": False,
        "type": "boolean",
        "environments": {"production": {"enabled": True, "stage": {"name": stage}}},
        "evaluations": {"on": 3},
        "stale": True,
        "staleReasons": [reason],
    }
    out = printed(flags_table([item]))
    assert key in out
    assert f"production:on[{stage}]" in out
    assert reason in out


def test_the_stage_of_a_staged_flag_is_shown() -> None:
    item = {
        "key": "new-checkout",
        "archived": False,
        "type": "boolean",
        "environments": {"production": {"enabled": True, "stage": {"name": "beta"}}},
        "evaluations": {},
        "stale": False,
        "staleReasons": [],
    }
    assert "production:on[beta]" in printed(flags_table([item]))
