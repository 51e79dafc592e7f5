"""``spec.router.type`` and ``binary``: defaults, strict values, and what apply refuses for HAProxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gapless.controller.haproxy import haproxy_problems
from gapless.controller.routing import router_for
from gapless.controller.traffic import RouterChoice
from gapless.spec.models import RolloutSpec
from gapless.spec.router import DEFAULT_LATENCY_SAMPLING
from tests.haproxy.binary import require_haproxy
from tests.haproxy.test_apply import fake_old_haproxy


def spec(router: dict[str, Any], strategy: dict[str, Any] | None = None) -> RolloutSpec:
    doc: dict[str, Any] = {"listen": "127.0.0.1:8080", "template": {"command": ["x"]}, "router": router}
    if strategy is not None:
        doc["strategy"] = strategy
    return RolloutSpec.model_validate(doc)


def test_the_builtin_router_is_the_default() -> None:
    """Without ``type`` a rollout keeps the built-in router and nothing about HAProxy is checked."""
    s = spec({})
    assert router_for(s) == RouterChoice(type="builtin", binary=None)
    assert haproxy_problems(s) == []


def test_unknown_types_and_empty_binaries_are_refused() -> None:
    """``type`` is builtin or haproxy; ``binary`` is a non-empty string."""
    with pytest.raises(ValidationError, match="type"):
        spec({"type": "nginx"})
    with pytest.raises(ValidationError, match="binary"):
        spec({"type": "haproxy", "binary": ""})


def test_haproxy_problems_name_their_fields(tmp_path: Path) -> None:
    """A too old binary, ejection settings, and a route or sticky key HAProxy cannot carry each name their field."""
    require_haproxy()
    assert haproxy_problems(spec({"type": "haproxy"})) == []
    old = str(fake_old_haproxy(tmp_path))
    strategy = {
        "canary": {
            "steps": [
                {"setWeight": 10},
                {"setHeaderRoute": {"match": [{"headerName": "X", "headerValue": {"exact": "1'"}}]}},
            ],
            "trafficRouting": {"stickiness": {"cookie": "u;v"}},
        }
    }
    fine = {
        "canary": {
            "steps": [
                {"setWeight": 10},
                {"setHeaderRoute": {"match": [{"headerName": "X", "headerValue": {"exact": "1"}}]}},
            ],
            "trafficRouting": {"stickiness": {"cookie": "u"}},
        }
    }
    assert haproxy_problems(spec({"type": "haproxy"}, fine)) == []
    found = haproxy_problems(spec({"type": "haproxy", "binary": old, "ejectionSeconds": 3}, strategy))
    assert sorted(p.path for p in found) == [
        "spec.router.binary",
        "spec.router.ejectionSeconds",
        "spec.strategy.canary.steps.1.setHeaderRoute",
        "spec.strategy.canary.trafficRouting.stickiness",
    ]


def test_latency_sampling_is_strict_and_haproxy_only() -> None:
    """``latencySampling`` is an integer >= 1 (default 10), reaches the router choice, and is refused
    naming the field with the built-in router (which times every request)."""
    assert router_for(spec({"type": "haproxy"})).latency_sampling == DEFAULT_LATENCY_SAMPLING == 10
    assert router_for(spec({"type": "haproxy", "latencySampling": 1})).latency_sampling == 1
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValidationError, match="latencySampling"):
            spec({"type": "haproxy", "latencySampling": bad})
    problems = haproxy_problems(spec({"latencySampling": 5}))
    assert [p.path for p in problems] == ["spec.router.latencySampling"]
    assert "haproxy" in problems[0].message
    assert haproxy_problems(spec({})) == []
    # A stored spec dumped with its defaults and read back (as a release's rollout step stores it)
    # names every field; the built-in router's default is not a request for sampling.
    stored = RolloutSpec.model_validate(spec({}).model_dump(by_alias=True))
    assert "latency_sampling" in stored.router.model_fields_set
    assert haproxy_problems(stored) == []
