"""Pydantic models of the Rollout document.

Field names and defaults follow the Kubernetes Deployment (``replicas``, ``minReadySeconds``,
``progressDeadlineSeconds``, probes, ``lifecycle.preStop``, ``terminationGracePeriodSeconds``,
``strategy.rollingUpdate``) so that a Kubernetes user reads a gapless spec without a manual, and so that
the same spec can later drive a Kubernetes platform. Python attributes are snake_case; the YAML uses the
camelCase aliases. Every model forbids unknown fields: a typo is an error, never silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator
from pydantic.alias_generators import to_camel

from gapless.spec.base import IntOrPercent, SpecModel, check_listen, field_error
from gapless.spec.router import RouterSettings
from gapless.spec.strategy import RollingUpdate, Strategy

__all__ = [
    "CHANGE_CAUSE_ANNOTATION",
    "ContainerPort",
    "DnsLabel",
    "ExecAction",
    "HTTPGetAction",
    "HTTPHeader",
    "IntOrPercent",
    "Lifecycle",
    "Metadata",
    "PreStopHandler",
    "Probe",
    "Resources",
    "RollingUpdate",
    "Rollout",
    "RolloutSpec",
    "SleepAction",
    "Strategy",
    "TCPSocketAction",
    "Template",
    "field_error",
    "template_hash",
]

API_VERSION = "gapless.dev/v1alpha1"
CHANGE_CAUSE_ANNOTATION = "gapless.dev/change-cause"
"""Why the rollout was last changed (``gapless apply --change-cause``); the revision a change makes keeps
it, as a Kubernetes ReplicaSet keeps its Deployment's ``kubernetes.io/change-cause``."""
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
"""Kubernetes' rule for environment variable names."""
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP header name is an RFC 9110 token."""
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
MAX_SECONDS = 315_360_000.0
"""Ten years: the longest duration a spec may give (beyond it a deadline or delay is a typo)."""


def _header_value(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain line breaks or NUL")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME_RE.match(value):
        raise ValueError("must be an HTTP header name: letters, digits and !#$%&'*+-.^_`|~")
    return value


def _label_keys(value: dict[str, str]) -> dict[str, str]:
    for k in value:
        if len(k) > 253 or not _LABEL_KEY_RE.match(k):
            raise ValueError(
                f"key {k[:40]!r}: must be letters, digits, '-', '_', '.' or '/', "
                "starting and ending with a letter or digit"
            )
    return value


def _nonempty_argv(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must name a program: a non-empty list of arguments")
    if not value[0].strip():
        raise ValueError("the program (first element) must not be empty")
    return value


Argv = Annotated[list[str], AfterValidator(_nonempty_argv)]


def _env_mapping(value: Any) -> Any:
    """Accept both a mapping and the Kubernetes list form ``[{name, value}]``."""
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for i, item in enumerate(value):
            if not isinstance(item, dict) or "name" not in item:
                raise ValueError(f"item {i}: expected {{name, value}}")
            extra = set(item) - {"name", "value"}
            if extra:
                raise ValueError(f"item {i}: unknown field(s) {sorted(extra)}")
            out[str(item["name"])] = item.get("value", "")
        return out
    return value


def _env_values(value: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in value.items():
        if len(k) > 256 or not _ENV_NAME_RE.match(k):
            raise ValueError(
                f"invalid variable name {k[:40]!r}: letters, digits, '_', '-' or '.', not starting with a digit"
            )
        if isinstance(v, str) and "\0" in v:
            raise ValueError(f"{k}: value must not contain NUL")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k}: value must be a finite number")
        if isinstance(v, bool | dict | list) or v is None:
            raise ValueError(f"{k}: value must be a string or a number")
        out[k] = str(v)
    return out


EnvMap = Annotated[dict[str, Any], BeforeValidator(_env_mapping), AfterValidator(_env_values)]


class ExecAction(SpecModel):
    """Run a program (argv list, no shell); exit status 0 is success."""

    command: Argv


class HTTPHeader(SpecModel):
    name: Annotated[str, AfterValidator(_header_name)]
    value: Annotated[str, AfterValidator(_header_value)]


class HTTPGetAction(SpecModel):
    """An HTTP GET against the instance; a status from 200 to 399 is success.

    ``port`` defaults to the instance's own port (the one given in ``PORT``).
    """

    path: str = "/"
    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"
    scheme: Literal["HTTP"] = "HTTP"
    http_headers: list[HTTPHeader] = Field(default_factory=list)

    @model_validator(mode="after")
    def _path_absolute(self) -> HTTPGetAction:
        if not self.path.startswith("/"):
            raise field_error("path", "must start with '/'")
        return self


class TCPSocketAction(SpecModel):
    """Success when a TCP connection opens; ``port`` defaults to the instance's own port."""

    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"


class SleepAction(SpecModel):
    seconds: float = Field(ge=0, le=3600)


def _exactly_one(model: BaseModel, names: tuple[str, ...], what: str) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    aliases = ", ".join(to_camel(n) for n in names)
    if len(given) != 1:
        raise ValueError(f"{what} needs exactly one of {aliases}; got {len(given)}")


class Probe(SpecModel):
    """A readiness, liveness or startup probe, with Kubernetes' fields and defaults."""

    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: float = Field(default=0, ge=0, le=MAX_SECONDS)
    period_seconds: float = Field(default=10, gt=0, le=MAX_SECONDS)
    timeout_seconds: float = Field(default=1, gt=0, le=MAX_SECONDS)
    success_threshold: int = Field(default=1, ge=1, le=1_000_000)
    failure_threshold: int = Field(default=3, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        _exactly_one(self, ("http_get", "tcp_socket", "exec"), "a probe")
        return self


class PreStopHandler(SpecModel):
    """What runs before SIGTERM: a program, an HTTP GET, or a pause."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    sleep: SleepAction | None = None

    @model_validator(mode="after")
    def _one_handler(self) -> PreStopHandler:
        _exactly_one(self, ("exec", "http_get", "sleep"), "preStop")
        return self


class Lifecycle(SpecModel):
    pre_stop: PreStopHandler | None = None


_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY_RE = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_RESOURCE_NAME_RE = re.compile(r"^([a-z0-9.-]+/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")


def _port_name(value: str | None) -> str | None:
    if value is not None and (len(value) > 15 or not _PORT_NAME_RE.match(value) or value.isdigit()):
        raise ValueError("must be at most 15 lowercase letters, digits or '-' (an IANA service name)")
    return value


def _quantity(value: str | int | float) -> str | int | float:
    if isinstance(value, bool) or (isinstance(value, float) and value < 0):
        raise ValueError("must be a Kubernetes quantity such as 100m, 0.5 or 128Mi")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"must be a Kubernetes quantity such as 100m, 0.5 or 128Mi, not {value[:40]!r}")
    return value


def _resource_names(value: dict[str, Any]) -> dict[str, Any]:
    for k in value:
        if len(k) > 253 or not _RESOURCE_NAME_RE.match(k):
            raise ValueError(f"{k[:40]!r} is not a resource name (cpu, memory, example.com/gpu ...)")
    return value


def _check_requires_schema(value: str | None) -> str | None:
    if value is not None and (not value or ":" in value or not value.isprintable() or len(value) > 63):
        raise ValueError("must be a migration name: 1 to 63 printable characters, no ':'")
    return value


class ContainerPort(SpecModel):
    """A port of the main container on Kubernetes (``containerPort``, as in a PodSpec)."""

    container_port: int = Field(ge=1, le=65535)
    name: Annotated[str | None, AfterValidator(_port_name)] = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


Quantity = Annotated[str | int | float, AfterValidator(_quantity)]


class Resources(SpecModel):
    """Requests and limits of the main container on Kubernetes (``cpu: 100m``, ``memory: 128Mi``)."""

    requests: Annotated[dict[str, Quantity], AfterValidator(_resource_names)] = Field(default_factory=dict)
    limits: Annotated[dict[str, Quantity], AfterValidator(_resource_names)] = Field(default_factory=dict)


class Template(SpecModel):
    """What an instance is. Any change here makes a new revision; see ``template_hash``.

    ``image``, ``ports``, ``resources`` and ``podSpec`` are read on Kubernetes only (the local platform
    runs ``command`` as a process and ignores them); ``podSpec`` is passed through to the pods' PodSpec
    (volumes, sidecars, serviceAccountName, nodeSelector, tolerations ...).
    """

    command: Argv
    env: EnvMap = Field(default_factory=dict)
    working_dir: str | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    termination_grace_period_seconds: float = Field(default=30, ge=0, le=86_400)
    requires_schema: Annotated[str | None, AfterValidator(_check_requires_schema)] = None
    """The database migration this revision's code expects (e.g. ``0002_email``); see ``gapless migrate``.

    ``gapless migrate complete`` refuses while a revision with live instances declares an older one.
    Left out of the template hash when absent, so templates written before it keep their revisions.
    """
    image: str | None = Field(default=None, min_length=1, max_length=1024)
    ports: list[ContainerPort] | None = None
    resources: Resources | None = None
    pod_spec: dict[str, Any] | None = None


def _check_name(value: str) -> str:
    if len(value) > 63 or not _NAME_RE.match(value):
        raise ValueError(
            "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_check_name)]
"""A Kubernetes object name: a DNS-1123 label."""


class Metadata(SpecModel):
    name: DnsLabel
    labels: Annotated[dict[str, str], AfterValidator(_label_keys)] = Field(default_factory=dict)
    annotations: Annotated[dict[str, str], AfterValidator(_label_keys)] = Field(default_factory=dict)


class RolloutSpec(SpecModel):
    replicas: int = Field(default=1, ge=0, le=1000)
    listen: Annotated[str, AfterValidator(check_listen)]
    paused: bool = False
    min_ready_seconds: float = Field(default=0, ge=0, le=MAX_SECONDS)
    progress_deadline_seconds: float = Field(default=600, gt=0, le=MAX_SECONDS)
    revision_history_limit: int = Field(default=10, ge=0, le=1000)
    template: Template
    strategy: Strategy = Field(default_factory=Strategy)
    router: RouterSettings = Field(default_factory=RouterSettings)

    @model_validator(mode="after")
    def _preview_differs(self) -> RolloutSpec:
        bg = self.strategy.blue_green
        if bg is not None and bg.preview_listen is not None and bg.preview_listen == self.listen:
            raise field_error("strategy.blueGreen.previewListen", "must differ from spec.listen")
        if bg is not None and bg.pre_promotion_checks and bg.preview_listen is None:
            raise field_error(
                "strategy.blueGreen.previewListen", "is required when prePromotionChecks are given"
            )
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Rollout(SpecModel):
    """A whole Rollout document."""

    api_version: Literal["gapless.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: Metadata
    spec: RolloutSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_document(self, *, as_written: bool = False) -> dict[str, Any]:
        """The document as YAML/JSON-ready data with camelCase keys.

        ``as_written`` leaves out the fields the author did not set, so a receiver can tell "not
        mentioned" from "set to the default" (``paused`` keeps a ``gapless pause`` in force that way).
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=as_written)


_HASHED_ONLY_WHEN_SET = ("requiresSchema", "image", "ports", "resources", "podSpec")


def template_hash(template: Template) -> str:
    """A stable short hash of the template: equal templates give the same revision.

    Like Kubernetes' pod-template-hash, it is computed over the fully defaulted template, so writing a
    default explicitly does not create a new revision.
    """
    data = template.model_dump(mode="json", by_alias=True)
    # Fields added after revisions existed are hashed only when set, so an old template's hash is unchanged.
    for key in _HASHED_ONLY_WHEN_SET:
        if data.get(key) is None:
            data.pop(key, None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
