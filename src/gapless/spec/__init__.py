"""The validated model of gapless's YAML documents (the Rollout spec) and its loader."""

from gapless.spec.load import load_rollout, parse_rollout
from gapless.spec.models import (
    ExecAction,
    HTTPGetAction,
    HTTPHeader,
    IntOrPercent,
    Lifecycle,
    Metadata,
    PreStopHandler,
    Probe,
    RollingUpdate,
    Rollout,
    RolloutSpec,
    SleepAction,
    Strategy,
    TCPSocketAction,
    Template,
    template_hash,
)

__all__ = [
    "ExecAction",
    "HTTPGetAction",
    "HTTPHeader",
    "IntOrPercent",
    "Lifecycle",
    "Metadata",
    "PreStopHandler",
    "Probe",
    "RollingUpdate",
    "Rollout",
    "RolloutSpec",
    "SleepAction",
    "Strategy",
    "TCPSocketAction",
    "Template",
    "load_rollout",
    "parse_rollout",
    "template_hash",
]
