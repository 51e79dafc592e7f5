"""Regression tests of issue 14: every spec value is checked by type and range, never coerced.

YAML gives booleans, infinities and NaN as easily as numbers; before, ``replicas: true`` became 1 and
``progressDeadlineSeconds: .inf`` reached the CLI's JSON encoder and crashed it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gapless.core.errors import SpecError
from gapless.spec.load import parse_rollout

BASE = """apiVersion: gapless.dev/v1alpha1
kind: Rollout
metadata: {{name: web{meta}}}
spec:
  listen: 127.0.0.1:8000
  template:
    command: [python, app.py]
    {template}
  {spec}
"""


def _doc(spec: str = "", template: str = "", meta: str = "") -> str:
    return BASE.format(spec=spec, template=template, meta=meta)


@pytest.mark.parametrize(
    ("spec", "template", "meta", "path"),
    [
        ("replicas: true", "", "", "spec.replicas"),
        ("replicas: '3'", "", "", "spec.replicas"),
        ("replicas: 3.5", "", "", "spec.replicas"),
        ("replicas: 99999999999999999999999", "", "", "spec.replicas"),
        ("paused: 1", "", "", "spec.paused"),
        ("progressDeadlineSeconds: .inf", "", "", "spec.progressDeadlineSeconds"),
        ("progressDeadlineSeconds: .nan", "", "", "spec.progressDeadlineSeconds"),
        ("minReadySeconds: 1.0e+300", "", "", "spec.minReadySeconds"),
        ("revisionHistoryLimit: false", "", "", "spec.revisionHistoryLimit"),
        (
            "strategy: {canary: {steps: [{setWeight: true}]}}",
            "",
            "",
            "spec.strategy.canary.steps.0.setWeight",
        ),
        (
            "strategy: {canary: {steps: [{pause: {duration: .inf}}]}}",
            "",
            "",
            "spec.strategy.canary.steps.0.pause.duration",
        ),
        (
            "strategy: {rollingUpdate: {maxSurge: 100000000000000000000}}",
            "",
            "",
            "spec.strategy.rollingUpdate.maxSurge",
        ),
        ("", "terminationGracePeriodSeconds: .inf", "", "spec.template.terminationGracePeriodSeconds"),
        (
            "",
            "readinessProbe: {tcpSocket: {}, periodSeconds: .inf}",
            "",
            "spec.template.readinessProbe.periodSeconds",
        ),
        (
            "",
            "readinessProbe: {tcpSocket: {}, failureThreshold: true}",
            "",
            "spec.template.readinessProbe.failureThreshold",
        ),
        ("", "env: {'A B': x}", "", "spec.template.env"),
        ("", "env: {A: .inf}", "", "spec.template.env"),
        (
            "",
            "readinessProbe: {httpGet: {httpHeaders: [{name: 'X\\r\\nY', value: v}]}}",
            "",
            "spec.template.readinessProbe.httpGet.httpHeaders.0.name",
        ),
        (
            "",
            'readinessProbe: {httpGet: {httpHeaders: [{name: X, value: "a\\r\\nSet-Cookie: b"}]}}',
            "",
            "spec.template.readinessProbe.httpGet.httpHeaders.0.value",
        ),
        ("", "", ", labels: {'a b': x}", "metadata.labels"),
    ],
)
def test_values_of_the_wrong_type_or_range_are_refused_by_field(
    spec: str, template: str, meta: str, path: str
) -> None:
    """A bool for a number, a string for an int, an infinity, NaN or a name outside its character set is a problem naming the field."""
    with pytest.raises(SpecError) as e:
        parse_rollout(_doc(spec, template, meta))
    assert [p.path for p in e.value.problems] == [path], e.value.problems


def test_well_typed_values_still_load() -> None:
    """Numbers, durations, percentages and names of the usual kinds are accepted as before."""
    r = parse_rollout(
        _doc(
            "replicas: 3\n  progressDeadlineSeconds: 120\n  minReadySeconds: 0.5\n"
            "  strategy: {canary: {steps: [{setWeight: 20}, {pause: {duration: 30s}}], maxSurge: '25%'}}",
            "env: {PORT_HINT: 8000, RATIO: 0.5, my.var: x}",
            ", labels: {app.kubernetes.io/name: web}",
        )
    )
    assert r.spec.replicas == 3
    assert r.spec.template.env == {"PORT_HINT": "8000", "RATIO": "0.5", "my.var": "x"}


def test_cli_infinite_deadline_exits_2_naming_the_field(tmp_path: Path) -> None:
    """``progressDeadlineSeconds: .inf`` makes ``gapless apply`` exit 2 with the field named, not a traceback."""
    spec = tmp_path / "web.yaml"
    spec.write_text(_doc("progressDeadlineSeconds: .inf"))
    r = subprocess.run(
        [sys.executable, "-m", "gapless", "apply", "-f", str(spec), "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert "spec.progressDeadlineSeconds" in r.stderr
    assert "Traceback" not in r.stderr
