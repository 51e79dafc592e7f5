"""From template models to judge configurations: same fields, same defaults, conditions checked early."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.alias_generators import to_snake

from gapless.analysis.errors import ExpressionError
from gapless.analysis.from_spec import conditions_config, judge_config, template_problems
from gapless.analysis.judges import CompareToBaseline, MemoryLeak, Threshold, conditions
from gapless.analysis.measurements import Measurement
from gapless.analysis.sequential import SequentialConfig
from gapless.spec.analysis import (
    AnalysisTemplate,
    CompareToBaselineJudge,
    Judge,
    MemoryLeakJudge,
    Metric,
    SequentialJudge,
    ThresholdJudge,
    substitute,
)
from gapless.spec.load import validate_template

PAIRS: list[tuple[type[BaseModel], type, str]] = [
    (ThresholdJudge, Threshold, "threshold"),
    (CompareToBaselineJudge, CompareToBaseline, "compare_to_baseline"),
    (MemoryLeakJudge, MemoryLeak, "memory_leak"),
    (SequentialJudge, SequentialConfig, "sequential"),
]


@pytest.mark.parametrize(("model", "config", "field"), PAIRS)
def test_spec_judges_mirror_the_dataclasses(model: type[BaseModel], config: type, field: str) -> None:
    """Every dataclass field has a spec field of the same name, and nothing more."""
    assert set(model.model_fields) == {f.name for f in dataclasses.fields(config)}
    assert field in Judge.model_fields


DEFAULT_JUDGES: list[tuple[dict[str, Any], object]] = [
    ({"threshold": {"maxErrorRate": 0.01}}, Threshold(max_error_rate=0.01)),
    ({"compareToBaseline": {}}, CompareToBaseline()),
    ({"memoryLeak": {}}, MemoryLeak()),
    ({"sequential": {}}, SequentialConfig()),
]


@pytest.mark.parametrize(("judge", "expected"), DEFAULT_JUDGES)
def test_judge_config_defaults_equal_the_dataclass_defaults(
    judge: dict[str, object], expected: object
) -> None:
    """An empty judge in YAML is the dataclass with its own defaults."""
    assert judge_config(Judge.model_validate(judge)) == expected


GIVEN_JUDGES: list[tuple[dict[str, Any], object]] = [
    (
        {
            "threshold": {
                "minRequests": 5,
                "maxErrorRate": 0.02,
                "maxP50Seconds": "100ms",
                "maxP95Seconds": 0.3,
                "maxP99Seconds": "1s",
                "maxRssBytes": 1 << 30,
                "maxCpuCores": 1.5,
            }
        },
        Threshold(5, 0.02, 0.1, 0.3, 1.0, 1 << 30, 1.5),
    ),
    (
        {
            "compareToBaseline": {
                "minRequests": 50,
                "maxErrorRateRatio": None,
                "errorRateFloor": 0.01,
                "latencyQuantile": 0.95,
                "maxLatencyIncreaseSeconds": "50ms",
                "minCounterRatios": {"orders_total": 0.8},
            }
        },
        CompareToBaseline(50, None, 0.01, 0.95, 0.05, {"orders_total": 0.8}),
    ),
    (
        {
            "memoryLeak": {
                "toleranceBytesPerSecond": 4096,
                "noiseZ": 3,
                "minSamples": 20,
                "minDurationSeconds": "10m",
            }
        },
        MemoryLeak(4096, 3, 20, 600),
    ),
    (
        {
            "sequential": {
                "alpha": 0.01,
                "beta": 0.1,
                "tolerance": 0,
                "margin": 1,
                "errors": False,
                "latency": True,
                "slowQuantile": 0.9,
                "slowSeconds": "250ms",
                "minBaselineForSlow": 50,
                "errorRateFloor": None,
                "maxCanaryRequests": 10_000,
            }
        },
        SequentialConfig(0.01, 0.1, 0, 1, False, True, 0.9, 0.25, 50, None, 10_000),
    ),
    ({"sequential": {"latency": False}}, SequentialConfig(latency=False)),
]


@pytest.mark.parametrize(("judge", "expected"), GIVEN_JUDGES)
def test_judge_config_carries_every_field(judge: dict[str, object], expected: object) -> None:
    """Every field given in YAML (durations as text, nulls switching checks off) reaches the dataclass."""
    config = judge_config(Judge.model_validate(judge))
    assert config == expected
    assert type(config) is type(expected)


@pytest.mark.parametrize(("model", "config", "field"), PAIRS)
def test_every_field_is_tested_with_a_non_default(model: type[BaseModel], config: type, field: str) -> None:
    """The table above sets every field to a value other than its default (so a dropped field fails)."""
    del model
    key = to_camel_key(field)
    rows = [j[key] for j, _ in GIVEN_JUDGES if key in j]
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    changed = {
        to_snake(k)
        for row in rows
        if isinstance(row, dict)
        for k, v in row.items()
        if v != defaults[to_snake(k)]
    }
    assert changed == set(defaults)


def to_camel_key(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


TEMPLATE: dict[str, Any] = {
    "apiVersion": "gapless.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "t"},
    "spec": {
        "args": [{"name": "limit", "value": "0.01"}],
        "metrics": [
            {
                "name": "errors",
                "provider": {"builtin": {}},
                "successCondition": "result.error_rate < {{ args.limit }}",
            }
        ],
    },
}


def metric(**fields: object) -> Metric:
    return Metric.model_validate({"name": "m", "provider": {"builtin": {}}, **fields})


def test_conditions_config() -> None:
    """No conditions give None; given ones are compiled; a bad one raises with its position."""
    assert conditions_config(metric(judge={"sequential": {}})) is None
    config = conditions_config(metric(successCondition="result.requests > args.n"), {"n": 5})
    assert config is not None
    assert config.success is not None
    assert config.failure is None
    assert config.args == {"n": 5}
    busy = Measurement(revision="canary", start=0, end=10, requests=10)
    assert conditions(config, busy).phase == "successful"
    assert conditions(config, Measurement(revision="canary", start=0, end=10, requests=3)).phase == "failed"
    with pytest.raises(ExpressionError) as e:
        conditions_config(metric(failureCondition="result.errors >> 1"))
    assert e.value.position == 15


def test_substituted_template_runs_its_conditions() -> None:
    """After substitution the condition compiles and judges with the value the rollout gave."""
    t = substitute(validate_template(TEMPLATE), {"limit": "0.2"})
    config = conditions_config(t.spec.metrics[0])
    assert config is not None
    window = Measurement(revision="canary", start=0, end=10, requests=100, errors=10)
    assert conditions(config, window).phase == "successful"  # 10% < 20%
    strict = conditions_config(substitute(validate_template(TEMPLATE), {}).spec.metrics[0])
    assert strict is not None
    assert conditions(strict, window).phase == "failed"  # 10% >= the default 1%


def with_conditions(success: str | None = None, failure: str | None = None) -> AnalysisTemplate:
    """TEMPLATE's metric, then metric 1 with these conditions (and the args ``a`` and ``limit``)."""
    data = validate_template(TEMPLATE).to_document()
    second: dict[str, object] = {"name": "m", "provider": {"builtin": {}}}
    if success is not None:
        second["successCondition"] = success
    if failure is not None:
        second["failureCondition"] = failure
    data["spec"]["args"] = [{"name": "a"}, {"name": "limit"}]
    data["spec"]["metrics"].append(second)
    return validate_template(data)


PROBLEMS = [
    ("result.error_rate < 0.01", None, []),
    ("result.p99 < {{args.a}}", "result.p99 > 2 * {{ args.a }}", []),
    # The column is that of the text as written, placeholders included.
    (
        "result.p99 < {{args.a}} and and",
        None,
        [("spec.metrics.1.successCondition", "(at column 29)")],
    ),
    (
        None,
        "result.p99 = 1",
        [("spec.metrics.1.failureCondition", "'=' is not an operator; use '==' to compare (at column 12)")],
    ),
    (
        "result.x ** 2",
        "result.y <",
        [
            ("spec.metrics.1.successCondition", "'**' is not supported (at column 10)"),
            ("spec.metrics.1.failureCondition", "(at column 11)"),
        ],
    ),
    (
        "__import__('os')",
        None,
        [("spec.metrics.1.successCondition", "names starting with '__' are not allowed")],
    ),
    # An error on a placeholder may depend on its value: it is left for the check after substitution.
    ("result.{{args.a}} > 1", None, []),
    ("result.p99 {{args.a}} 1", None, []),
    ("{{args.a}}(1) > 0", None, []),
]


@pytest.mark.parametrize(("success", "failure", "expected"), PROBLEMS)
def test_template_problems_locate_bad_conditions(
    success: str | None, failure: str | None, expected: list[tuple[str, str]]
) -> None:
    """Conditions that do not compile are problems at their field, with the column and a caret."""
    problems = template_problems(with_conditions(success, failure))
    assert [p.path for p in problems] == [path for path, _ in expected]
    for problem, (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.message, problem.message


def test_template_problem_caret_points_into_the_written_text() -> None:
    """The caret line is drawn under the condition as the user wrote it, not the padded copy."""
    (problem,) = template_problems(with_conditions("{{args.a}} < 1 )"))
    assert problem.message.splitlines()[1:] == ["  {{args.a}} < 1 )", "                 ^"]


def test_template_problems_report_a_judge_the_analysis_layer_refuses() -> None:
    """A judge that passed spec validation by other means but is refused by the dataclass is a problem."""
    t = validate_template(TEMPLATE)
    bad = Judge.model_construct(sequential=SequentialJudge.model_construct(tolerance=0.9, margin=0.5))
    m = t.spec.metrics[0].model_copy(update={"judge": bad})
    broken = t.model_copy(update={"spec": t.spec.model_copy(update={"metrics": [m]})})
    (problem,) = template_problems(broken)
    assert problem.path == "spec.metrics.0.judge.sequential"
    assert "tolerance <= margin" in problem.message
    assert template_problems(t) == []
