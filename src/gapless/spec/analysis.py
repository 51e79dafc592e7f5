"""The AnalysisTemplate document: metrics, where they come from and how each measurement is judged.

Field names follow Argo Rollouts' AnalysisTemplate (``args``, ``metrics``, ``interval``, ``count``,
``initialDelay``, ``successCondition``, ``failureCondition``, ``failureLimit``, ``inconclusiveLimit``,
``consecutiveErrorLimit``, ``dryRun``). gapless adds its own providers (``builtin`` router signals,
``resource`` process usage, ``business`` counters scraped from the instances) and ``judge``: the
fixed-window and sequential judges of :mod:`gapless.analysis`, whose fields mirror the dataclasses
there in camelCase with the same defaults.

Templates take ``{{args.NAME}}`` placeholders in their text fields (the Prometheus address and query,
the business metrics path, the conditions); :func:`substitute` fills them in as plain text when a run
starts. ``rollout``, ``canary`` and ``stable`` (:data:`BUILTIN_ARGS`) are always supplied by gapless.
A field holding a placeholder is checked again after substitution, with the values filled in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from gapless.core.errors import Problem, SpecError
from gapless.core.units import Unit
from gapless.spec.base import SpecModel, field_error, parse_duration
from gapless.spec.models import Metadata
from gapless.spec.strategy import ARG_NAME_RE, ArgName, ArgText, Duration, duplicates

__all__ = [
    "BUILTIN_ARGS",
    "AnalysisTemplate",
    "AnalysisTemplateSpec",
    "Arg",
    "BuiltinProvider",
    "BusinessProvider",
    "CompareToBaselineJudge",
    "JobProvider",
    "Judge",
    "JudgeKind",
    "MemoryLeakJudge",
    "Metric",
    "PrometheusProvider",
    "Provider",
    "ProviderKind",
    "ResourceProvider",
    "SequentialJudge",
    "ThresholdJudge",
    "placeholders",
    "substitute",
]

BUILTIN_ARGS = ("rollout", "canary", "stable")
"""Args gapless always supplies: the rollout's name and the canary's and stable's revision hashes."""

MAX_CONDITION = 2_000
MAX_QUERY = 10_000
_METRIC_NAME_MAX = 63
_PROMETHEUS_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# Anything that looks like a placeholder, so a malformed name is reported instead of left in the text.
_PLACEHOLDER_RE = re.compile(r"\{\{\s*args\.([^{}]*?)\s*\}\}")

ProviderKind = Literal["builtin", "resource", "business", "prometheus", "job"]
JudgeKind = Literal["threshold", "compareToBaseline", "memoryLeak", "sequential"]
ErrorClass = Literal["4xx", "5xx"]
_SERVER_ERRORS: list[ErrorClass] = ["5xx"]

PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Probability = Annotated[float, Field(gt=0, lt=1)]


def placeholders(text: str) -> list[re.Match[str]]:
    """Every ``{{args.NAME}}`` in ``text``; ``group(1)`` is the name (possibly malformed)."""
    return list(_PLACEHOLDER_RE.finditer(text))


def _has_placeholder(text: str) -> bool:
    return _PLACEHOLDER_RE.search(text) is not None


def _check_metric_name(value: str) -> str:
    if len(value) > _METRIC_NAME_MAX or not ARG_NAME_RE.match(value):
        raise ValueError(
            f"must be at most {_METRIC_NAME_MAX} letters, digits, '-' or '_', starting with a letter"
        )
    return value


class Arg(SpecModel):
    """A template parameter; ``value`` is its default, used when the rollout gives none."""

    name: ArgName
    value: ArgText | None = None


# --- providers ---------------------------------------------------------------------------------


class BuiltinProvider(SpecModel):
    """The router's signals per revision: requests, errors of ``errorClasses`` and latency.

    Connection errors to an instance are counted as 5xx by the router.
    """

    error_classes: list[ErrorClass] = Field(default_factory=_SERVER_ERRORS.copy, min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BuiltinProvider:
        if dup := duplicates(list(self.error_classes)):
            raise field_error(f"errorClasses.{dup[0][0]}", f"'{dup[0][1]}' is listed twice")
        return self


class ResourceProvider(SpecModel):
    """CPU, resident memory and open files of each instance, read from the operating system."""


class BusinessProvider(SpecModel):
    """Counters the instances publish in Prometheus' text format, e.g. ``orders_total``.

    ``port`` defaults to the instance's own port (the one given in ``PORT``).
    """

    path: str = "/metrics"
    port: int | None = Field(default=None, ge=1, le=65535)
    metrics: list[str] = Field(min_length=1)
    timeout: PositiveDuration = 2

    @model_validator(mode="after")
    def _check(self) -> BusinessProvider:
        if not self.path.startswith("/") and not _has_placeholder(self.path):
            raise field_error("path", "must start with '/'")
        for i, name in enumerate(self.metrics):
            if not _PROMETHEUS_NAME_RE.match(name):
                raise field_error(f"metrics.{i}", f"'{name}' is not a Prometheus metric name")
        if dup := duplicates(self.metrics):
            raise field_error(f"metrics.{dup[0][0]}", f"'{dup[0][1]}' is listed twice")
        return self


class PrometheusProvider(SpecModel):
    """A PromQL query against a Prometheus server; the result is judged by the conditions."""

    address: str
    query: str = Field(min_length=1, max_length=MAX_QUERY)
    timeout: PositiveDuration = 10

    @model_validator(mode="after")
    def _check_address(self) -> PrometheusProvider:
        if not _has_placeholder(self.address) and (problem := url_problem(self.address)):
            raise field_error("address", problem)
        return self


def url_problem(address: str) -> str | None:
    """Why ``address`` is not an ``http://`` or ``https://`` URL with a host, or ``None``."""
    try:
        parts = urlsplit(address)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as e:
        return f"is not a valid URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:9090"
    return None


class JobMetadata(SpecModel):
    """Labels and annotations added to each Job (gapless adds its own rollout and revision labels)."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class JobProvider(SpecModel):
    """A Kubernetes Job per measurement (as Argo's job metric): Complete is a success, Failed a failure.

    ``spec`` is a batch/v1 JobSpec passed through as written (``template`` is required, as Kubernetes
    requires it); ``metadata`` takes extra ``labels`` and ``annotations`` for the Job. Runs only on
    Kubernetes: the local platform has no Jobs, and a run that meets this provider there errors.
    """

    metadata: JobMetadata | None = None
    spec: dict[str, Any]

    @model_validator(mode="after")
    def _check(self) -> JobProvider:
        template = self.spec.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
            raise field_error("spec.template", "a Job needs a pod template with a spec (spec.template.spec)")
        return self


_PROVIDERS = ("builtin", "resource", "business", "prometheus", "job")


class Provider(SpecModel):
    """Where a metric's measurements come from: exactly one of the five providers."""

    builtin: BuiltinProvider | None = None
    resource: ResourceProvider | None = None
    business: BusinessProvider | None = None
    prometheus: PrometheusProvider | None = None
    job: JobProvider | None = None

    @model_validator(mode="after")
    def _one(self) -> Provider:
        given = [n for n in _PROVIDERS if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"a provider needs exactly one of {', '.join(_PROVIDERS)}; got {len(given)}")
        return self

    @property
    def kind(self) -> ProviderKind:
        if self.builtin is not None:
            return "builtin"
        if self.resource is not None:
            return "resource"
        if self.business is not None:
            return "business"
        if self.job is not None:
            return "job"
        return "prometheus"


# --- judges (gapless.analysis.judges and .sequential, field for field) ---------------------------


class ThresholdJudge(SpecModel):
    """Absolute limits on the canary's window; request-based limits need ``minRequests`` requests."""

    min_requests: int = Field(default=100, ge=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_p50_seconds: Duration | None = None
    max_p95_seconds: Duration | None = None
    max_p99_seconds: Duration | None = None
    max_rss_bytes: int | None = Field(default=None, ge=1)
    max_cpu_cores: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> ThresholdJudge:
        if not self.request_limits and not self.resource_limits:
            raise ValueError(
                "a threshold judge needs at least one of maxErrorRate, maxP50Seconds, maxP95Seconds, "
                "maxP99Seconds, maxRssBytes, maxCpuCores"
            )
        return self

    @property
    def request_limits(self) -> list[str]:
        """The request-based limits given (they need the router's or a business provider's requests)."""
        return [
            alias
            for alias, v in (
                ("maxErrorRate", self.max_error_rate),
                ("maxP50Seconds", self.max_p50_seconds),
                ("maxP95Seconds", self.max_p95_seconds),
                ("maxP99Seconds", self.max_p99_seconds),
            )
            if v is not None
        ]

    @property
    def resource_limits(self) -> list[str]:
        """The process limits given (they need the resource provider)."""
        return [
            alias
            for alias, v in (("maxRssBytes", self.max_rss_bytes), ("maxCpuCores", self.max_cpu_cores))
            if v is not None
        ]


class CompareToBaselineJudge(SpecModel):
    """Canary against the stable revision in the same window; ``null`` switches a comparison off."""

    min_requests: int = Field(default=100, ge=0)
    max_error_rate_ratio: float | None = Field(default=2.0, gt=0)
    error_rate_floor: float = Field(default=0.001, ge=0, lt=1)
    latency_quantile: float = Field(default=0.99, gt=0, lt=1)
    max_latency_increase_seconds: Duration | None = None
    min_counter_ratios: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)


class MemoryLeakJudge(SpecModel):
    """RSS growth of the canary beyond the baseline's, in bytes per second."""

    tolerance_bytes_per_second: float = Field(default=1024.0, ge=0)
    noise_z: float = Field(default=2.0, ge=0)
    min_samples: int = Field(default=10, ge=2)
    min_duration_seconds: Duration = 300.0


class SequentialJudge(SpecModel):
    """The anytime-valid sequential test; see docs/analysis.md for what alpha, beta and margin bound."""

    alpha: Probability = 0.05
    beta: Probability = 0.05
    tolerance: float = Field(default=0.1, ge=0)
    margin: float = Field(default=0.5, ge=0)
    errors: bool = True
    latency: bool = True
    slow_quantile: Probability = 0.95
    slow_seconds: PositiveDuration | None = None
    min_baseline_for_slow: int = Field(default=200, ge=1)
    error_rate_floor: Probability | None = 0.001
    max_canary_requests: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> SequentialJudge:
        if self.tolerance > self.margin:
            raise field_error("tolerance", f"must not exceed margin ({self.margin:g})")
        if not (self.errors or self.latency):
            raise ValueError("the sequential judge needs errors, latency or both")
        return self


class Judge(SpecModel):
    """How each measurement is judged: exactly one of the four judges."""

    threshold: ThresholdJudge | None = None
    compare_to_baseline: CompareToBaselineJudge | None = None
    memory_leak: MemoryLeakJudge | None = None
    sequential: SequentialJudge | None = None

    @model_validator(mode="after")
    def _one(self) -> Judge:
        given = [
            x
            for x in (self.threshold, self.compare_to_baseline, self.memory_leak, self.sequential)
            if x is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a judge needs exactly one of threshold, compareToBaseline, memoryLeak, sequential; "
                f"got {len(given)}"
            )
        return self

    @property
    def kind(self) -> JudgeKind:
        if self.threshold is not None:
            return "threshold"
        if self.compare_to_baseline is not None:
            return "compareToBaseline"
        if self.memory_leak is not None:
            return "memoryLeak"
        return "sequential"


# --- metrics and the template --------------------------------------------------------------------

_JUDGE_PROVIDERS: dict[JudgeKind, tuple[ProviderKind, ...]] = {
    "threshold": ("builtin", "resource", "business"),
    "compareToBaseline": ("builtin", "business"),
    "memoryLeak": ("resource",),
    "sequential": ("builtin", "business"),
}


def _one_of(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class Metric(SpecModel):
    """One metric: measured every ``interval`` after ``initialDelay``, ``count`` times (or until stopped)."""

    name: Annotated[str, AfterValidator(_check_metric_name)]
    provider: Provider
    interval: PositiveDuration = 10
    count: int | None = Field(default=None, ge=1)
    initial_delay: Duration = 0
    success_condition: str | None = Field(default=None, min_length=1, max_length=MAX_CONDITION)
    failure_condition: str | None = Field(default=None, min_length=1, max_length=MAX_CONDITION)
    judge: Judge | None = None
    unit: Unit | None = None
    """What a query's result measures, so it is shown as ``12 ms`` or ``0.5%`` instead of a bare number."""
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    dry_run: bool = False

    @property
    def has_condition(self) -> bool:
        return self.success_condition is not None or self.failure_condition is not None

    @model_validator(mode="after")
    def _judged(self) -> Metric:
        provider = self.provider.kind
        if self.unit is not None and provider != "prometheus":
            raise field_error(
                "unit",
                f"only a prometheus metric takes a unit; the {provider} provider's values have units of "
                "their own",
            )
        if provider == "job":
            if self.judge is not None or self.has_condition:
                raise field_error(
                    "judge" if self.judge is not None else _condition_field(self),
                    "a job metric is judged by its Job alone (Complete succeeds, Failed fails); "
                    "it takes no judge and no conditions",
                )
            return self
        if provider == "prometheus":
            if self.judge is not None:
                raise field_error(
                    "judge",
                    "a prometheus metric cannot have a judge (judges read the request, latency and "
                    "resource measurements of the builtin, business and resource providers); "
                    "use successCondition or failureCondition",
                )
            if not self.has_condition:
                raise ValueError("a prometheus metric needs a successCondition, a failureCondition or both")
        if self.judge is None:
            if not self.has_condition:
                raise ValueError("a metric needs a judge, a successCondition or a failureCondition")
            return self
        judge = self.judge.kind
        allowed = _JUDGE_PROVIDERS[judge]
        if provider not in allowed:
            raise field_error(f"judge.{judge}", f"needs the {_one_of(allowed)} provider, not {provider}")
        self._check_threshold(provider)
        self._check_counters(provider)
        return self

    def _check_threshold(self, provider: ProviderKind) -> None:
        limits = self.judge.threshold if self.judge is not None else None
        if limits is None:
            return
        if provider == "resource" and limits.request_limits:
            raise field_error(
                "judge.threshold",
                f"{', '.join(limits.request_limits)} need requests, which the resource provider does "
                "not measure; use a builtin metric for them",
            )
        if provider == "builtin" and limits.resource_limits:
            raise field_error(
                "judge.threshold",
                f"{', '.join(limits.resource_limits)} need the resource provider, which a builtin "
                "metric does not read; use a resource metric for them",
            )

    def _check_counters(self, provider: ProviderKind) -> None:
        compare = self.judge.compare_to_baseline if self.judge is not None else None
        if compare is None or not compare.min_counter_ratios:
            return
        path = "judge.compareToBaseline.minCounterRatios"
        if self.provider.business is None:
            raise field_error(path, f"counters come from the business provider, not {provider}")
        for counter in compare.min_counter_ratios:
            if counter not in self.provider.business.metrics:
                raise field_error(path, f"'{counter}' is not one of provider.business.metrics")

    def templated_fields(self) -> list[tuple[tuple[str, ...], str]]:
        """The text fields that take ``{{args.NAME}}``: ``(path of YAML keys, text)``."""
        out: list[tuple[tuple[str, ...], str]] = []
        if (prom := self.provider.prometheus) is not None:
            out += [
                (("provider", "prometheus", "address"), prom.address),
                (("provider", "prometheus", "query"), prom.query),
            ]
        if (business := self.provider.business) is not None:
            out.append((("provider", "business", "path"), business.path))
        if self.success_condition is not None:
            out.append((("successCondition",), self.success_condition))
        if self.failure_condition is not None:
            out.append((("failureCondition",), self.failure_condition))
        return out


def _condition_field(metric: Metric) -> str:
    return "successCondition" if metric.success_condition is not None else "failureCondition"


class AnalysisTemplateSpec(SpecModel):
    args: list[Arg] = Field(default_factory=list)
    metrics: list[Metric] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_and_references(self) -> AnalysisTemplateSpec:
        for i, arg in enumerate(self.args):
            if arg.name in BUILTIN_ARGS:
                raise field_error(
                    f"args.{i}.name",
                    f"'{arg.name}' is supplied by gapless ({', '.join(BUILTIN_ARGS)}); "
                    "use it without declaring it",
                )
        if dup := duplicates([a.name for a in self.args]):
            raise field_error(f"args.{dup[0][0]}.name", f"arg '{dup[0][1]}' is declared twice")
        if dup := duplicates([m.name for m in self.metrics]):
            raise field_error(f"metrics.{dup[0][0]}.name", f"metric '{dup[0][1]}' is declared twice")
        declared = {a.name for a in self.args}
        for i, metric in enumerate(self.metrics):
            for path, text in metric.templated_fields():
                for match in placeholders(text):
                    if problem := _reference_problem(match.group(1), declared):
                        raise field_error(f"metrics.{i}.{'.'.join(path)}", problem)
        return self


def _reference_problem(name: str, declared: set[str]) -> str | None:
    if not ARG_NAME_RE.match(name):
        return f"'{{{{args.{name}}}}}' does not name an arg (letters, digits, '-' or '_', starting with a letter)"
    if name not in declared and name not in BUILTIN_ARGS:
        return (
            f"'{{{{args.{name}}}}}' refers to arg '{name}', which is not declared in spec.args "
            f"(nor one of {', '.join(BUILTIN_ARGS)}, which gapless supplies)"
        )
    return None


class AnalysisTemplate(SpecModel):
    """A whole AnalysisTemplate document."""

    api_version: Literal["gapless.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["AnalysisTemplate"]
    metadata: Metadata
    spec: AnalysisTemplateSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_document(self, *, as_written: bool = False) -> dict[str, Any]:
        """The document as YAML/JSON-ready data with camelCase keys; it validates back to an equal template.

        ``as_written`` leaves out the fields the author did not set. Unset optional fields are left out
        either way, but an explicit ``null`` that switches a judge's comparison off is kept.
        """
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=as_written)
        _drop_default_nones(self, data)
        return data


def _drop_default_nones(model: SpecModel, data: dict[str, Any]) -> None:
    """Remove ``None`` values whose field defaults to ``None`` (reloading gives them back)."""
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        value = getattr(model, name)
        if value is None and info.default is None:
            del data[key]
        elif isinstance(value, SpecModel):
            _drop_default_nones(value, data[key])
        elif isinstance(value, list):
            for item, item_data in zip(value, data[key], strict=True):
                if isinstance(item, SpecModel):
                    _drop_default_nones(item, item_data)


def substitute(template: AnalysisTemplate, values: Mapping[str, str]) -> AnalysisTemplate:
    """The template with every ``{{args.NAME}}`` replaced, as plain text, by the arg's value.

    A value comes from ``values`` (the rollout's args and the built-in ones), else from the arg's
    default; names in ``values`` that the template does not use are ignored. Values are inserted once,
    never scanned again and never evaluated (a value holding a placeholder is refused). Raises
    :class:`SpecError` naming each placeholder that cannot be filled in, and each field that is
    invalid once filled in (a Prometheus address that is not a URL).
    """
    defaults = {a.name: a.value for a in template.spec.args}
    problems: list[Problem] = []
    data = template.model_dump(mode="python", by_alias=True)
    for i, metric in enumerate(template.spec.metrics):
        for path, text in metric.templated_fields():
            where = ".".join(("spec", "metrics", str(i), *path))
            new = _fill(text, where, values, defaults, problems)
            if new != text:
                target = data["spec"]["metrics"][i]
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = new
    source = f"AnalysisTemplate {template.name}"
    if problems:
        raise SpecError(source, problems)
    try:
        return AnalysisTemplate.model_validate(data)
    except ValidationError as e:
        from gapless.spec.load import problems_from_validation

        raise SpecError(source, problems_from_validation(e)) from e


def _fill(
    text: str,
    where: str,
    values: Mapping[str, str],
    defaults: Mapping[str, str | None],
    problems: list[Problem],
) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name)
        if value is None:
            value = defaults.get(name)
        if value is not None and _has_placeholder(value):
            problems.append(Problem(where, f"the value of arg '{name}' holds a placeholder: {value!r}"))
        elif value is not None:
            return value
        elif problem := _reference_problem(name, set(defaults)):
            problems.append(Problem(where, problem))
        elif name in BUILTIN_ARGS:
            problems.append(Problem(where, f"built-in arg '{name}' was not supplied"))
        else:
            problems.append(
                Problem(where, f"arg '{name}' has no value: the rollout gives none and it has no default")
            )
        return match.group(0)

    return _PLACEHOLDER_RE.sub(one, text)
