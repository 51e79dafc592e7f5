"""``gapless logs NAME --context C``: the pods' logs through the API (``pods/log``), as the local verb prints.

On a cluster the instances are the Rollout's pods (label ``gapless.dev/rollout``) and the log is the
main container's (``app``), read from the kubelet through the apiserver. The local flags map onto the
API's: ``--since`` to ``sinceSeconds``, ``--tail`` to ``tailLines``, ``--timestamps`` to ``timestamps``
(the kubelet's time of each line, printed as locally), ``-f`` to ``follow`` (one stream per pod, the
pods there when the command started); ``--revision N`` picks the pods whose ``gapless.dev/revision``
is the hash of revision N, ``--instance POD`` one pod.

A pod whose log the cluster cannot give (a pod not yet scheduled, a node whose kubelet does not answer,
or a node without one, such as kwok's) is reported on stderr naming the pod and the cluster's answer;
the others are still printed, and the command exits 1.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import httpx2
from lightkube import ApiError as KubeError
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from gapless.cli.kube import LABEL_REVISION, Kube, number_of, revision_of
from gapless.cli.times import rfc3339
from gapless.core.errors import GaplessError

__all__ = ["CONTAINER", "show_cluster_logs"]

CONTAINER = "app"
"""The main container of every pod the operator makes (``gapless.platform.kubernetes.manifests``)."""
_COLORS = ["cyan", "magenta", "green", "yellow", "blue", "red"]


def _pods(kube: Kube, name: str, revision: int | None, instance: str | None) -> list[str]:
    pods = kube.pods(name)
    if revision is not None:
        hashes = {
            str((rs["metadata"].get("labels") or {}).get(LABEL_REVISION, ""))
            for rs in kube.replica_sets(name)
            if number_of(rs) == revision
        }
        if not hashes:
            raise GaplessError(f"revision {revision} of {name!r} not found")
        pods = [p for p in pods if revision_of(p) in hashes]
    names = sorted(p["metadata"]["name"] for p in pods)
    if instance is not None:
        if instance not in names:
            raise GaplessError(
                f"no logs of instance {instance!r} of rollout {name!r}"
                + (f" revision {revision}" if revision is not None else "")
                + f" (known: {', '.join(names) or 'none'})"
            )
        return [instance]
    if not names:
        kube.get(name)  # a Rollout that does not exist: exit 2 naming it
    return names


def _line(pod: str, raw: str, color: str, timestamps: bool) -> Text:
    t = Text(f"{pod} ", style=color)
    line = raw.rstrip("\r\n")
    if timestamps:  # the API puts RFC 3339 (nanoseconds) and a space before each line
        stamp, _, rest = line.partition(" ")
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            t.append(f"{rfc3339(when)} ")
            line = rest
        except ValueError:
            pass
    t.append(line)
    return t


def show_cluster_logs(
    kube: Kube,
    name: str,
    *,
    revision: int | None,
    follow: bool,
    tail: int,
    console: Console,
    err: Console,
    instance: str | None = None,
    since: float | None = None,
    timestamps: bool = False,
) -> int:
    """Print the pods' logs; 0 when every pod's log was read, 1 when the cluster refused one."""
    pods = _pods(kube, name, revision, instance)
    since_seconds = None if since is None else max(1, math.ceil(time.time() - since))
    tail_lines = None if tail < 0 else tail
    colors = {p: _COLORS[i % len(_COLORS)] for i, p in enumerate(pods)}
    failed: list[str] = []

    def stream(pod: str) -> Iterator[str]:
        return kube.client.log(
            pod,
            namespace=kube.namespace,
            container=CONTAINER,
            follow=follow,
            since=since_seconds,
            tail_lines=tail_lines,
            timestamps=timestamps,
        )

    def refused(pod: str, e: KubeError) -> None:
        failed.append(pod)
        err.print(
            f"[red]error:[/] the cluster gives no logs of pod {escape(pod)} "
            f"(HTTP {e.status.code}): {escape(str(e.status.message or e))}",
            highlight=False,
        )

    if not follow:
        for pod in pods:
            try:
                for raw in kube._call(lambda pod=pod: list(stream(pod))):  # type: ignore[misc]
                    console.print(_line(pod, raw, colors[pod], timestamps), highlight=False, soft_wrap=True)
            except KubeError as e:
                refused(pod, e)
        return 1 if failed else 0
    lines: queue.Queue[tuple[str, str | KubeError | GaplessError | None]] = queue.Queue()

    def pump(pod: str) -> None:
        try:
            for raw in stream(pod):
                lines.put((pod, raw))
        except KubeError as e:
            lines.put((pod, e))
        except httpx2.HTTPError as e:
            lines.put((pod, GaplessError(f"the cluster ({kube.config.cluster.server}) does not answer: {e}")))
        lines.put((pod, None))

    for pod in pods:
        threading.Thread(target=pump, args=(pod,), daemon=True, name=f"logs {pod}").start()
    open_streams = len(pods)
    while open_streams:
        pod, item = lines.get()
        if item is None:
            open_streams -= 1
        elif isinstance(item, KubeError):
            refused(pod, item)
        elif isinstance(item, GaplessError):
            raise item
        else:
            console.print(_line(pod, item, colors[pod], timestamps), highlight=False, soft_wrap=True)
    return 1 if failed else 0
