"""``spec.strategy``: rolling update (Kubernetes), blue-green and canary (Argo Rollouts field names).

Exactly one of ``rollingUpdate``, ``blueGreen`` and ``canary`` may be given; none means a rolling update
with Kubernetes' defaults. Canary steps are a list of single-key mappings, as in Argo Rollouts.

Automated analysis is referenced, not defined, here: an ``analysis`` canary step, a background
``canary.analysis`` (from ``startingStep`` on) and blue-green ``prePromotionAnalysis`` /
``postPromotionAnalysis`` each name AnalysisTemplates (:mod:`gapless.spec.analysis`) and give their
args. The templates are separate documents, so a rollout's references are resolved when a run starts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from gapless.core.regex import MAX_PATTERN_LENGTH, Regex, RegexError
from gapless.spec.base import IntOrPercent, SpecModel, check_listen, field_error, parse_duration

__all__ = [
    "AnalysisArgValue",
    "AnalysisTemplateRef",
    "BackgroundAnalysis",
    "BlueGreen",
    "Canary",
    "CanaryStep",
    "ExecCheck",
    "GatewayAPI",
    "HTTPCheck",
    "HeaderRoute",
    "Pause",
    "PrePromotionCheck",
    "RollingUpdate",
    "RolloutAnalysis",
    "RouteMatch",
    "SetCanaryScale",
    "Stickiness",
    "Strategy",
    "StringMatch",
    "TrafficRouting",
]

MAX_REGEX = MAX_PATTERN_LENGTH
Duration = Annotated[float, BeforeValidator(parse_duration)]
Weight = Annotated[int, Field(ge=0, le=100)]

# The same rule as metadata.name (a DNS-1123 label); models.py imports this module, so it is repeated here.
_OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ARG_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
"""Analysis arg names (and metric names): letters, digits, ``-`` and ``_``, starting with a letter."""


def _check_object_name(value: str) -> str:
    if len(value) > 63 or not _OBJECT_NAME_RE.match(value):
        raise ValueError(
            "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_arg_name(value: str) -> str:
    """An analysis arg name: letters, digits, '-' and '_', starting with a letter."""
    if not ARG_NAME_RE.match(value):
        raise ValueError("must be letters, digits, '-' or '_', starting with a letter")
    return value


def scalar_text(value: Any) -> Any:
    """Numbers become their text, so ``value: 0.01`` works as well as ``value: "0.01"``; others pass on."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


ObjectName = Annotated[str, AfterValidator(_check_object_name)]
ArgName = Annotated[str, AfterValidator(check_arg_name)]
ArgText = Annotated[str, BeforeValidator(scalar_text)]


def _is_zero(v: int | str) -> bool:
    return v in {0, "0%"}


class AnalysisTemplateRef(SpecModel):
    """One AnalysisTemplate, by its ``metadata.name``."""

    template_name: ObjectName


class AnalysisArgValue(SpecModel):
    """A value for one of the templates' args; overrides the arg's default."""

    name: ArgName
    value: ArgText


def duplicates(names: list[str]) -> list[tuple[int, str]]:
    """``(index, name)`` of every name that already appeared earlier in the list."""
    seen: set[str] = set()
    out: list[tuple[int, str]] = []
    for i, name in enumerate(names):
        if name in seen:
            out.append((i, name))
        seen.add(name)
    return out


class RolloutAnalysis(SpecModel):
    """An analysis run: the metrics of every named template, measured together, with these args."""

    templates: list[AnalysisTemplateRef] = Field(min_length=1)
    args: list[AnalysisArgValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> RolloutAnalysis:
        if dup := duplicates([t.template_name for t in self.templates]):
            i, name = dup[0]
            raise field_error(f"templates.{i}.templateName", f"template '{name}' is named twice")
        if dup := duplicates([a.name for a in self.args]):
            i, name = dup[0]
            raise field_error(f"args.{i}.name", f"arg '{name}' is given twice")
        return self

    @property
    def template_names(self) -> list[str]:
        return [t.template_name for t in self.templates]


class BackgroundAnalysis(RolloutAnalysis):
    """``strategy.canary.analysis``: runs beside the steps, from ``startingStep`` (default: the first)."""

    starting_step: int | None = Field(default=None, ge=0)


class RollingUpdate(SpecModel):
    """Surge and unavailability bounds; percentages are of ``spec.replicas``."""

    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingUpdate:
        if _is_zero(self.max_surge) and _is_zero(self.max_unavailable):
            raise field_error("maxUnavailable", "may not be 0 when maxSurge is 0")
        return self


class ExecCheck(SpecModel):
    command: list[str] = Field(min_length=1)


class HTTPCheck(SpecModel):
    path: str = "/"
    expect_status: int = Field(default=200, ge=100, le=599)

    @model_validator(mode="after")
    def _absolute(self) -> HTTPCheck:
        if not self.path.startswith("/"):
            raise field_error("path", "must start with '/'")
        return self


class PrePromotionCheck(SpecModel):
    """A smoke test against the preview address: a program (exit 0 passes) or an HTTP GET."""

    exec: ExecCheck | None = None
    http_get: HTTPCheck | None = None
    timeout_seconds: float = Field(default=30, gt=0, le=3600)

    @model_validator(mode="after")
    def _one(self) -> PrePromotionCheck:
        if (self.exec is None) == (self.http_get is None):
            raise ValueError("a check needs exactly one of exec, httpGet")
        return self


class BlueGreen(SpecModel):
    """A full second environment, an atomic switch, and the old one kept warm for an instant undo."""

    preview_listen: Annotated[str, AfterValidator(check_listen)] | None = None
    preview_replica_count: int | None = Field(default=None, ge=1)
    pre_promotion_checks: list[PrePromotionCheck] = Field(default_factory=list)
    pre_promotion_analysis: RolloutAnalysis | None = None
    post_promotion_analysis: RolloutAnalysis | None = None
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: Duration = 0
    scale_down_delay_seconds: Duration = 30
    abort_scale_down_delay_seconds: Duration = 30


def _check_regex(value: str) -> str:
    """Only patterns the router's linear-time engine runs: no backtracking, so no catastrophic one."""
    if len(value) > MAX_REGEX:
        raise ValueError(f"regex longer than {MAX_REGEX} characters")
    try:
        Regex(value)
    except RegexError as e:
        raise ValueError(f"regex not accepted: {e}") from e
    return value


class StringMatch(SpecModel):
    exact: str | None = None
    prefix: str | None = None
    regex: Annotated[str, AfterValidator(_check_regex)] | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        if sum(x is not None for x in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("needs exactly one of exact, prefix, regex")
        return self


class RouteMatch(SpecModel):
    """A header (``headerName``/``headerValue``) or cookie (``cookieName``/``cookieValue``) condition."""

    header_name: str | None = Field(default=None, min_length=1)
    header_value: StringMatch | None = None
    cookie_name: str | None = Field(default=None, min_length=1)
    cookie_value: StringMatch | None = None

    @model_validator(mode="after")
    def _one(self) -> RouteMatch:
        header = self.header_name is not None or self.header_value is not None
        cookie = self.cookie_name is not None or self.cookie_value is not None
        if header == cookie:
            raise ValueError("a match needs headerName/headerValue or cookieName/cookieValue")
        if header and (self.header_name is None or self.header_value is None):
            raise ValueError("a header match needs both headerName and headerValue")
        if cookie and (self.cookie_name is None or self.cookie_value is None):
            raise ValueError("a cookie match needs both cookieName and cookieValue")
        return self


class HeaderRoute(SpecModel):
    """Requests matching every condition go to the canary whatever the weight; an empty list removes the route."""

    match: list[RouteMatch] = Field(default_factory=list)


class Pause(SpecModel):
    """``pause: {duration: 30s}`` waits; ``pause: {}`` waits for ``gapless promote``."""

    duration: Duration | None = None


class SetCanaryScale(SpecModel):
    replicas: int | None = Field(default=None, ge=0)
    weight: Weight | None = None
    match_traffic_weight: bool | None = None

    @model_validator(mode="after")
    def _one(self) -> SetCanaryScale:
        given = [x for x in (self.replicas, self.weight, self.match_traffic_weight) if x is not None]
        if len(given) != 1:
            raise ValueError("needs exactly one of replicas, weight, matchTrafficWeight")
        if self.match_traffic_weight is False:
            raise field_error("matchTrafficWeight", "must be true when given")
        return self


_STEP_KINDS = ("setWeight", "pause", "setCanaryScale", "setHeaderRoute", "analysis")
StepKind = Literal["setWeight", "pause", "setCanaryScale", "setHeaderRoute", "analysis"]


class CanaryStep(SpecModel):
    set_weight: Weight | None = None
    pause: Pause | None = None
    set_canary_scale: SetCanaryScale | None = None
    set_header_route: HeaderRoute | None = None
    analysis: RolloutAnalysis | None = None

    @model_validator(mode="after")
    def _one(self) -> CanaryStep:
        given = [
            x
            for x in (
                self.set_weight,
                self.pause,
                self.set_canary_scale,
                self.set_header_route,
                self.analysis,
            )
            if x is not None
        ]
        if len(given) != 1:
            raise ValueError(f"a step needs exactly one of {', '.join(_STEP_KINDS)}")
        return self

    @property
    def kind(self) -> StepKind:
        if self.set_weight is not None:
            return "setWeight"
        if self.pause is not None:
            return "pause"
        if self.set_canary_scale is not None:
            return "setCanaryScale"
        if self.set_header_route is not None:
            return "setHeaderRoute"
        return "analysis"

    def describe(self) -> str:
        """The step as a person reads it in events and on the dashboard: ``set weight 20%``."""
        if self.set_weight is not None:
            return f"set weight {self.set_weight}%"
        if self.pause is not None:
            d = self.pause.duration
            return "pause until promoted" if d is None else f"pause {_seconds_text(d)}"
        if self.set_canary_scale is not None:
            sc = self.set_canary_scale
            if sc.replicas is not None:
                return f"canary scale {sc.replicas} replica{'' if sc.replicas == 1 else 's'}"
            if sc.weight is not None:
                return f"canary scale {sc.weight}% of replicas"
            return "canary scale follows the traffic weight"
        if self.set_header_route is not None:
            matches = self.set_header_route.match
            if not matches:
                return "header route removed"
            return "header route: " + " and ".join(_match_text(m) for m in matches)
        templates = self.analysis.templates if self.analysis is not None else []
        return "analysis: " + ", ".join(t.template_name for t in templates)


def _seconds_text(seconds: float) -> str:
    """``90`` -> ``1m30s``, ``0.5`` -> ``500ms``, ``3600`` -> ``1h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = round(seconds)
    if whole != seconds and seconds < 60:
        return f"{seconds:g}s"
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v]
    return "".join(parts) or "0s"


def _match_text(m: RouteMatch) -> str:
    header = m.header_name is not None
    name, value = (m.header_name, m.header_value) if header else (m.cookie_name, m.cookie_value)
    what = "header" if header else "cookie"
    if value is None:  # refused by RouteMatch's validator
        return f"{what} {name}"
    if value.exact is not None:
        cond = f"= {value.exact!r}"
    elif value.prefix is not None:
        cond = f"starts with {value.prefix!r}"
    else:
        cond = f"matches /{value.regex}/"
    return f"{what} {name} {cond}"


class Stickiness(SpecModel):
    header: str | None = Field(default=None, min_length=1)
    cookie: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Stickiness:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("stickiness needs exactly one of header, cookie")
        return self


class GatewayAPI(SpecModel):
    """A Gateway API ``HTTPRoute`` (in the Rollout's namespace) whose backendRefs carry the canary weights.

    Kubernetes only, as Argo Rollouts' Gateway API plugin: the route is the user's; gapless writes the
    weights of its ``NAME-stable`` and ``NAME-canary`` backendRefs.
    """

    http_route: ObjectName


class TrafficRouting(SpecModel):
    stickiness: Stickiness | None = None
    gateway_api: GatewayAPI | None = Field(default=None, alias="gatewayAPI")


class Canary(SpecModel):
    """Argo Rollouts-style canary: steps of weights and pauses; stable keeps full size until the end."""

    steps: list[CanaryStep] = Field(default_factory=list)
    traffic_routing: TrafficRouting = Field(default_factory=TrafficRouting)
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = 0
    scale_down_delay_seconds: Duration = 30
    abort_scale_down_delay_seconds: Duration = 30
    analysis: BackgroundAnalysis | None = None

    @model_validator(mode="after")
    def _starting_step_exists(self) -> Canary:
        start = self.analysis.starting_step if self.analysis is not None else None
        if start is not None and start >= len(self.steps):
            raise field_error(
                "analysis.startingStep",
                f"is {start} but there are {len(self.steps)} steps (the first is 0)",
            )
        return self


class Strategy(SpecModel):
    type: Literal["RollingUpdate", "BlueGreen", "Canary"] | None = None
    rolling_update: RollingUpdate | None = None
    blue_green: BlueGreen | None = None
    canary: Canary | None = None

    @model_validator(mode="after")
    def _one(self) -> Strategy:
        given = [
            n
            for n, v in (
                ("RollingUpdate", self.rolling_update),
                ("BlueGreen", self.blue_green),
                ("Canary", self.canary),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError("give only one of rollingUpdate, blueGreen, canary")
        if self.type is not None and given and self.type != given[0]:
            raise field_error("type", f"is {self.type} but the strategy given is {given[0]}")
        if self.type == "BlueGreen" and not given:
            object.__setattr__(self, "blue_green", BlueGreen())
        elif self.type == "Canary" and not given:
            object.__setattr__(self, "canary", Canary())
        elif not given:
            object.__setattr__(self, "rolling_update", RollingUpdate())
        return self

    @property
    def kind(self) -> Literal["RollingUpdate", "BlueGreen", "Canary"]:
        if self.blue_green is not None:
            return "BlueGreen"
        if self.canary is not None:
            return "Canary"
        return "RollingUpdate"

    @property
    def surge_bounds(self) -> tuple[int | str, int | str]:
        """maxSurge and maxUnavailable of whichever strategy applies."""
        if self.canary is not None:
            return self.canary.max_surge, self.canary.max_unavailable
        if self.blue_green is not None:
            return "100%", 0
        ru = self.rolling_update or RollingUpdate()
        return ru.max_surge, ru.max_unavailable

    def analysis_template_names(self) -> set[str]:
        """Every AnalysisTemplate the strategy refers to: steps, background and blue-green analyses."""
        analyses: list[RolloutAnalysis | None] = []
        if self.canary is not None:
            analyses += [self.canary.analysis, *(step.analysis for step in self.canary.steps)]
        if self.blue_green is not None:
            analyses += [self.blue_green.pre_promotion_analysis, self.blue_green.post_promotion_analysis]
        return {name for a in analyses if a is not None for name in a.template_names}
