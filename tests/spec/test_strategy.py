"""Blue-green and canary specs: Argo Rollouts field names, and every bad value named by its path."""

from __future__ import annotations

import pytest

from gapless.core.errors import SpecError
from gapless.spec import parse_rollout

HEAD = """
apiVersion: gapless.dev/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  listen: 127.0.0.1:8080
  template: {command: [app]}
  strategy:
"""


def test_canary_steps_parse() -> None:
    """A full Argo-style canary parses, with durations in seconds."""
    r = parse_rollout(
        HEAD
        + """
    canary:
      steps:
        - setWeight: 5
        - pause: {duration: 10m}
        - setHeaderRoute: {match: [{headerName: X-Internal, headerValue: {exact: "1"}}]}
        - setCanaryScale: {replicas: 2}
        - pause: {}
        - setWeight: 50
        - pause: {duration: 1.5}
      trafficRouting: {stickiness: {cookie: session}}
"""
    )
    c = r.spec.strategy.canary
    assert c is not None
    assert r.spec.strategy.kind == "Canary"
    assert [s.kind for s in c.steps] == [
        "setWeight",
        "pause",
        "setHeaderRoute",
        "setCanaryScale",
        "pause",
        "setWeight",
        "pause",
    ]
    assert c.steps[1].pause is not None
    assert c.steps[1].pause.duration == 600
    assert c.steps[4].pause is not None
    assert c.steps[4].pause.duration is None
    assert c.traffic_routing.stickiness is not None
    assert c.traffic_routing.stickiness.cookie == "session"


def test_blue_green_defaults() -> None:
    """Blue-green defaults follow Argo: auto promotion on, 30 s scale-down delays."""
    r = parse_rollout(HEAD + "    blueGreen: {previewListen: 127.0.0.1:8081}\n")
    bg = r.spec.strategy.blue_green
    assert bg is not None
    assert (bg.auto_promotion_enabled, bg.scale_down_delay_seconds, bg.abort_scale_down_delay_seconds) == (
        True,
        30,
        30,
    )
    assert r.spec.strategy.kind == "BlueGreen"


BAD = [
    ("    canary: {steps: [{setWeigth: 5}]}\n", "spec.strategy.canary.steps.0.setWeigth"),
    ("    canary: {steps: [{setWeight: 101}]}\n", "spec.strategy.canary.steps.0.setWeight"),
    ("    canary: {steps: [{setWeight: -1}]}\n", "spec.strategy.canary.steps.0.setWeight"),
    (
        "    canary: {steps: [{analysis: {templates: [x]}}]}\n",
        "spec.strategy.canary.steps.0.analysis.templates.0",
    ),
    (
        "    canary: {steps: [{analysis: {templates: []}}]}\n",
        "spec.strategy.canary.steps.0.analysis.templates",
    ),
    ("    canary: {steps: [{}]}\n", "spec.strategy.canary.steps.0"),
    ("    canary: {steps: [{pause: {duration: soon}}]}\n", "spec.strategy.canary.steps.0.pause.duration"),
    (
        "    canary: {steps: [{setHeaderRoute: {match: [{headerName: X, headerValue: {regex: '(['}}]}}]}\n",
        "spec.strategy.canary.steps.0.setHeaderRoute.match.0.headerValue.regex",
    ),
    ("    canary: {trafficRouting: {stickiness: {}}}\n", "spec.strategy.canary.trafficRouting.stickiness"),
    ("    blueGreen: {previewListen: 127.0.0.1:8080}\n", "spec.strategy.blueGreen.previewListen"),
    ("    blueGreen: {previewListen: nope}\n", "spec.strategy.blueGreen.previewListen"),
    (
        "    blueGreen: {prePromotionChecks: [{httpGet: {path: x}}]}\n",
        "spec.strategy.blueGreen.prePromotionChecks.0.httpGet.path",
    ),
    ("    blueGreen: {}\n    canary: {}\n", "spec.strategy"),
    ("    type: Canary\n    blueGreen: {}\n", "spec.strategy.type"),
]


@pytest.mark.parametrize(("fragment", "path"), BAD)
def test_bad_strategy_names_the_field(fragment: str, path: str) -> None:
    """Unknown step types, weights outside 0-100, bad regexes and previewListen == listen name their field."""
    with pytest.raises(SpecError) as e:
        parse_rollout(HEAD + fragment)
    assert any(p.path == path for p in e.value.problems), e.value.problems
