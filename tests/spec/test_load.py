"""The Rollout spec: defaults follow Kubernetes, and every problem of a bad file is named by its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapless.core.errors import SpecError
from gapless.spec import load_rollout, parse_rollout, template_hash

GOOD = """
apiVersion: gapless.dev/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  listen: 127.0.0.1:8080
  template:
    command: [python, app.py, --port, "${PORT}"]
    readinessProbe: {httpGet: {path: /healthz}, periodSeconds: 1}
"""


def test_defaults_follow_kubernetes() -> None:
    """Unset fields take the Kubernetes Deployment defaults."""
    r = parse_rollout(GOOD)
    s = r.spec
    assert (s.replicas, s.paused, s.min_ready_seconds) == (4, False, 0)
    assert (s.progress_deadline_seconds, s.revision_history_limit) == (600, 10)
    assert s.template.termination_grace_period_seconds == 30
    assert s.strategy.kind == "RollingUpdate"
    assert s.strategy.surge_bounds == ("25%", "25%")
    p = s.template.readiness_probe
    assert p is not None
    assert (p.initial_delay_seconds, p.timeout_seconds, p.success_threshold, p.failure_threshold) == (
        0,
        1,
        1,
        3,
    )


def test_template_hash_ignores_explicit_defaults_and_scaling() -> None:
    """Writing a default explicitly or changing replicas keeps the revision; changing the template does not."""
    a = parse_rollout(GOOD)
    b = parse_rollout(
        GOOD.replace("replicas: 4", "replicas: 9").replace(
            "periodSeconds: 1", "periodSeconds: 1, failureThreshold: 3"
        )
    )
    c = parse_rollout(GOOD.replace("app.py", "app2.py"))
    assert template_hash(a.spec.template) == template_hash(b.spec.template)
    assert template_hash(a.spec.template) != template_hash(c.spec.template)


def test_env_accepts_mapping_and_kubernetes_list() -> None:
    """Both env forms give the same variables, numbers as strings."""
    a = parse_rollout(GOOD.replace("    readinessProbe", "    env: {A: 1, B: x}\n    readinessProbe"))
    b = parse_rollout(
        GOOD.replace(
            "    readinessProbe", "    env: [{name: A, value: '1'}, {name: B, value: x}]\n    readinessProbe"
        )
    )
    assert a.spec.template.env == b.spec.template.env == {"A": "1", "B": "x"}


BAD = [
    ("maxSurge: abc", "spec.strategy.rollingUpdate.maxSurge"),
    ("maxSurge: -1", "spec.strategy.rollingUpdate.maxSurge"),
    ("maxSurge: 0\n      maxUnavailable: 0%", "spec.strategy.rollingUpdate.maxUnavailable"),
    ("maxSurge: 1\n      maxUnavialable: 1", "spec.strategy.rollingUpdate.maxUnavialable"),
]


@pytest.mark.parametrize(("fragment", "path"), BAD)
def test_bad_rolling_update_names_field(fragment: str, path: str) -> None:
    """A bad strategy value is reported with its full field path."""
    text = GOOD + "  strategy:\n    rollingUpdate:\n      " + fragment + "\n"
    with pytest.raises(SpecError) as e:
        parse_rollout(text)
    assert any(p.path == path for p in e.value.problems), e.value.problems


MALFORMED = [
    ("kind: Rollout", "kind: Deployment", "kind"),
    ("apiVersion: gapless.dev/v1alpha1", "apiVersion: v1", "apiVersion"),
    ("name: shop", "name: Shop_1", "metadata.name"),
    ("replicas: 4", "replicas: -2", "spec.replicas"),
    ("replicas: 4", "replicas: four", "spec.replicas"),
    ("listen: 127.0.0.1:8080", "listen: 8080", "spec.listen"),
    ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:99999", "spec.listen"),
    ('command: [python, app.py, --port, "${PORT}"]', "command: []", "spec.template.command"),
    ('command: [python, app.py, --port, "${PORT}"]', "command: python app.py", "spec.template.command"),
    ("{httpGet: {path: /healthz}, periodSeconds: 1}", "{periodSeconds: 1}", "spec.template.readinessProbe"),
    (
        "{httpGet: {path: /healthz}, periodSeconds: 1}",
        "{httpGet: {path: healthz}}",
        "spec.template.readinessProbe.httpGet.path",
    ),
    ("periodSeconds: 1", "periodSeconds: 0", "spec.template.readinessProbe.periodSeconds"),
    ("periodSeconds: 1", "periodSecs: 1", "spec.template.readinessProbe.periodSecs"),
    ("  replicas: 4", "  replicas: 4\n  progressDeadlineSeconds: 0", "spec.progressDeadlineSeconds"),
    ("  replicas: 4", "  replicas: 4\n  paused: maybe", "spec.paused"),
    ("metadata: {name: shop}\n", "", "metadata"),
]


@pytest.mark.parametrize(("old", "new", "path"), MALFORMED)
def test_malformed_specs_name_the_field(old: str, new: str, path: str) -> None:
    """Each malformed spec is rejected with a problem that names the offending field."""
    assert old in GOOD
    with pytest.raises(SpecError) as e:
        parse_rollout(GOOD.replace(old, new, 1))
    assert any(p.path == path for p in e.value.problems), e.value.problems


def test_every_problem_reported_at_once() -> None:
    """Several problems in one file are all reported, not only the first."""
    text = GOOD.replace("replicas: 4", "replicas: -1").replace("listen: 127.0.0.1:8080", "listen: nope")
    text += "  strategy:\n    rollingUpdate: {maxSurge: x}\n"
    with pytest.raises(SpecError) as e:
        parse_rollout(text)
    paths = {p.path for p in e.value.problems}
    assert {"spec.replicas", "spec.listen", "spec.strategy.rollingUpdate.maxSurge"} <= paths


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    """Broken YAML names its line; a missing file is a spec error, not a crash."""
    with pytest.raises(SpecError, match="line 2"):
        parse_rollout("a: b\n  c: : d\n")
    with pytest.raises(SpecError, match="cannot read file"):
        load_rollout(tmp_path / "missing.yaml")
