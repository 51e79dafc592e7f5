"""The ``job`` metric provider as Kubernetes objects: one batch/v1 Job per measurement, and its outcome.

As Argo Rollouts' job metric: a measurement is a Job the user describes (``provider.job.spec``, a JobSpec
passed through); the Job controller runs it, and its ``Complete`` condition is a successful
measurement, its ``Failed`` condition a failed one. The operator never reads the Job's pods.

A Job's name is a pure function of the run, the metric and the measurement's number, so an operator
killed between creating a Job and recording it finds the same Job again (never a second one). The Job
is owned by the Rollout (deleting the Rollout deletes its Jobs) and labelled with the rollout, the
revision and the run, so the operator's watch of labelled Jobs sees it. Its *pods* are deliberately not
labelled ``gapless.dev/rollout``: they are no instances of a revision, and the operator's view of a
revision's pods must not count them.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any, Literal

from gapless.platform.kubernetes.manifests import LABEL_REVISION, LABEL_ROLLOUT
from gapless.spec.analysis import JobProvider

__all__ = [
    "LABEL_METRIC",
    "LABEL_RUN",
    "MEASUREMENT_ANNOTATION",
    "analysis_job",
    "job_name",
    "job_outcome",
]

LABEL_RUN = "gapless.dev/analysis-run"
LABEL_METRIC = "gapless.dev/metric"
MEASUREMENT_ANNOTATION = "gapless.dev/measurement"
"""The measurement's number (1, 2, ...) within its metric."""

_NAME_MAX = 63  # a Job's name becomes its pods' ``job-name`` label value: at most 63 characters


def job_name(rollout: str, run_id: str, metric: str, number: int) -> str:
    """``ROLLOUT-DIGEST-N``: the same run, metric and measurement always give the same name."""
    digest = hashlib.sha256(f"{run_id}\0{metric}\0{number}".encode()).hexdigest()[:10]
    tail = f"-{digest}-{number}"
    return f"{rollout[: _NAME_MAX - len(tail)].rstrip('-.')}{tail}"


def analysis_job(
    provider: JobProvider,
    *,
    rollout: str,
    namespace: str,
    uid: str,
    revision: str,
    run_id: str,
    metric: str,
    number: int,
) -> dict[str, Any]:
    """The Job of one measurement, owned by the Rollout; the pod template's ``restartPolicy`` defaults to
    ``Never`` (Kubernetes requires ``Never`` or ``OnFailure`` in a Job and has no default)."""
    spec = copy.deepcopy(provider.spec)
    pod = spec["template"]["spec"]
    pod.setdefault("restartPolicy", "Never")
    extra = provider.metadata
    labels = dict(extra.labels) if extra is not None else {}
    labels |= {
        LABEL_ROLLOUT: rollout,
        LABEL_REVISION: revision,
        LABEL_RUN: run_id,
        LABEL_METRIC: metric,
    }
    annotations = dict(extra.annotations) if extra is not None else {}
    annotations[MEASUREMENT_ANNOTATION] = str(number)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(rollout, run_id, metric, number),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "gapless.dev/v1alpha1",
                    "kind": "Rollout",
                    "name": rollout,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def job_outcome(job: Mapping[str, Any]) -> tuple[Literal["running", "successful", "failed"], str]:
    """Where a Job stands, from its conditions alone, with a one-line reason."""
    name = job.get("metadata", {}).get("name", "?")
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return "successful", f"Job {name} completed"
        if c.get("type") == "Failed":
            why = c.get("message") or c.get("reason") or "failed"
            return "failed", f"Job {name} failed: {why}"
    return "running", f"Job {name} running"
