"""The dashboard pointed at a real cluster (``gapless dashboard --context C -n NS``), in headless Chromium.

A canary waits at an indefinite pause on the real apiserver with the operator running; the dashboard
runs as a real process of the CLI. The page must show, from the cluster's objects alone, the rollout in
the list, its phase, steps, weights, pods, events (with the local types) and analysis, follow a
``gapless promote --full`` live, and act through its buttons as the CLI verbs do (the same code path), with the dashboard's token.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_dashboard import _browser, _require_chromium, _screenshot, _wait_js
from tests.k8s.cluster import Cluster
from tests.k8s.operator import OperatorProcess, k8s_rollout, namespace
from tests.k8s.test_cli_cluster import gapless, write
from tests.k8s.test_crds import install
from tests.ports import free_port


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    install(cluster)
    return cluster


class Dashboard:
    """``gapless dashboard --context test -n NS --listen ...`` as a real process; its URL and token."""

    def __init__(self, cluster: Cluster, ns: str, log: Path) -> None:
        self.listen = f"127.0.0.1:{free_port()}"
        self.log = log
        env = os.environ | {"KUBECONFIG": str(cluster.kubeconfig), "COLUMNS": "200", "NO_COLOR": "1"}
        args = ["dashboard", "--context", "test", "-n", ns, "--listen", self.listen]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gapless", *args],
                stderr=out,
                stdout=out,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not (m := re.search(r"log in with the token (\S+)", log.read_text())):
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        self.token = m.group(1)
        self.url = f"http://{self.listen}/"

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


@pytest.fixture
def setup(crds: Cluster, tmp_path: Path) -> Iterator[tuple[str, OperatorProcess]]:
    ns = namespace(crds, "dash-cluster")
    op = OperatorProcess(crds.kubeconfig, namespace=ns, log=tmp_path / "operator.log")
    yield ns, op
    op.stop()


def _annotations(cluster: Cluster, ns: str, name: str) -> dict[str, str]:
    with cluster.client() as c:
        got = c.get(f"/apis/gapless.dev/v1alpha1/namespaces/{ns}/rollouts/{name}").json()
    return dict(got["metadata"].get("annotations") or {})


def _click(driver: Any, action: str, timeout: float = 60) -> None:
    """Click an action's button (confirmed) and wait until the page says it is done."""
    from selenium.webdriver.common.by import By

    driver.execute_script("document.getElementById('action-result').textContent = ''")
    driver.find_element(By.CSS_SELECTOR, f"button[data-action='{action}']").click()
    said = _wait_js(
        driver,
        f"document.getElementById('action-result').textContent.startsWith('{action}:') && "
        "document.getElementById('action-result').textContent",
        timeout,
    )
    assert said == f"{action}: done", said


def _has_event(driver: Any, kind: str) -> str:
    return f"document.querySelector('#events li[data-type=\"{kind}\"]') !== null"


def test_dashboard_of_a_cluster_in_chromium(
    crds: Cluster, setup: tuple[str, OperatorProcess], tmp_path: Path
) -> None:
    """The list and a canary's page come from the cluster (phase, steps, weights, pods, events with
    revision numbers, analysis) and follow it live; its buttons act as the CLI verbs do (promote moves the
    canary on, pause and resume, abort brings traffic back, undo), each recorded as a gapless event."""
    _require_chromium()
    ns, op = setup
    kc, on = crds.kubeconfig, ("--context", "test", "-n", ns)
    strategy = {
        "canary": {
            "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}],
            "abortScaleDownDelaySeconds": 0,
        }
    }
    r = gapless(
        "apply",
        "-f",
        str(write(tmp_path, k8s_rollout("can", "v1", replicas=2, strategy=strategy))),
        *on,
        "--wait",
        kubeconfig=kc,
    )
    assert r.returncode == 0, r.stderr + op.tail()
    r = gapless(
        "apply",
        "-f",
        str(write(tmp_path, k8s_rollout("can", "v2", replicas=2, strategy=strategy))),
        *on,
        kubeconfig=kc,
    )
    assert r.returncode == 0, r.stderr
    dash = Dashboard(crds, ns, tmp_path / "dashboard.log")
    try:
        with httpx.Client(base_url=dash.url, timeout=60) as c:
            assert c.get("/api/v1/rollouts").status_code == 401
            assert c.post("/api/v1/rollouts/can/promote", json={}).status_code == 401
            headers = {"Authorization": f"Bearer {dash.token}"}
            bad = c.post("/api/v1/rollouts/can/promote", json={"full": "yes"}, headers=headers)
            assert bad.status_code == 400, bad.text
            assert bad.json()["problems"] == [{"path": "full", "message": "must be true or false"}]
            bad = c.post("/api/v1/rollouts/can/undo", json={"toRevision": 0}, headers=headers)
            assert bad.status_code == 400, bad.text
            assert bad.json()["problems"][0]["path"] == "toRevision"
            assert c.post("/api/v1/rollouts/nothere/abort", headers=headers).status_code == 404
            assert c.post("/api/v1/rollouts/can/scale", headers=headers).status_code == 405
            assert c.get("/api/v1/rollouts/nothere", headers=headers).status_code == 404
            assert "gapless.dev/promote" not in _annotations(crds, ns, "can")  # refused: nothing written
            assert c.get("/api/v1/dashboard/session", headers=headers).json()["readOnly"] is False
        driver = _browser()
        try:
            from selenium.webdriver.common.by import By

            driver.get(dash.url)
            driver.find_element(By.ID, "token").send_keys(dash.token)
            driver.find_element(By.ID, "login-button").click()
            _wait_js(driver, "document.querySelector('#rollouts tr[data-rollout=\"can\"]') !== null", 30)
            _wait_js(
                driver,
                "document.querySelector('#rollouts tr[data-rollout=\"can\"] .phase-cell').textContent === 'Paused'",
                60,
            )
            _screenshot(driver, tmp_path, "cluster-list")
            driver.get(dash.url + "#/rollouts/can")
            _wait_js(driver, "document.getElementById('r-phase').textContent === 'Paused'", 30)
            current = "document.querySelector('#steps li.current').dataset.step"
            assert driver.execute_script("return " + current) == "1"
            assert driver.execute_script(
                "return document.querySelector('#steps li.current').textContent"
            ).endswith("waiting for promote")
            _wait_js(driver, "document.querySelectorAll('#instances tr[data-instance]').length === 3", 30)
            split = _wait_js(  # no traffic router: the pods' ratio, 2 of revision 1 and 1 of revision 2
                driver,
                "Array.from(document.querySelectorAll('#weights-bar div')).map(d => d.textContent).join(',')",
            )
            assert split == "rev 1 67%,rev 2 33%"
            events = _wait_js(
                driver,
                "Array.from(document.querySelectorAll('#events li')).map(l => l.dataset.type).join(',')",
            )
            assert events.split(",")[-2:] == ["RolloutComplete", "RevisionCreated"]  # newest first
            _wait_js(driver, _has_event(driver, "StepReached"))
            _wait_js(driver, "document.getElementById('analysis').textContent === 'no analysis runs'")
            _screenshot(driver, tmp_path, "cluster-canary")
            driver.execute_script("window.confirm = () => true")

            _click(driver, "promote")  # past the first pause, on to the second: 75% of 2 pods is 2
            assert _annotations(crds, ns, "can")["gapless.dev/promote"].startswith(
                driver.execute_script("return state.status.currentRevisionHash") or "?"
            )
            _wait_js(driver, f"{current} === '3'", 60)
            _wait_js(driver, "document.querySelectorAll('#instances tr[data-instance]').length === 4", 60)
            _wait_js(driver, _has_event(driver, "PromoteRequested"))
            _screenshot(driver, tmp_path, "cluster-promoted-step")

            _click(driver, "pause")
            _wait_js(driver, _has_event(driver, "Paused"), 30)
            _click(driver, "resume")
            _wait_js(driver, _has_event(driver, "Resumed"), 30)

            _click(driver, "abort")  # all traffic back on revision 1, the canary's pods removed
            _wait_js(driver, "document.getElementById('r-phase').textContent === 'Degraded'", 60)
            _wait_js(driver, _has_event(driver, "Aborted"))
            _wait_js(
                driver,
                "Array.from(document.querySelectorAll('#instances tr[data-instance]'))"
                ".filter(t => !t.textContent.includes('terminating')).length === 2",
                60,
            )
            with crds.client() as k:
                selector = k.get(f"/api/v1/namespaces/{ns}/services/can-stable").json()["spec"]["selector"]
                sets = k.get(
                    f"/apis/apps/v1/namespaces/{ns}/replicasets",
                    params={"labelSelector": "gapless.dev/rollout=can"},
                ).json()["items"]
            sizes = {rs["metadata"]["labels"]["gapless.dev/revision"]: rs["spec"]["replicas"] for rs in sets}
            assert sizes[selector["gapless.dev/revision"]] == 2
            assert sorted(sizes.values()) == [0, 2], sizes
            _screenshot(driver, tmp_path, "cluster-aborted")

            r = gapless("retry", "can", *on, kubeconfig=kc)
            assert r.returncode == 0, r.stderr + op.tail()
            r = gapless("promote", "can", "--full", *on, kubeconfig=kc)
            assert r.returncode == 0, r.stderr + op.tail()
            _wait_js(driver, "document.getElementById('r-phase').textContent === 'Healthy'", 60)
            _wait_js(driver, "document.querySelectorAll('#instances tr[data-instance]').length === 2", 60)
            _wait_js(driver, _has_event(driver, "Promoted"))
            _screenshot(driver, tmp_path, "cluster-promoted")

            _click(driver, "undo")  # back to v1's template: its ReplicaSet again, as revision 3
            _wait_js(driver, "state.status && state.status.currentRevision === 3", 60)
        finally:
            driver.quit()
    finally:
        assert dash.stop() == 0, dash.log.read_text()


@pytest.mark.parametrize(
    ("weights", "current", "stable", "split"),
    [
        ("canary 33% by replica ratio (1 of 3 pods)", 2, 1, {"1": 67, "2": 33}),
        ("stable 75 / canary 25 + header route", 4, 3, {"3": 75, "4": 25}),
        ("active 3, preview 4", 4, 3, {"3": 100}),
        ("by replica count", 2, 1, None),
        ("canary 0% by replica ratio (0 of 2 pods)", 1, 1, None),
    ],
)
def test_weights_in_force_reads_the_operators_status(
    weights: str, current: int, stable: int, split: dict[str, int] | None
) -> None:
    """The page's weights come from what the operator wrote: route weights, pod ratio, active revision."""
    from gapless.cli.kube_dashboard import weights_in_force

    status = {"weights": weights, "currentRevision": current, "stableRevision": stable}
    assert weights_in_force(status) == split
