"""What the CLI prints fits the terminal and shows numbers with their units."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console, RenderableType

from gapless.cli.render import (
    measured_text,
    outlook_text,
    render_analysis,
    render_analysis_summary,
    render_events,
    render_history,
    render_list,
    render_status,
)

NOW = 1_760_000_000.0
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63)
words = st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789-_.:/()'[]=\\", min_size=1, max_size=20
)  # [/x] is markup to rich
messages = st.lists(words, max_size=15).map(" ".join)
small = st.integers(0, 12)
seconds = st.floats(0, 30, allow_nan=False)


def printed(renderable: RenderableType, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None, legacy_windows=False)
    with console.capture() as capture:
        console.print(renderable, crop=False)  # rich would cut a line that is too wide: it must not be
    return capture.get().split("\n")


def instance(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "id": draw(names) + "-" + draw(st.text("0123456789abcdef", min_size=6, max_size=6)),
        "revision": draw(st.integers(1, 999)),
        "state": draw(st.sampled_from(["starting", "running", "backoff", "terminating"])),
        "ready": draw(st.booleans()),
        "pid": draw(st.integers(1, 4_194_304)),
        "port": draw(st.integers(1, 65535)),
        "restarts": draw(small),
        "startedAt": NOW,
        "message": draw(messages),
    }


def measurement(draw: st.DrawFn) -> dict[str, Any]:
    def summary() -> dict[str, Any]:
        return {
            "requests": draw(st.integers(0, 10**7)),
            "error_rate": draw(st.floats(0, 1)),
            "p99": draw(seconds),
            "counters": {draw(names): draw(st.floats(0, 1e6))},
        }

    value: dict[str, Any] = {"canary": summary(), "baseline": summary()}
    if draw(st.booleans()):
        value["outlook"] = {
            "decided": False,
            "toward": draw(st.sampled_from(["failed", "successful", None])),
            "llr": draw(st.floats(-20, 20)),
            "bound": 3.69,
            "remainingRequests": draw(st.none() | st.integers(0, 10**9)),
            "remainingSeconds": draw(st.none() | st.floats(0, 1e7)),
            "capped": draw(st.booleans()),
        }
    return {"at": NOW, "phase": "running", "message": draw(messages), "value": value}


@st.composite
def statuses(draw: st.DrawFn) -> dict[str, Any]:
    run = {
        "name": draw(names),
        "phase": "running",
        "message": draw(messages),
        "metrics": [
            {"name": draw(names), "phase": "running", "measured": 3, "failed": 1, "last": measurement(draw)}
        ],
    }
    return {
        "name": draw(names),
        "phase": draw(st.sampled_from(["Progressing", "Healthy", "Paused", "Degraded", "Failed"])),
        "message": draw(messages),
        "replicas": draw(small),
        "currentRevision": draw(st.integers(1, 999)),
        "updatedReplicas": draw(small),
        "readyReplicas": draw(small),
        "availableReplicas": draw(small),
        "totalInstances": draw(small),
        "router": {"listen": "127.0.0.1:8080", "pid": 4242, "backends": 3},
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": draw(messages),
            }
        ],
        "instances": [instance(draw) for _ in range(draw(st.integers(0, 5)))],
        "strategy": {
            "type": "Canary",
            "stepIndex": draw(small),
            "steps": draw(st.integers(1, 8)),
            "weights": {"2": 20, "1": 80},
            "pauseRemaining": draw(st.none() | seconds),
            "analysis": [run],
        },
    }


def plain(text: str) -> str:
    return text.replace("\u00a0", " ")


def fits(lines: list[str], width: int) -> None:
    for line in lines:
        assert cell_len(line) <= width, line


@settings(max_examples=60, deadline=None)
@given(statuses(), st.integers(40, 200))
def test_status_fits_any_width(status: dict[str, Any], width: int) -> None:
    """`gapless status` prints no line wider than the terminal, whatever the ids and messages."""
    lines = printed(render_status(status), width)
    fits(lines, width)
    head = "\n".join(lines)
    for label in ("updated", "ready", "available"):
        match = re.search(rf"{label} (\d+)/(\d+)", head)  # a phrase: never broken across lines
        assert match, label
        assert int(match.group(1)) <= int(match.group(2)) == status["replicas"]


@settings(max_examples=60, deadline=None)
@given(st.lists(statuses(), max_size=4), st.integers(40, 200))
def test_list_fits_and_available_never_exceeds_replicas(items: list[dict[str, Any]], width: int) -> None:
    """`gapless status` without a name: one line per rollout, AVAILABLE never above its total."""
    lines = printed(render_list(items), width)
    fits(lines, width)
    for shown, total in re.findall(r"\b(\d+)/(\d+)\b", "\n".join(lines)):
        assert int(shown) <= int(total)


@st.composite
def analysis_runs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(names),
        "revision": draw(st.integers(1, 99)),
        "phase": "running",
        "active": draw(st.booleans()),
        "startedAt": NOW,
        "templates": [draw(names)],
        "message": draw(messages),
        "measurements": {draw(names): [measurement(draw) for _ in range(draw(st.integers(1, 3)))]},
        "metrics": [],
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(analysis_runs(), min_size=1, max_size=3), st.integers(40, 200))
def test_analysis_fits_and_keeps_every_short_word(items: list[dict[str, Any]], width: int) -> None:
    """`gapless analysis` fits; every word of a message up to 16 characters is printed whole."""
    lines = printed(render_analysis(items), width)
    fits(lines, width)
    tokens = {t for line in lines for t in line.split()}
    if width >= 80:
        assert "MESSAGE" in tokens  # the judge's reason is the last column to go
    if "MESSAGE" not in tokens:
        return
    for run in items:
        for measurements in run["measurements"].values():
            for m in measurements:
                if "outlook" in m["value"]:
                    continue  # a running sequential test shows its outlook instead of "not yet decided"
                for word in m["message"].split():
                    if len(word) <= 16:
                        assert word in tokens


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "number": st.integers(1, 10**6),
                "hash": st.text("0123456789abcdef", min_size=12, max_size=64),
                "phase": st.sampled_from(["complete", "failed", "progressing", "superseded"]),
                "createdAt": st.just(NOW),
                "command": st.lists(words, min_size=1, max_size=8),
                "message": messages,
            }
        ),
        max_size=5,
    ),
    st.integers(40, 200),
)
def test_history_fits(items: list[dict[str, Any]], width: int) -> None:
    """`gapless history` fits any width."""
    fits(printed(render_history(items), width), width)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "time": st.just(NOW),
                "rollout": names,
                "revision": st.text("0123456789abcdef", min_size=0, max_size=64),
                "type": st.sampled_from(["TrafficShifted", "AnalysisRunInconclusive", "InstanceStarted"]),
                "message": messages,
            }
        ),
        max_size=6,
    ),
    st.integers(40, 200),
)
def test_events_fit(items: list[dict[str, Any]], width: int) -> None:
    """`gapless events` fits any width."""
    fits(printed(render_events(items), width), width)


def test_analysis_lines_read_with_units() -> None:
    """A measurement reads `p99 2.1 ms vs 6.4 ms`, not `0.00206 vs 0.00639`."""
    value = {
        "canary": {"requests": 800, "error_rate": 0.005, "p99": 0.00206},
        "baseline": {"requests": 15_200, "error_rate": 0.001, "p99": 0.00639},
    }
    assert plain(measured_text(value)) == "err 0.5% vs 0.1%, p99 2.1 ms vs 6.4 ms, req 800 vs 15.2k"
    assert plain(measured_text({"result": 0.0123, "unit": "seconds"})) == "result 12.3 ms"
    assert plain(measured_text({"result": [0.5, 0.25], "unit": "ratio"})) == "result [50%, 25%]"
    assert "2.1\u00a0ms" in measured_text(value)  # kept on one line when wrapped


def test_outlook_reads_as_distance_and_requests() -> None:
    """A running sequential test shows its LLR against the bound and the requests and time left."""
    ahead = {
        "decided": False,
        "toward": "failed",
        "llr": 1.23,
        "bound": 3.689,
        "remainingRequests": 800,
        "remainingSeconds": 200.0,
        "capped": False,
    }
    assert outlook_text(ahead) == "LLR 1.2 of 3.7 to decide (failed); ~800 more requests (~3m20s)"
    assert (
        outlook_text(ahead | {"remainingRequests": None})
        == "LLR 1.2 of 3.7 to decide (failed); no estimate yet"
    )
    assert outlook_text(ahead | {"decided": True, "llr": 3.9}) == "LLR 3.9 reached 3.7 (failed)"
    assert "~1700 more requests" in outlook_text(ahead | {"remainingRequests": 1674})
    assert "~12k more requests" in outlook_text(ahead | {"remainingRequests": 12_345})
    assert "~42 more requests" in outlook_text(ahead | {"remainingRequests": 42})


def test_summary_of_a_sequential_metric_shows_the_outlook() -> None:
    """The status's analysis table carries the outlook of the last sequential measurement."""
    run = {
        "name": "canary step 2",
        "phase": "running",
        "metrics": [
            {
                "name": "errors-and-latency",
                "phase": "running",
                "measured": 4,
                "last": {
                    "message": "not yet decided",
                    "value": {
                        "canary": {"requests": 900, "p99": 0.0021},
                        "baseline": {"requests": 9000, "p99": 0.0064},
                        "outlook": {
                            "llr": 1.2,
                            "bound": 2.9,
                            "remainingRequests": 800,
                            "toward": "successful",
                        },
                    },
                },
            }
        ],
    }
    text = " ".join(" ".join(printed(render_analysis_summary([run]), 80)).split())
    assert "p99 2.1 ms vs 6.4 ms" in text
    assert "LLR 1.2 of 2.9 to decide (successful); ~800 more requests" in text
