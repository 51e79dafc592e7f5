"""What a person sees at an 80-column terminal during a canary under analysis, from the real CLI."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest
import yaml

from tests.e2e.harness import Gapless, Load, api, rollout_doc, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow

NAME = "checkout-payments-eu"
# Longer names are not yet possible here: the router's unix socket path would pass the kernel's limit.


async def cli_at(g: Gapless, width: int, *args: str) -> list[str]:
    """The lines a CLI command prints on a terminal ``width`` columns wide."""
    env = g.env() | {"COLUMNS": str(width)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gapless",
        *args,
        "--state-dir",
        str(g.state_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()


def last_outlook(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    for run in runs:
        for measurements in (run.get("measurements") or {}).values():
            for m in reversed(measurements):
                if "outlook" in (m.get("value") or {}):
                    return dict(m["value"]["outlook"])
    return None


async def test_status_and_analysis_fit_80_columns_with_units_and_an_outlook(g: Gapless) -> None:
    """During a sequential analysis: every line fits 80 columns, ids are shortened in the middle,
    latencies and rates carry units, and the analysis shows how far it is from a decision."""
    port = free_port()
    template = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "errors"},
        "spec": {
            "metrics": [
                {
                    "name": "error-rate",
                    "provider": {"builtin": {}},
                    "interval": "1s",
                    "count": 120,
                    "judge": {"sequential": {"latency": False, "errorRateFloor": None}},
                }
            ]
        },
    }
    strategy = {
        "canary": {"steps": [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "errors"}]}}]}
    }
    args = ("--error-rate", "0.01")
    first = rollout_doc(NAME, port, "v1", strategy=strategy, replicas=2, app_args=args)
    path = g.specs / "v1.yaml"
    path.write_text(yaml.safe_dump_all([template, first]))
    code, out, err = await g.acli("up", "-f", str(path))
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=200)
    try:
        second = rollout_doc(NAME, port, "v2", strategy=strategy, replicas=2, app_args=args)
        code, out, err = await g.acli("apply", "-f", str(g.write(second)))
        assert code == 0, out + err
        deadline = time.monotonic() + 60
        ahead = None
        while time.monotonic() < deadline:
            runs = (await api(g, "GET", f"/api/v1/rollouts/{NAME}/analysis"))["items"]
            ahead = last_outlook(runs)
            if ahead is not None and ahead["llr"] != 0:
                break
            await asyncio.sleep(0.5)
        assert ahead is not None, runs
        assert ahead["bound"] > 0
        assert ahead["decided"] or ahead["remainingRequests"] is None or ahead["remainingRequests"] > 0

        await wait_for(g, NAME, lambda st: bool((st["strategy"] or {}).get("analysis")))
        st = await g.status(NAME)
        status = await cli_at(g, 80, "status", NAME)
        analysis = await cli_at(g, 80, "analysis", NAME)
    finally:
        await load.stop()
    print("\n" + "\n".join(status) + "\n\n" + "\n".join(analysis))
    for line in status + analysis:
        assert len(line) <= 80, line
    text = "\n".join(status)
    assert f"{NAME[:5]}" in text
    assert "…" in text  # 34-character instance ids, shortened in the middle beside eight columns
    for i in st["instances"]:  # rich would crop a line that is too wide: nothing may be lost
        assert f"{i['id'][:8]}" in text
        assert str(i["port"]) in text
    shown = " ".join(" ".join(analysis).split())
    assert "LLR" in shown
    assert " ms vs " in shown or " µs vs " in shown  # latencies with their unit (µs on a quick machine)
    assert "% vs " in shown
    assert "0.00" not in shown.replace("0.00%", "")  # no bare fractions of a second
