"""AnalysisTemplates, the rollout fields that name them, args substitution and multi-document files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gapless.analysis.from_spec import template_problems
from gapless.core.errors import SpecError
from gapless.spec import parse_rollout
from gapless.spec.analysis import (
    BUILTIN_ARGS,
    AnalysisTemplate,
    substitute,
)
from gapless.spec.load import (
    load_documents,
    parse_documents,
    validate_template,
)

HEAD = """apiVersion: gapless.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: shop-health}
spec:
"""

FULL = (
    HEAD
    + """  args:
    - name: prometheus
      value: http://127.0.0.1:9090
    - name: max-p99
      value: 0.5
    - name: orders-ratio
  metrics:
    - name: errors
      interval: 10s
      provider: {builtin: {}}
      judge: {sequential: {alpha: 0.01, slowSeconds: 500ms}}
    - name: orders
      provider: {business: {metrics: [orders_total], port: 9100}}
      judge: {compareToBaseline: {minCounterRatios: {orders_total: 0.8}, maxErrorRateRatio: null}}
      failureLimit: 1
    - name: leak
      initialDelay: 1m
      count: 30
      provider: {resource: {}}
      judge: {memoryLeak: {minDurationSeconds: 10m}}
    - name: p99
      dryRun: true
      provider:
        prometheus:
          address: "{{args.prometheus}}"
          query: 'histogram_quantile(0.99, rate(latency_bucket{revision="{{ args.canary }}"}[1m]))'
      successCondition: result < {{args.max-p99}}
      failureCondition: result > 2 * {{args.max-p99}}
"""
)


def template(text: str = FULL) -> AnalysisTemplate:
    documents = parse_documents(text)
    assert len(documents.templates) == 1
    return documents.templates[0]


def metric_template(metric: str, args: str = "") -> str:
    """A template with one metric given as a flow mapping (and optional args as a flow list)."""
    return HEAD + (f"  args: {args}\n" if args else "") + f"  metrics:\n    - {metric}\n"


def test_full_template_parses_with_defaults() -> None:
    """Every provider and judge kind parses; durations are seconds; unset fields take Argo's defaults."""
    t = template()
    assert t.name == "shop-health"
    m = t.spec.metrics
    assert [x.provider.kind for x in m] == ["builtin", "business", "resource", "prometheus"]
    assert [x.judge.kind if x.judge else None for x in m] == [
        "sequential",
        "compareToBaseline",
        "memoryLeak",
        None,
    ]
    errors = m[0]
    assert (errors.interval, errors.count, errors.initial_delay) == (10, None, 0)
    assert (errors.failure_limit, errors.inconclusive_limit, errors.consecutive_error_limit) == (0, 0, 4)
    assert errors.dry_run is False
    assert errors.provider.builtin is not None
    assert errors.provider.builtin.error_classes == ["5xx"]
    assert errors.judge is not None
    assert errors.judge.sequential is not None
    assert (errors.judge.sequential.alpha, errors.judge.sequential.slow_seconds) == (0.01, 0.5)
    business = m[1].provider.business
    assert business is not None
    assert (business.path, business.port, business.timeout) == ("/metrics", 9100, 2)
    assert m[1].judge is not None
    assert m[1].judge.compare_to_baseline is not None
    assert m[1].judge.compare_to_baseline.max_error_rate_ratio is None
    assert (m[2].initial_delay, m[2].count) == (60, 30)
    assert m[2].judge is not None
    assert m[2].judge.memory_leak is not None
    assert m[2].judge.memory_leak.min_duration_seconds == 600
    prom = m[3].provider.prometheus
    assert prom is not None
    assert prom.timeout == 10
    assert m[3].dry_run is True
    # A number given as an arg value is kept as its text.
    assert [(a.name, a.value) for a in t.spec.args] == [
        ("prometheus", "http://127.0.0.1:9090"),
        ("max-p99", "0.5"),
        ("orders-ratio", None),
    ]


@pytest.mark.parametrize("as_written", [False, True])
def test_to_document_round_trips(as_written: bool) -> None:
    """The document validates back to an equal template; an explicit null that switches a check off stays."""
    t = template()
    doc = t.to_document(as_written=as_written)
    assert AnalysisTemplate.model_validate(doc) == t
    compare = doc["spec"]["metrics"][1]["judge"]["compareToBaseline"]
    assert compare["maxErrorRateRatio"] is None
    assert "count" not in doc["spec"]["metrics"][0]  # an unset optional field is left out
    assert ("interval" in doc["spec"]["metrics"][1]) is not as_written
    # Pydantic's own dumps round-trip too (python and JSON modes, with every None kept).
    assert AnalysisTemplate.model_validate(t.model_dump(by_alias=True)) == t
    assert AnalysisTemplate.model_validate(t.model_dump(mode="json")) == t


OK_METRIC = "{name: m, provider: {builtin: {}}, successCondition: result.error_rate < 0.01}"

# (metric as a flow mapping, args, the path of the problem, a fragment of its message)
BAD_TEMPLATES = [
    # names
    ("{name: 1m, provider: {builtin: {}}, successCondition: x}", "", "spec.metrics.0.name", "letter"),
    ("{name: m.x, provider: {builtin: {}}, successCondition: x}", "", "spec.metrics.0.name", "letters"),
    (
        "{name: " + "m" * 64 + ", provider: {builtin: {}}, successCondition: x}",
        "",
        "spec.metrics.0.name",
        "63",
    ),
    (OK_METRIC, "[{name: 9a}]", "spec.args.0.name", "starting with a letter"),
    (OK_METRIC, "[{name: a}, {name: a}]", "spec.args.1.name", "declared twice"),
    (OK_METRIC, "[{name: canary}]", "spec.args.0.name", "supplied by gapless"),
    (OK_METRIC, "[{name: a, value: [1]}]", "spec.args.0.value", ""),
    (OK_METRIC, "[{name: a, default: x}]", "spec.args.0.default", "unknown field"),
    # providers
    (
        "{name: m, provider: {}, successCondition: x}",
        "",
        "spec.metrics.0.provider",
        "builtin, resource, business, prometheus",
    ),
    (
        "{name: m, provider: {builtin: {}, resource: {}}, successCondition: x}",
        "",
        "spec.metrics.0.provider",
        "got 2",
    ),
    (
        "{name: m, provider: {datadog: {}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.datadog",
        "unknown field",
    ),
    (
        "{name: m, provider: {builtin: {errorClasses: []}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.builtin.errorClasses",
        "",
    ),
    (
        "{name: m, provider: {builtin: {errorClasses: [3xx]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.builtin.errorClasses.0",
        "'4xx' or '5xx'",
    ),
    (
        "{name: m, provider: {builtin: {errorClasses: [5xx, 5xx]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.builtin.errorClasses.1",
        "twice",
    ),
    (
        "{name: m, provider: {resource: {pid: 1}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.resource.pid",
        "unknown field",
    ),
    (
        "{name: m, provider: {business: {path: metrics, metrics: [a]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.path",
        "must start with '/'",
    ),
    (
        "{name: m, provider: {business: {port: 0, metrics: [a]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.port",
        "",
    ),
    (
        "{name: m, provider: {business: {port: 65536, metrics: [a]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.port",
        "",
    ),
    (
        "{name: m, provider: {business: {}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.metrics",
        "is required",
    ),
    (
        "{name: m, provider: {business: {metrics: []}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.metrics",
        "",
    ),
    (
        "{name: m, provider: {business: {metrics: [ok, 1bad]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.metrics.1",
        "not a Prometheus metric name",
    ),
    (
        "{name: m, provider: {business: {metrics: [a, a]}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.metrics.1",
        "twice",
    ),
    (
        "{name: m, provider: {business: {metrics: [a], timeout: 0}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.timeout",
        "greater than 0",
    ),
    (
        "{name: m, provider: {business: {metrics: [a], timeout: soon}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.business.timeout",
        "duration",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'ftp://p:9090', query: up}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.address",
        "http:// or https://",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://', query: up}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.address",
        "with a host",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'p:9090', query: up}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.address",
        "http://",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p:99999', query: up}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.address",
        "not a valid URL",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: ''}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.query",
        "",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: "
        + "u" * 10_001
        + "}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.query",
        "10000",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p'}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.query",
        "is required",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: up, timeout: -1}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.timeout",
        "negative",
    ),
    # metric fields
    (
        "{name: m, provider: {builtin: {}}, interval: 0, successCondition: x}",
        "",
        "spec.metrics.0.interval",
        "greater than 0",
    ),
    ("{name: m, provider: {builtin: {}}, count: 0, successCondition: x}", "", "spec.metrics.0.count", ""),
    (
        "{name: m, provider: {builtin: {}}, initialDelay: -1s, successCondition: x}",
        "",
        "spec.metrics.0.initialDelay",
        "",
    ),
    ("{name: m, provider: {builtin: {}}, successCondition: ''}", "", "spec.metrics.0.successCondition", ""),
    (
        "{name: m, provider: {builtin: {}}, failureCondition: " + "x" * 2001 + "}",
        "",
        "spec.metrics.0.failureCondition",
        "2000",
    ),
    (
        "{name: m, provider: {builtin: {}}, failureLimit: -1, successCondition: x}",
        "",
        "spec.metrics.0.failureLimit",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, inconclusiveLimit: -1, successCondition: x}",
        "",
        "spec.metrics.0.inconclusiveLimit",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, consecutiveErrorLimit: -1, successCondition: x}",
        "",
        "spec.metrics.0.consecutiveErrorLimit",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, dryRun: maybe, successCondition: x}",
        "",
        "spec.metrics.0.dryRun",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, sucessCondition: x}",
        "",
        "spec.metrics.0.sucessCondition",
        "unknown field",
    ),
    # what judges a metric, and with which provider
    (
        "{name: m, provider: {builtin: {}}}",
        "",
        "spec.metrics.0",
        "needs a judge, a successCondition or a failureCondition",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: up}}}",
        "",
        "spec.metrics.0",
        "prometheus metric needs a successCondition",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: up}}, successCondition: x, judge: {sequential: {}}}",
        "",
        "spec.metrics.0.judge",
        "cannot have a judge",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {}}, unit: seconds}",
        "",
        "spec.metrics.0.unit",
        "only a prometheus metric takes a unit",
    ),
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: up}}, successCondition: x, unit: hours}",
        "",
        "spec.metrics.0.unit",
        "'seconds', 'milliseconds'",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {memoryLeak: {}}}",
        "",
        "spec.metrics.0.judge.memoryLeak",
        "needs the resource provider, not builtin",
    ),
    (
        "{name: m, provider: {business: {metrics: [a]}}, judge: {memoryLeak: {}}}",
        "",
        "spec.metrics.0.judge.memoryLeak",
        "not business",
    ),
    (
        "{name: m, provider: {resource: {}}, judge: {sequential: {}}}",
        "",
        "spec.metrics.0.judge.sequential",
        "needs the builtin or business provider",
    ),
    (
        "{name: m, provider: {resource: {}}, judge: {compareToBaseline: {}}}",
        "",
        "spec.metrics.0.judge.compareToBaseline",
        "builtin or business",
    ),
    (
        "{name: m, provider: {resource: {}}, judge: {threshold: {maxErrorRate: 0.01}}}",
        "",
        "spec.metrics.0.judge.threshold",
        "maxErrorRate need requests",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {threshold: {maxRssBytes: 1000}}}",
        "",
        "spec.metrics.0.judge.threshold",
        "maxRssBytes need the resource provider",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {compareToBaseline: {minCounterRatios: {orders: 1}}}}",
        "",
        "spec.metrics.0.judge.compareToBaseline.minCounterRatios",
        "business provider",
    ),
    (
        "{name: m, provider: {business: {metrics: [a]}}, judge: {compareToBaseline: {minCounterRatios: {b: 1}}}}",
        "",
        "spec.metrics.0.judge.compareToBaseline.minCounterRatios",
        "'b' is not one of provider.business.metrics",
    ),
    # judges
    (
        "{name: m, provider: {builtin: {}}, judge: {}}",
        "",
        "spec.metrics.0.judge",
        "exactly one of threshold, compareToBaseline, memoryLeak, sequential",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {}, threshold: {maxErrorRate: 0.1}}}",
        "",
        "spec.metrics.0.judge",
        "got 2",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {threshold: {}}}",
        "",
        "spec.metrics.0.judge.threshold",
        "at least one of maxErrorRate",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {threshold: {maxErrorRate: 2}}}",
        "",
        "spec.metrics.0.judge.threshold.maxErrorRate",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {threshold: {maxP99Seconds: fast}}}",
        "",
        "spec.metrics.0.judge.threshold.maxP99Seconds",
        "duration",
    ),
    (
        "{name: m, provider: {resource: {}}, judge: {threshold: {maxCpuCores: 0}}}",
        "",
        "spec.metrics.0.judge.threshold.maxCpuCores",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {compareToBaseline: {latencyQuantile: 1}}}",
        "",
        "spec.metrics.0.judge.compareToBaseline.latencyQuantile",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {compareToBaseline: {maxErrorRateRatio: 0}}}",
        "",
        "spec.metrics.0.judge.compareToBaseline.maxErrorRateRatio",
        "",
    ),
    (
        "{name: m, provider: {resource: {}}, judge: {memoryLeak: {minSamples: 1}}}",
        "",
        "spec.metrics.0.judge.memoryLeak.minSamples",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {alpha: 1}}}",
        "",
        "spec.metrics.0.judge.sequential.alpha",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {tolerance: 0.6}}}",
        "",
        "spec.metrics.0.judge.sequential.tolerance",
        "must not exceed margin",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {errors: false, latency: false}}}",
        "",
        "spec.metrics.0.judge.sequential",
        "errors, latency or both",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {slowSeconds: 0}}}",
        "",
        "spec.metrics.0.judge.sequential.slowSeconds",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {errorRateFloor: 0}}}",
        "",
        "spec.metrics.0.judge.sequential.errorRateFloor",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {maxCanaryRequests: 0}}}",
        "",
        "spec.metrics.0.judge.sequential.maxCanaryRequests",
        "",
    ),
    (
        "{name: m, provider: {builtin: {}}, judge: {sequential: {alfa: 0.1}}}",
        "",
        "spec.metrics.0.judge.sequential.alfa",
        "unknown field",
    ),
    # placeholders
    (
        "{name: m, provider: {prometheus: {address: 'http://p', query: 'up{x=\"{{args.nope}}\"}'}}, successCondition: x}",
        "",
        "spec.metrics.0.provider.prometheus.query",
        "arg 'nope', which is not declared",
    ),
    (
        "{name: m, provider: {builtin: {}}, successCondition: 'result.p99 < {{ args.9 }}'}",
        "",
        "spec.metrics.0.successCondition",
        "does not name an arg",
    ),
    (
        "{name: m, provider: {business: {path: '/{{args.p}}', metrics: [a]}}, successCondition: x}",
        "[{name: q}]",
        "spec.metrics.0.provider.business.path",
        "arg 'p'",
    ),
    # the job provider (Kubernetes)
    (
        "{name: m, provider: {job: {spec: {backoffLimit: 0}}}}",
        "",
        "spec.metrics.0.provider.job.spec.template",
        "a Job needs a pod template",
    ),
    (
        "{name: m, provider: {job: {spec: {template: {spec: {}}}}}, successCondition: 'result == 1'}",
        "",
        "spec.metrics.0.successCondition",
        "judged by its Job alone",
    ),
    (
        "{name: m, provider: {job: {spec: {template: {spec: {}}}, metadata: {owner: x}}}}",
        "",
        "spec.metrics.0.provider.job.metadata.owner",
        "unknown field",
    ),
]


def test_a_job_metric_takes_a_job_spec_as_written() -> None:
    """A job metric needs only its JobSpec (passed through untouched) and extra Job labels."""
    t = template(
        metric_template(
            "{name: smoke, count: 1, provider: {job: {metadata: {labels: {team: a}}, "
            "spec: {backoffLimit: 0, template: {spec: {containers: [{name: c, image: i}]}}}}}}",
            "",
        )
    )
    job = t.spec.metrics[0].provider.job
    assert job is not None
    assert t.spec.metrics[0].provider.kind == "job"
    assert job.spec == {
        "backoffLimit": 0,
        "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
    }
    assert job.metadata is not None
    assert job.metadata.labels == {"team": "a"}


@pytest.mark.parametrize(
    ("metric", "args", "path", "message"),
    BAD_TEMPLATES,
    ids=[f"{i}-{row[2]}" for i, row in enumerate(BAD_TEMPLATES)],
)
def test_bad_template_names_the_field(metric: str, args: str, path: str, message: str) -> None:
    """Each invalid template is refused with a problem at the exact field path, with a clear message."""
    with pytest.raises(SpecError) as e:
        parse_documents(metric_template(metric, args))
    matching = [p for p in e.value.problems if p.path == path]
    assert matching, e.value.problems
    assert any(message in p.message for p in matching), matching


def test_bad_template_control_is_valid() -> None:
    """The table's base metric itself is valid, so each row fails only for its own change."""
    t = template(metric_template(OK_METRIC, "[{name: a, value: '1'}]"))
    assert t.spec.metrics[0].name == "m"


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("kind: AnalysisTemplate", "kind: AnalysisTemplates", "kind"),
        ("apiVersion: gapless.dev/v1alpha1", "apiVersion: argoproj.io/v1alpha1", "apiVersion"),
        ("metadata: {name: shop-health}", "metadata: {name: Shop_Health}", "metadata.name"),
        ("  metrics:\n", "  metrics: []\n  unused:\n", "spec.metrics"),
        ("    - name: leak\n", "    - name: errors\n", "spec.metrics.2.name"),
    ],
)
def test_malformed_template_document(old: str, new: str, path: str) -> None:
    """Document-level mistakes are named by their path too."""
    assert old in FULL
    with pytest.raises(SpecError) as e:
        parse_documents(FULL.replace(old, new, 1))
    assert any(p.path == path for p in e.value.problems), e.value.problems


def test_placeholders_skip_checks_until_substituted() -> None:
    """An address or path that is wholly a placeholder is checked once the value is known."""
    t = template(
        metric_template(
            "{name: m, provider: {prometheus: {address: '{{args.url}}', query: up}}, successCondition: 'result > 0'}",
            "[{name: url}]",
        )
    )
    prom = substitute(t, {"url": "https://prom.example:9090"}).spec.metrics[0].provider.prometheus
    assert prom is not None
    assert prom.address == "https://prom.example:9090"
    with pytest.raises(SpecError) as e:
        substitute(t, {"url": "prom:9090"})
    assert [p.path for p in e.value.problems] == ["spec.metrics.0.provider.prometheus.address"]


# --- substitute ------------------------------------------------------------------------------------


def test_substitute_uses_values_then_defaults() -> None:
    """Given values win over defaults; defaults fill the rest; whitespace inside braces is allowed."""
    t = template()
    s = substitute(t, {"canary": "abc123", "max-p99": "0.25", "unused": "x"})
    prom = s.spec.metrics[3].provider.prometheus
    assert prom is not None
    assert prom.address == "http://127.0.0.1:9090"  # the default
    assert prom.query == 'histogram_quantile(0.99, rate(latency_bucket{revision="abc123"}[1m]))'
    assert s.spec.metrics[3].success_condition == "result < 0.25"  # the value, not the default 0.5
    assert s.spec.metrics[3].failure_condition == "result > 2 * 0.25"
    # The original is unchanged, and metrics without placeholders are equal.
    assert t.spec.metrics[3].success_condition == "result < {{args.max-p99}}"
    assert s.spec.metrics[:3] == t.spec.metrics[:3]


def test_substitute_reports_every_missing_value() -> None:
    """An arg with no value and no default, and a built-in arg not supplied, are named with their paths."""
    t = template(
        metric_template(
            "{name: m, provider: {prometheus: {address: 'http://p', query: 'up{r=\"{{args.stable}}\"}'}},"
            " successCondition: 'result > {{args.min}}', failureCondition: 'result < {{args.min}} - 1'}",
            "[{name: min}]",
        )
    )
    with pytest.raises(SpecError) as e:
        substitute(t, {"canary": "c"})
    assert [(p.path, p.message) for p in e.value.problems] == [
        ("spec.metrics.0.provider.prometheus.query", "built-in arg 'stable' was not supplied"),
        (
            "spec.metrics.0.successCondition",
            "arg 'min' has no value: the rollout gives none and it has no default",
        ),
        (
            "spec.metrics.0.failureCondition",
            "arg 'min' has no value: the rollout gives none and it has no default",
        ),
    ]
    assert "AnalysisTemplate shop-health" in str(e.value)
    assert substitute(t, {"stable": "s", "min": "3"}).spec.metrics[0].failure_condition == "result < 3 - 1"


def test_substitute_refuses_an_undeclared_arg() -> None:
    """A template whose arg declaration was removed after validation still cannot substitute blindly."""
    t = template(
        metric_template(
            "{name: m, provider: {builtin: {}}, successCondition: 'x < {{args.a}}'}", "[{name: a}]"
        )
    )
    stripped = t.model_copy(update={"spec": t.spec.model_copy(update={"args": []})})
    with pytest.raises(SpecError) as e:
        substitute(stripped, {})
    assert e.value.problems[0].path == "spec.metrics.0.successCondition"
    assert "arg 'a', which is not declared" in e.value.problems[0].message


def test_substitute_is_plain_text_never_evaluated() -> None:
    """Values are inserted verbatim, once: no evaluation, no second expansion."""
    t = template(
        metric_template(
            "{name: m, provider: {builtin: {}}, successCondition: '{{args.a}} == {{args.b}}'}",
            "[{name: a}, {name: b, value: 'x'}]",
        )
    )
    hostile = "__import__('os').system('false')"
    s = substitute(t, {"a": hostile})
    assert s.spec.metrics[0].success_condition == f"{hostile} == x"
    # A value that is itself a placeholder is refused instead of being expanded (or left half-done).
    with pytest.raises(SpecError, match="holds a placeholder"):
        substitute(t, {"a": "{{args.b}}"})
    # Braces that are not a placeholder pass through untouched.
    assert substitute(t, {"a": "{{ x }}"}).spec.metrics[0].success_condition == "{{ x }} == x"


def test_builtin_args_are_the_documented_three() -> None:
    """The controller supplies exactly these; declaring one is refused (tested in the table above)."""
    assert BUILTIN_ARGS == ("rollout", "canary", "stable")


# --- multi-document files ---------------------------------------------------------------------------

ROLLOUT = """apiVersion: gapless.dev/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  listen: 127.0.0.1:8080
  template: {command: [app]}
  strategy:
    canary:
      analysis:
        templates: [{templateName: shop-health}]
        startingStep: 1
      steps:
        - setWeight: 10
        - analysis: {templates: [{templateName: shop-health}], args: [{name: max-p99, value: 0.3}]}
        - setWeight: 50
"""


def test_documents_of_both_kinds() -> None:
    """A file with a rollout and its template gives both, in order; trailing '---' is ignored."""
    docs = parse_documents(ROLLOUT + "---\n" + FULL + "---\n")
    assert [r.name for r in docs.rollouts] == ["shop"]
    assert [t.name for t in docs.templates] == ["shop-health"]
    assert docs.rollouts[0].spec.strategy.analysis_template_names() == {"shop-health"}


def test_single_document_paths_have_no_prefix() -> None:
    """With one document, paths are as for load_rollout; a Rollout file loads through both functions."""
    with pytest.raises(SpecError) as e:
        parse_documents(ROLLOUT.replace("setWeight: 10", "setWeight: 110"))
    assert [p.path for p in e.value.problems] == ["spec.strategy.canary.steps.0.setWeight"]
    assert parse_documents(ROLLOUT).rollouts[0] == parse_rollout(ROLLOUT)


def test_every_problem_of_every_document_at_once() -> None:
    """Problems of several documents come in one SpecError, each prefixed by its document's index."""
    text = "\n---\n".join(
        [
            ROLLOUT.replace("setWeight: 10", "setWeight: 110"),
            FULL.replace("interval: 10s", "interval: 0").replace("failureLimit: 1", "failureLimit: -1"),
            "apiVersion: gapless.dev/v1alpha1\nkind: Deployment\nmetadata: {name: web}\n",
            "apiVersion: gapless.dev/v1alpha1\nmetadata: {name: nameless}\n",
            "- just\n- a list\n",
            FULL.replace("kind: AnalysisTemplate", "kind: Rollout"),
        ]
    )
    with pytest.raises(SpecError) as e:
        parse_documents(text, "both.yaml")
    assert e.value.source == "both.yaml"
    by_path = {p.path: p.message for p in e.value.problems}
    assert "documents.0.spec.strategy.canary.steps.0.setWeight" in by_path
    assert "documents.1.spec.metrics.0.interval" in by_path
    assert "documents.1.spec.metrics.1.failureLimit" in by_path
    assert by_path["documents.2.kind"] == (
        "is 'Deployment' (metadata.name 'web'); must be one of Rollout, AnalysisTemplate"
    )
    assert by_path["documents.3.kind"] == (
        "is required (metadata.name 'nameless'); must be one of Rollout, AnalysisTemplate"
    )
    assert by_path["documents.4"] == "expected a mapping with apiVersion, kind, metadata, spec"
    assert "documents.5.spec.listen" in by_path  # validated as the kind it says it is


def test_duplicate_names_of_one_kind() -> None:
    """Two templates (or two rollouts) with one name are a problem; a rollout and a template may share it."""
    with pytest.raises(SpecError) as e:
        parse_documents("---\n".join([FULL, ROLLOUT, FULL, ROLLOUT]))
    assert {(p.path, p.message) for p in e.value.problems} == {
        (
            "documents.2.metadata.name",
            "another AnalysisTemplate in this file (document 0) is named 'shop-health'",
        ),
        ("documents.3.metadata.name", "another Rollout in this file (document 1) is named 'shop'"),
    }
    same = FULL.replace("name: shop-health", "name: shop")
    assert len(parse_documents(same + "---\n" + ROLLOUT).templates) == 1


def test_empty_and_broken_files(tmp_path: Path) -> None:
    """No documents, broken YAML and unreadable files are spec errors with a clear message."""
    with pytest.raises(SpecError, match="no documents"):
        parse_documents("---\n")
    with pytest.raises(SpecError, match="line 2"):
        parse_documents("a: b\n  c: : d\n")
    with pytest.raises(SpecError, match="cannot read file"):
        load_documents(tmp_path / "missing.yaml")
    path = tmp_path / "all.yaml"
    path.write_text(FULL + "---\n" + ROLLOUT)
    docs = load_documents(path)
    assert (len(docs.rollouts), len(docs.templates)) == (1, 1)


def test_validate_template() -> None:
    """Parsed data validates as a template, or raises with paths like validate_rollout."""
    data = template().to_document()
    assert validate_template(data).name == "shop-health"
    with pytest.raises(SpecError) as e:
        validate_template({**data, "spec": {"metrics": []}}, source="api")
    assert e.value.source == "api"
    assert [p.path for p in e.value.problems] == ["spec.metrics"]
    with pytest.raises(SpecError, match="expected a mapping"):
        validate_template([data])


# --- the rollout fields that name templates -------------------------------------------------------

RHEAD = """apiVersion: gapless.dev/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  listen: 127.0.0.1:8080
  template: {command: [app]}
  strategy:
"""


def test_canary_analysis_step_and_background() -> None:
    """An analysis step is a fifth step kind; background analysis starts at startingStep."""
    r = parse_rollout(ROLLOUT)
    c = r.spec.strategy.canary
    assert c is not None
    assert [s.kind for s in c.steps] == ["setWeight", "analysis", "setWeight"]
    step = c.steps[1].analysis
    assert step is not None
    assert [(a.name, a.value) for a in step.args] == [("max-p99", "0.3")]
    assert c.analysis is not None
    assert (c.analysis.starting_step, c.analysis.template_names) == (1, ["shop-health"])


def test_blue_green_analyses_and_template_names() -> None:
    """Pre- and post-promotion analyses parse; every referenced template name is collected once."""
    r = parse_rollout(
        RHEAD
        + """    blueGreen:
      prePromotionAnalysis: {templates: [{templateName: smoke}, {templateName: health}]}
      postPromotionAnalysis: {templates: [{templateName: health}], args: [{name: x, value: "1"}]}
"""
    )
    bg = r.spec.strategy.blue_green
    assert bg is not None
    assert bg.pre_promotion_analysis is not None
    assert bg.post_promotion_analysis is not None
    assert r.spec.strategy.analysis_template_names() == {"smoke", "health"}
    assert parse_rollout(RHEAD + "    canary: {}\n").spec.strategy.analysis_template_names() == set()


BAD_REFERENCES = [
    (
        "    canary: {analysis: {templates: [{templateName: a}], startingStep: 0}}\n",
        "spec.strategy.canary.analysis.startingStep",
        "there are 0 steps",
    ),
    (
        "    canary: {steps: [{pause: {}}], analysis: {templates: [{templateName: a}], startingStep: 1}}\n",
        "spec.strategy.canary.analysis.startingStep",
        "is 1 but there are 1 steps",
    ),
    (
        "    canary: {analysis: {templates: [{templateName: a}], startingStep: -1}}\n",
        "spec.strategy.canary.analysis.startingStep",
        "",
    ),
    ("    canary: {analysis: {templates: []}}\n", "spec.strategy.canary.analysis.templates", ""),
    (
        "    canary: {analysis: {templates: [{templateName: A_b}]}}\n",
        "spec.strategy.canary.analysis.templates.0.templateName",
        "DNS-1123",
    ),
    (
        "    canary: {analysis: {templates: [{templateName: a}, {templateName: a}]}}\n",
        "spec.strategy.canary.analysis.templates.1.templateName",
        "named twice",
    ),
    (
        "    canary: {analysis: {templates: [{templateName: a}], args: [{name: x, value: '1'}, {name: x, value: '2'}]}}\n",
        "spec.strategy.canary.analysis.args.1.name",
        "given twice",
    ),
    (
        "    canary: {analysis: {templates: [{templateName: a}], args: [{name: x}]}}\n",
        "spec.strategy.canary.analysis.args.0.value",
        "is required",
    ),
    (
        "    canary: {analysis: {templates: [{templateName: a}], args: [{name: -x, value: '1'}]}}\n",
        "spec.strategy.canary.analysis.args.0.name",
        "starting with a letter",
    ),
    (
        "    canary: {steps: [{analysis: {templates: [{templateName: a}]}, setWeight: 5}]}\n",
        "spec.strategy.canary.steps.0",
        "setHeaderRoute, analysis",
    ),
    (
        "    canary: {steps: [{analysis: {templates: [{templateName: a}], startingStep: 0}}]}\n",
        "spec.strategy.canary.steps.0.analysis.startingStep",
        "unknown field",
    ),
    (
        "    blueGreen: {prePromotionAnalysis: {templates: [{name: a}]}}\n",
        "spec.strategy.blueGreen.prePromotionAnalysis.templates.0.name",
        "unknown field",
    ),
    (
        "    blueGreen: {postPromotionAnalysis: {}}\n",
        "spec.strategy.blueGreen.postPromotionAnalysis.templates",
        "is required",
    ),
]


@pytest.mark.parametrize(
    ("fragment", "path", "message"),
    BAD_REFERENCES,
    ids=[f"{i}-{row[1]}" for i, row in enumerate(BAD_REFERENCES)],
)
def test_bad_analysis_reference_names_the_field(fragment: str, path: str, message: str) -> None:
    """Bad references to templates are refused at their exact path."""
    with pytest.raises(SpecError) as e:
        parse_rollout(RHEAD + fragment)
    matching = [p for p in e.value.problems if p.path == path]
    assert matching, e.value.problems
    assert any(message in p.message for p in matching), matching


def test_documented_examples_are_valid() -> None:
    """The template and rollout snippets of the analysis docs parse, and the template has no problems."""
    text = (Path(__file__).parents[2] / "docs" / "analysis.md").read_text()
    section = text[text.index("## AnalysisTemplate") : text.index("## The condition language")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 3
    t = template(blocks[0])
    assert template_problems(t) == []
    assert [(m.provider.kind, m.judge.kind if m.judge else None) for m in t.spec.metrics] == [
        ("builtin", "sequential"),
        ("business", "compareToBaseline"),
        ("resource", "memoryLeak"),
        ("prometheus", None),
    ]
    filled = substitute(t, {"canary": "abc", "max-p99": "0.5"})
    assert filled.spec.metrics[3].success_condition == "result < 0.5"
    names = set()
    for block in blocks[1:]:
        strategy = "\n".join("  " + line for line in block.splitlines())
        names |= parse_rollout(
            RHEAD.removesuffix("  strategy:\n") + strategy + "\n"
        ).spec.strategy.analysis_template_names()
    assert names == {"shop-health", "smoke"}


def test_a_query_metric_declares_its_unit() -> None:
    """A prometheus metric may say what its result measures; the judged value carries the unit."""
    from gapless.analysis.metric_judge import MetricJudge

    doc = metric_template(
        "{name: p99, provider: {prometheus: {address: 'http://p:9090', query: q}}, "
        "successCondition: 'result < 0.5', unit: seconds}"
    )
    metric = template(doc).spec.metrics[0]
    assert metric.unit == "seconds"
    verdict = MetricJudge(metric, {}).judge_value(0.0021)
    assert verdict.value == {"result": 0.0021, "unit": "seconds"}
    assert template(doc).to_document(as_written=True)["spec"]["metrics"][0]["unit"] == "seconds"
