"""The rollout verbs against a Kubernetes cluster (``--context`` / ``-n``), through lightkube.

On a cluster the Rollout object is the desired state and the operator (``gapless operator run``) does
the work, so each verb does the Kubernetes-native thing and reads back what the operator wrote:

- ``apply``: server-side apply of the file's Rollout (and AnalysisTemplates) as field manager
  ``gapless``, after the same checks as locally plus the operator's own (``problems``), so a spec the
  operator would refuse is refused here with exit 2 and nothing written.
- ``pause`` / ``resume``: ``spec.paused``; ``undo``: ``spec.template`` set to the template the revision's
  ReplicaSet recorded (``gapless.dev/template``).
- ``promote [--full]`` / ``abort`` / ``retry``: a request annotation (``gapless.dev/promote`` ...) naming
  the current revision's hash and the time, which the operator acts on once.
- ``status``, ``history``, ``events``, ``analysis``: the Rollout's status subresource, its ReplicaSets and
  Pods, and the Kubernetes Events about it, shown in the same shape (and ``-o json|yaml`` documents) as
  the local control plane's answers, so the same renderers print them.

Every write carries the resourceVersion read; a 409 (the Rollout changed meanwhile) reads it again,
checks again and retries. Errors end as the local verbs' do (``gapless.cli.api.report_error``): 2 for bad
input (an unknown context, an unreadable kubeconfig, a Rollout or revision not found), 1 for a request
the Rollout's present state refuses or a cluster that does not answer.

Imported only when ``--context`` or ``-n`` is given: the local verbs never pay for lightkube.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError as KubeError
from lightkube import Client, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.core_v1 import Event, Pod
from lightkube.types import PatchType

from gapless.cli.api import ApiError
from gapless.core.errors import GaplessError, Problem, SpecError

# The names the operator uses (gapless.platform.kubernetes.manifests and .client, and
# gapless.spec.models; tests/k8s/test_cli_cluster.py checks they agree). Importing those modules loads
# the pydantic models, which pause, resume, promote and events do not need.
FIELD_MANAGER = "gapless"
LABEL_ROLLOUT = "gapless.dev/rollout"
LABEL_REVISION = "gapless.dev/revision"
NUMBER_ANNOTATION = "gapless.dev/revision-number"
PROMOTE_ANNOTATION = "gapless.dev/promote"
ABORT_ANNOTATION = "gapless.dev/abort"
RETRY_ANNOTATION = "gapless.dev/retry"
TEMPLATE_ANNOTATION = "gapless.dev/template"
CHANGE_CAUSE_ANNOTATION = "gapless.dev/change-cause"
RolloutResource = create_namespaced_resource("gapless.dev", "v1alpha1", "Rollout", "rollouts")

__all__ = ["Kube", "connect", "kubeconfig_path"]

AnalysisTemplateResource = create_namespaced_resource(
    "gapless.dev", "v1alpha1", "AnalysisTemplate", "analysistemplates"
)
DEFAULT_KUBECONFIG = "~/.kube/config"
RETRIES = 8
"""Writes that meet a 409 are tried again this often, each on a fresh read after a short, growing,
jittered pause (``_backoff``): the operator writes the Rollout's status while it works, and immediate
retries could all land inside its writes."""
_MERGE = PatchType.MERGE
ACK_TIMEOUT = 30.0
"""Seconds ``promote``, ``abort`` and ``retry`` wait for the operator to act on their request."""


def kubeconfig_path() -> Path | None:
    """The kubeconfig file kubectl would read: the first file of ``$KUBECONFIG``, else ``~/.kube/config``.

    None when neither exists (then the in-cluster ServiceAccount is tried).
    """
    env = os.environ.get("KUBECONFIG", "")
    for part in env.split(os.pathsep):
        if part:
            return Path(part).expanduser()
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    return default if default.exists() else None


def _usage(message: str) -> ApiError:
    """Bad input (exit 2, nothing changed)."""
    return ApiError(400, message, [])


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1`` of a write that met a 409: 20 ms doubling to 0.5 s at
    most, each between half and all of that (about 1.6 s over every retry in the worst case)."""
    return min(0.5, 0.02 * (1 << attempt)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


def connect(context: str | None, namespace: str | None) -> Kube:
    """A client of the cluster ``context`` names (default: the kubeconfig's current one), in ``namespace``
    (default: the context's, else ``default``). Exit 2 (``ApiError`` 400) naming the kubeconfig or the
    context when either is wrong."""
    path = kubeconfig_path()
    if path is None and context is not None:
        raise _usage(
            f"--context {context!r}: no kubeconfig ($KUBECONFIG is not set and "
            f"{DEFAULT_KUBECONFIG} does not exist)"
        )
    if path is not None and not path.is_file():
        raise _usage(f"kubeconfig {path}: no such file")
    where = str(path) if path is not None else "the in-cluster ServiceAccount"
    try:
        config = KubeConfig.from_file(path) if path is not None else KubeConfig.from_service_account()
    except ConfigError as e:
        if path is None:
            raise _usage(
                f"no Kubernetes configuration: $KUBECONFIG is not set, {DEFAULT_KUBECONFIG} does not "
                "exist and this is not a pod"
            ) from e
        raise _usage(f"kubeconfig {path}: {e}") from e
    except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable, or YAML that is no kubeconfig
        raise _usage(f"kubeconfig {path}: cannot be read as a kubeconfig ({type(e).__name__}: {e})") from e
    except Exception as e:  # yaml.YAMLError and msgspec's errors have no common base with the above
        raise _usage(f"kubeconfig {path}: cannot be read as a kubeconfig ({type(e).__name__})") from e
    if context is not None and context not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none"
        raise _usage(f"--context {context!r}: no such context in {where} (known: {known})")
    try:
        single = config.get(context_name=context)
    except (ConfigError, KeyError) as e:
        raise _usage(f"{where}: {e}") from e
    if single is None:
        raise _usage(f"{where}: no current context; name one with --context")
    return Kube(single, namespace or single.namespace, where)


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    d: dict[str, Any] = obj.to_dict()
    return d


class Kube:
    """One namespace of one cluster, as the CLI's rollout verbs use it (blocking calls)."""

    def __init__(self, config: SingleConfig, namespace: str, where: str) -> None:
        self.config = config
        self.namespace = namespace
        self.where = where
        try:
            self.client = Client(
                config,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                timeout=httpx2.Timeout(30.0, read=330.0),
            )
        except ConfigError as e:
            raise _usage(f"{where}: context {config.context_name!r}: {e}") from e
        except OSError as e:  # a certificate file named in the kubeconfig cannot be read
            raise _usage(f"{where}: context {config.context_name!r}: {e}") from e

    def close(self) -> None:
        self.client.close()

    # -- reading ------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run a request; a cluster that does not answer ends the command (exit 1) naming the server."""
        try:
            return fn()
        except httpx2.HTTPError as e:
            if isinstance(e, KubeError):
                raise
            raise GaplessError(
                f"the cluster of context {self.config.context_name!r} ({self.config.cluster.server}) "
                f"does not answer: {e}"
            ) from e

    def _not_found(self, name: str) -> ApiError:
        return ApiError(
            404,
            f"rollout {name!r} not found in namespace {self.namespace!r} "
            f"(context {self.config.context_name!r})",
            [],
        )

    def get(self, name: str) -> dict[str, Any]:
        """The Rollout object; 404 (exit 2) when there is none."""
        try:
            return _to_dict(
                self._call(lambda: self.client.get(RolloutResource, name, namespace=self.namespace))
            )
        except KubeError as e:
            if e.status.code == 404:
                raise self._not_found(name) from e
            raise self._refused(e) from e

    def _refused(self, e: KubeError) -> ApiError:
        """A refusal by the apiserver, as the local API's errors are reported (403: exit 1, 4xx: 2)."""
        code = int(e.status.code or 500)
        message = f"the cluster refused: {e.status.message}"
        return ApiError(409 if code in (401, 403, 409) else code, message, [])

    def _list(self, kind: Any, name: str) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            found = self.client.list(kind, namespace=self.namespace, labels={LABEL_ROLLOUT: name})
            return [_to_dict(o) for o in found]

        try:
            return list(self._call(run))
        except KubeError as e:
            raise self._refused(e) from e

    def replica_sets(self, name: str) -> list[dict[str, Any]]:
        return self._list(ReplicaSet, name)

    def pods(self, name: str) -> list[dict[str, Any]]:
        return self._list(Pod, name)

    def rollouts(self) -> list[dict[str, Any]]:
        try:
            return [_to_dict(o) for o in self._call(lambda: list(self.client.list(RolloutResource)))]
        except KubeError as e:
            raise self._refused(e) from e

    def status(self, name: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
        """The status in the local control plane's shape (``gapless status -o json``)."""
        from gapless.cli.kube_view import status_view

        obj = obj if obj is not None else self.get(name)
        return status_view(obj, self.replica_sets(name), self.pods(name), time.time(), self.context_info())

    def context_info(self) -> dict[str, str]:
        return {"context": self.config.context_name, "namespace": self.namespace}

    def history(self, name: str, obj: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from gapless.cli.kube_view import history_view

        obj = obj if obj is not None else self.get(name)
        return history_view(obj, self.replica_sets(name))

    # -- writing ------------------------------------------------------------------------------------

    def _patch(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the Rollout with the resourceVersion read (a 409 when it moved meanwhile)."""
        meta = obj["metadata"]
        body = patch | {
            "metadata": dict(patch.get("metadata") or {}) | {"resourceVersion": meta["resourceVersion"]}
        }
        return _to_dict(
            self._call(
                lambda: self.client.patch(
                    RolloutResource, meta["name"], body, namespace=self.namespace, patch_type=_MERGE
                )
            )
        )

    def _retrying(self, name: str, step: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Read the Rollout, run ``step`` on it (which checks and writes); on a 409 read and run again."""
        for attempt in range(RETRIES):
            obj = self.get(name)
            try:
                return step(obj)
            except KubeError as e:
                if e.status.code == 409 and attempt < RETRIES - 1:
                    time.sleep(_backoff(attempt))
                    continue
                if e.status.code == 404:
                    raise self._not_found(name) from e
                raise self._refused(e) from e
        raise AssertionError("unreachable")

    def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        def step(obj: dict[str, Any]) -> dict[str, Any]:
            meta = obj["metadata"]
            if bool((obj.get("spec") or {}).get("paused")) == paused:
                return {"name": name, "generation": meta.get("generation"), "changed": False}
            got = self._patch(obj, {"spec": {"paused": paused}})
            return {"name": name, "generation": got["metadata"].get("generation"), "changed": True}

        return self._retrying(name, step)

    def _current(self, obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(hash, record) of the revision the operator rolls out now; 409 before it started it."""
        name = obj["metadata"]["name"]
        st = obj.get("status") or {}
        h = str(st.get("currentPodHash") or "")
        rec = (st.get("revisions") or {}).get(h)
        if not h or rec is None or _spec_hash(obj) != h:
            raise ApiError(409, f"rollout {name!r} has not started its current revision yet; try again", [])
        return h, dict(rec)

    def promote(self, name: str, full: bool) -> dict[str, Any]:
        def step(obj: dict[str, Any]) -> dict[str, Any]:
            kind = _strategy_kind(obj)
            if kind == "RollingUpdate":
                raise ApiError(
                    409, f"rollout {name!r} uses a rolling update: there is nothing to promote", []
                )
            h, rec = self._current(obj)
            n = rec.get("number")
            if rec.get("phase") != "progressing":
                raise ApiError(
                    409, f"revision {n} of {name!r} is {rec.get('phase')}: there is nothing to promote", []
                )
            if _aborted(rec):
                raise ApiError(409, f"rollout {name!r} was aborted; use `gapless retry {name}` first", [])
            value = f"{h}{' full' if full else ''} at {_now_stamp()}"
            self._patch(obj, {"metadata": {"annotations": {PROMOTE_ANNOTATION: value}}})
            return {"name": name, "revision": n, "full": full, "hash": h, "request": value}

        result = self._retrying(name, step)
        self.acknowledged(name, result["hash"], "promoteHandled", result["request"])
        return result

    def abort(self, name: str) -> dict[str, Any]:
        def step(obj: dict[str, Any]) -> dict[str, Any]:
            if _strategy_kind(obj) == "RollingUpdate":
                raise ApiError(409, f"rollout {name!r} uses a rolling update; use `gapless undo {name}`", [])
            h, rec = self._current(obj)
            n = rec.get("number")
            if rec.get("phase") != "progressing":
                raise ApiError(
                    409, f"revision {n} of {name!r} is {rec.get('phase')}: there is nothing to abort", []
                )
            value = None
            if not _aborted(rec):
                value = f"{h} at {_now_stamp()}"
                self._patch(obj, {"metadata": {"annotations": {ABORT_ANNOTATION: value}}})
            return {"name": name, "revision": n, "aborted": True, "hash": h, "request": value}

        result = self._retrying(name, step)
        if result["request"] is not None:
            self.acknowledged(name, result["hash"], "abortHandled", result["request"])
        return result

    def retry(self, name: str) -> dict[str, Any]:
        def step(obj: dict[str, Any]) -> dict[str, Any]:
            h, rec = self._current(obj)
            n = rec.get("number")
            if not _aborted(rec) and rec.get("phase") != "failed":
                raise ApiError(409, f"revision {n} of {name!r} was neither aborted nor failed", [])
            value = f"{h} at {_now_stamp()}"
            got = self._patch(obj, {"metadata": {"annotations": {RETRY_ANNOTATION: value}}})
            return {
                "name": name,
                "revision": n,
                "generation": got["metadata"].get("generation"),
                "hash": h,
                "request": value,
            }

        result = self._retrying(name, step)
        self.acknowledged(name, result["hash"], "retryHandled", result["request"])
        return result

    def acknowledged(self, name: str, h: str, key: str, value: str) -> None:
        """Return once the operator has acted on a request (recorded ``value`` under ``key`` in the
        revision's record), as a local command answers once its pass applied it; exit 1 after
        ``ACK_TIMEOUT`` seconds (no operator running, most likely)."""
        for obj in self.changes(name, ACK_TIMEOUT):
            if obj is None:
                raise GaplessError(
                    f"{name}: the request was written ({value!r}) but no operator acted on it within "
                    f"{ACK_TIMEOUT:g}s; is `gapless operator run` running for namespace {self.namespace!r}?"
                )
            records = (obj.get("status") or {}).get("revisions") or {}
            if (records.get(h) or {}).get(key) == value:
                return

    def undo(self, name: str, to_revision: int | None) -> dict[str, Any]:
        from gapless.cli.kube_view import undo_target

        def step(obj: dict[str, Any]) -> dict[str, Any]:
            items = self.history(name, obj)
            current = _spec_hash(obj)
            target = undo_target(items, current, to_revision)
            if target is None and to_revision is not None:
                known = ", ".join(str(r["number"]) for r in items) or "none"
                raise ApiError(404, f"revision {to_revision} of {name!r} not found (known: {known})", [])
            if target is None:
                raise ApiError(409, f"rollout {name!r} has no earlier revision to go back to", [])
            meta = obj["metadata"]
            if target["hash"] == current:
                return {
                    "name": name,
                    "generation": meta.get("generation"),
                    "changed": False,
                    "revision": target["number"],
                }
            if not target.get("template"):
                raise ApiError(
                    409,
                    f"revision {target['number']} of {name!r} has no recorded template (its ReplicaSet "
                    f"lacks {TEMPLATE_ANNOTATION}): apply its file again instead",
                    [],
                )
            body = json.loads(json.dumps(obj))
            body.pop("status", None)
            body["spec"]["template"] = target["template"]
            annotations = dict(body["metadata"].get("annotations") or {})
            annotations.pop(CHANGE_CAUSE_ANNOTATION, None)
            if target.get("changeCause"):
                annotations[CHANGE_CAUSE_ANNOTATION] = target["changeCause"]
            body["metadata"]["annotations"] = annotations
            got = _to_dict(self._call(lambda: self.client.replace(RolloutResource.from_dict(body))))
            from gapless.strategies.revisions import next_number  # the operator's rule for a reused revision

            number = next_number(int(target["number"]), [int(r["number"]) for r in items])
            return {
                "name": name,
                "generation": got["metadata"].get("generation"),
                "changed": True,
                "revision": number,
                "from": target["number"],
            }

        return self._retrying(name, step)

    def apply(self, file: Path, change_cause: str | None) -> tuple[list[str], dict[str, Any] | None]:
        """Server-side apply of a file's AnalysisTemplates and Rollout; (lines about templates, result)."""
        from gapless.platform.kubernetes.manifests import problems
        from gapless.spec.load import load_documents
        from gapless.spec.models import template_hash

        docs = load_documents(file)
        if len(docs.rollouts) > 1:
            names = ", ".join(r.name for r in docs.rollouts)
            raise SpecError(
                str(file), [Problem("", f"one rollout per file, found {len(docs.rollouts)}: {names}")]
            )
        for r in docs.rollouts:
            found = problems(r)
            if found:
                raise SpecError(f"{file} (on Kubernetes)", [Problem(f, m) for f, m in found])
        lines = []
        for t in docs.templates:
            doc = t.to_document(as_written=True)
            doc["metadata"] = dict(doc.get("metadata") or {}) | {"namespace": self.namespace}
            before = self._generation(AnalysisTemplateResource, t.metadata.name)
            got = self._apply(AnalysisTemplateResource.from_dict(doc))
            gen = got["metadata"].get("generation")
            lines.append(
                f"analysistemplate {t.metadata.name} {'unchanged' if before == gen else 'configured'} "
                f"(generation {gen})"
            )
        if not docs.rollouts:
            return lines, None
        rollout = docs.rollouts[0]
        doc = rollout.to_document(as_written=True)
        meta = doc.setdefault("metadata", {})
        meta["namespace"] = self.namespace
        if change_cause is not None:
            meta["annotations"] = dict(meta.get("annotations") or {}) | {
                CHANGE_CAUSE_ANNOTATION: change_cause
            }
        before = self._generation(RolloutResource, rollout.name)
        got = self._apply(RolloutResource.from_dict(doc))
        gen = got["metadata"].get("generation")
        return lines, {
            "name": rollout.name,
            "generation": gen,
            "changed": before != gen,
            "revisionHash": template_hash(rollout.spec.template),
        }

    def _generation(self, kind: Any, name: str) -> int | None:
        try:
            got = _to_dict(self._call(lambda: self.client.get(kind, name, namespace=self.namespace)))
        except KubeError as e:
            if e.status.code == 404:
                return None
            raise self._refused(e) from e
        gen = got["metadata"].get("generation")
        return None if gen is None else int(gen)

    def _apply(self, res: Any) -> dict[str, Any]:
        try:
            return _to_dict(
                self._call(lambda: self.client.apply(res, field_manager=FIELD_MANAGER, force=True))
            )
        except KubeError as e:
            if e.status.code == 404:
                raise ApiError(
                    400,
                    f"the cluster has no {res.kind} resource (install the CRDs: `kubectl apply -k "
                    f"deploy/kubernetes/`) or no namespace {self.namespace!r}: {e.status.message}",
                    [],
                ) from e
            if e.status.code == 422:
                raise ApiError(400, f"the cluster refused the {res.kind}: {e.status.message}", []) from e
            raise self._refused(e) from e

    # -- events -------------------------------------------------------------------------------------

    def events(self, name: str | None) -> tuple[list[dict[str, Any]], str]:
        """Kubernetes Events about Rollouts (one, or all in the namespace), oldest first; and the list's
        resourceVersion to follow from."""
        fields: dict[str, Any] = {"involvedObject.kind": "Rollout"}
        if name:
            fields["involvedObject.name"] = name
        from gapless.cli.kube_view import event_view

        def run() -> tuple[list[dict[str, Any]], str]:
            listing = self.client.list(Event, namespace=self.namespace, fields=fields)
            items = [event_view(_to_dict(e)) for e in listing]
            return items, listing.resourceVersion

        try:
            items, version = self._call(run)
        except KubeError as e:
            raise self._refused(e) from e
        return sorted(items, key=lambda e: e["time"]), version

    def follow_events(self, name: str | None, version: str) -> Iterator[dict[str, Any]]:
        from gapless.cli.kube_view import event_view

        fields: dict[str, Any] = {"involvedObject.kind": "Rollout"}
        if name:
            fields["involvedObject.name"] = name
        for kind, obj in self._call(
            lambda: self.client.watch(
                Event, namespace=self.namespace, fields=fields, resource_version=version
            )
        ):
            if kind in ("ADDED", "MODIFIED"):
                yield event_view(_to_dict(obj))

    # -- watching -----------------------------------------------------------------------------------

    def watch(self, name: str | None) -> Iterator[dict[str, Any]]:
        """Each Rollout (one, or every one in the namespace) now and at each change of it, by watch."""
        fields: dict[str, Any] | None = {"metadata.name": name} if name else None

        def listing() -> tuple[list[dict[str, Any]], str]:
            found = self.client.list(RolloutResource, namespace=self.namespace, fields=fields)
            return [_to_dict(o) for o in found], found.resourceVersion

        items, version = self._call(listing)
        if name is not None and not items:
            raise self._not_found(name)
        yield from items
        for kind, obj in self._call(
            lambda: self.client.watch(
                RolloutResource, namespace=self.namespace, fields=fields, resource_version=version
            )
        ):
            d = _to_dict(obj)
            if kind == "DELETED":
                if name is not None:
                    raise GaplessError(f"rollout {name!r} was deleted")
                continue
            yield d

    def changes(self, name: str | None, timeout: float | None) -> Iterator[dict[str, Any] | None]:
        """``watch`` from a thread: each object as it comes, or None when ``timeout`` passes first.

        When the caller stops reading (returns, or the timeout passed), the thread ends its watch at the
        next change of the Rollout: a long-lived process (the dashboard of a cluster, which waits for the
        operator's acknowledgement on every promote) does not keep a watch per request forever.
        """
        q: queue.Queue[tuple[str, Any]] = queue.Queue()
        done = threading.Event()

        def pump() -> None:
            try:
                for obj in self.watch(name):
                    if done.is_set():
                        return  # closes the watch's stream
                    q.put(("obj", obj))
            except BaseException as e:  # handed to the reading thread, which raises it
                q.put(("error", e))

        threading.Thread(target=pump, daemon=True, name="gapless-watch").start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    what, value = q.get(timeout=left)
                except queue.Empty:
                    yield None
                    return
                if what == "error":
                    raise value
                yield value
        finally:
            done.set()


def _spec_hash(obj: dict[str, Any]) -> str:
    """The template hash of the Rollout's spec (the revision the operator rolls out to)."""
    from gapless.controller.kubernetes import rollout_model
    from gapless.spec.models import template_hash

    try:
        return template_hash(rollout_model(obj).spec.template)
    except SpecError:
        return str((obj.get("status") or {}).get("currentPodHash") or "")


def _strategy_kind(obj: dict[str, Any]) -> str:
    strategy = (obj.get("spec") or {}).get("strategy") or {}
    if strategy.get("canary") is not None:
        return "Canary"
    if strategy.get("blueGreen") is not None:
        return "BlueGreen"
    return "RollingUpdate"


def _aborted(rec: dict[str, Any]) -> bool:
    return (rec.get("stepState") or {}).get("aborted_at") is not None


def number_of(rs: dict[str, Any]) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(NUMBER_ANNOTATION, "0") or 0)
    except ValueError:
        return 0


def revision_of(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("labels") or {}).get(LABEL_REVISION, ""))
