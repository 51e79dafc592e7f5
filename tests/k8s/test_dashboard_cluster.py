"""The dashboard pointed at a real cluster (``gapless dashboard --context C -n NS``), in headless Chromium.

A canary waits at an indefinite pause on the real apiserver with the operator running; the dashboard
runs as a real process of the CLI. The page must show, from the cluster's objects alone, the rollout in
the list, its phase, steps, weights, pods, events (with the local types) and analysis, follow a
``gapless promote --full`` live to Healthy, and refuse actions (read-only) naming the CLI verb.
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


def test_dashboard_of_a_cluster_in_chromium(
    crds: Cluster, setup: tuple[str, OperatorProcess], tmp_path: Path
) -> None:
    """The list and a canary's page come from the cluster (phase, steps, weights, pods, events with
    revision numbers, analysis), follow a promotion live, and actions are refused as read-only."""
    _require_chromium()
    ns, op = setup
    kc, on = crds.kubeconfig, ("--context", "test", "-n", ns)
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
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
        with httpx.Client(base_url=dash.url, timeout=10) as c:
            assert c.get("/api/v1/rollouts").status_code == 401
            headers = {"Authorization": f"Bearer {dash.token}"}
            refused = c.post("/api/v1/rollouts/can/promote", json={}, headers=headers)
            assert refused.status_code == 405
            assert refused.json()["error"] == (
                f"this dashboard of a cluster is read-only: use `gapless promote can --context test -n {ns}`"
            )
            assert c.get("/api/v1/rollouts/nothere", headers=headers).status_code == 404
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
            assert (
                driver.execute_script("return document.querySelector('#steps li.current').dataset.step")
                == "1"
            )
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
            _wait_js(driver, "document.querySelector('#events li[data-type=\"StepReached\"]') !== null")
            _wait_js(driver, "document.getElementById('analysis').textContent === 'no analysis runs'")
            _screenshot(driver, tmp_path, "cluster-canary")
            driver.execute_script("window.confirm = () => true")
            driver.find_element(By.CSS_SELECTOR, "button[data-action='promote']").click()
            _wait_js(driver, "document.getElementById('action-result').textContent.includes('read-only')")
            r = gapless("promote", "can", "--full", *on, kubeconfig=kc)
            assert r.returncode == 0, r.stderr + op.tail()
            _wait_js(driver, "document.getElementById('r-phase').textContent === 'Healthy'", 60)
            _wait_js(driver, "document.querySelectorAll('#instances tr[data-instance]').length === 2", 60)
            _wait_js(driver, "document.querySelector('#events li[data-type=\"Promoted\"]') !== null")
            _screenshot(driver, tmp_path, "cluster-promoted")
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
