"""Where instances run: the ``Platform`` seam and its local implementation.

The controller depends on ``base`` only (frozen records and a Protocol), so a Kubernetes platform can
replace ``LocalPlatform`` later without touching the reconcile logic. Probes and the prober live here too
because the platform decides how an instance is reached; on Kubernetes the kubelet would run them.
"""

from gapless.platform.base import (
    ENV_INSTANCE,
    ENV_REVISION,
    ENV_ROLE,
    ENV_ROLLOUT,
    ENV_STATE_DIR,
    ROLE_CONTROL_PLANE,
    ROLE_INSTANCE,
    ROLE_ROUTER,
    DiscoveredProcess,
    InstanceHandle,
    InstanceSpec,
    InstanceStartError,
    InstanceStopError,
    Platform,
    ResourceUsage,
    StopResult,
    marker_env,
)
from gapless.platform.local import LocalPlatform
from gapless.platform.prober import InstanceProber
from gapless.platform.probes import ProbeResult, run_handler, run_probe

__all__ = [
    "ENV_INSTANCE",
    "ENV_REVISION",
    "ENV_ROLE",
    "ENV_ROLLOUT",
    "ENV_STATE_DIR",
    "ROLE_CONTROL_PLANE",
    "ROLE_INSTANCE",
    "ROLE_ROUTER",
    "DiscoveredProcess",
    "InstanceHandle",
    "InstanceProber",
    "InstanceSpec",
    "InstanceStartError",
    "InstanceStopError",
    "LocalPlatform",
    "Platform",
    "ProbeResult",
    "ResourceUsage",
    "StopResult",
    "marker_env",
    "run_handler",
    "run_probe",
]
