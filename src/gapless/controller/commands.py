"""What users ask of the control plane: apply a spec, pause, resume, undo, remove.

Each command validates, writes the new desired state in one transaction and wakes the loop; none of them
starts or stops anything itself. That keeps a single writer of instances (the reconcile loop) and makes
every command safe to repeat.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gapless.analysis.from_spec import template_problems
from gapless.controller.analysis import run_summary
from gapless.controller.haproxy import haproxy_problems
from gapless.controller.reconcile import Controller
from gapless.core.clock import Clock
from gapless.core.errors import GaplessError, NotFoundError, Problem, SpecError
from gapless.spec.analysis import AnalysisTemplate
from gapless.spec.models import CHANGE_CAUSE_ANNOTATION, Rollout, Template, template_hash
from gapless.spec.strategy import RolloutAnalysis, Strategy
from gapless.store.records import AnalysisTemplateRecord, RevisionRecord, RolloutRecord
from gapless.store.sqlite import Store
from gapless.strategies.plan import StepState
from gapless.strategies.revisions import fresh_rollout, undo_target
from gapless.strategies.schema import schema_gone

__all__ = ["SUPPORTED_STRATEGIES", "Commands", "ConflictError"]

SUPPORTED_STRATEGIES = frozenset({"RollingUpdate", "Canary", "BlueGreen"})


class ConflictError(GaplessError):
    """The request is valid but cannot be done in the current state."""


class Commands:
    def __init__(self, store: Store, controller: Controller, clock: Clock) -> None:
        self._store = store
        self._controller = controller
        self._clock = clock

    def apply(self, rollout: Rollout) -> dict[str, Any]:
        """Store a new desired spec. A changed template makes a new revision on the next pass."""
        now = self._clock.now()
        name = rollout.name
        kind = rollout.spec.strategy.kind
        if kind not in SUPPORTED_STRATEGIES:
            field = "blueGreen" if kind == "BlueGreen" else "canary"
            raise SpecError(
                name,
                [Problem(f"spec.strategy.{field}", "this strategy is not available yet in this version")],
            )
        router_problems = haproxy_problems(rollout.spec)
        if router_problems:
            raise SpecError(name, router_problems)
        doc = rollout.to_document()
        h = template_hash(rollout.spec.template)
        with self._store.transaction():
            missing = [
                Problem(
                    path, f"no AnalysisTemplate named {ref!r}; apply it first (it may be in the same file)"
                )
                for path, ref in template_refs(rollout.spec.strategy)
                if self._store.find_analysis_template(ref) is None
            ]
            if missing:
                raise SpecError(name, missing)
            rec = self._store.find_rollout(name)
            if rec is not None and "paused" not in rollout.spec.model_fields_set:
                # Like kubectl apply: a file that does not mention `paused` keeps `gapless pause` in force.
                doc["spec"]["paused"] = bool(rec.spec["spec"].get("paused", False))
            if rec is not None and rec.deleting:
                raise ConflictError(f"rollout {name!r} is being removed; wait until it is gone")
            listen_owner = next(
                (
                    r.name
                    for r in self._store.rollouts()
                    if r.name != name and r.spec["spec"]["listen"] == rollout.spec.listen
                ),
                None,
            )
            if listen_owner is not None:
                raise SpecError(
                    name,
                    [
                        Problem(
                            "spec.listen",
                            f"{rollout.spec.listen} is already used by rollout {listen_owner!r}",
                        )
                    ],
                )
            changed = rec is None or rec.spec != doc
            generation = (rec.generation if rec else 0) + (1 if changed else 0)
            before = template_hash(Rollout.model_validate(rec.spec).spec.template) if rec else None
            if changed:
                self._store.put_rollout(
                    RolloutRecord(
                        name=name,
                        spec=doc,
                        generation=generation,
                        created_at=rec.created_at if rec else now,
                        updated_at=now,
                        status=rec.status if rec else {},
                    )
                )
            cause = rollout.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION)
            restarted = self._restart_revision(name, h, now, again=before != h, cause=cause)
        if changed or restarted:
            self._controller.event(name, h, "Applied", f"generation {generation}")
        self._controller.wake()
        return {"name": name, "generation": generation, "changed": changed, "revisionHash": h}

    def _restart_revision(self, name: str, h: str, now: float, *, again: bool, cause: str | None) -> bool:
        """A template that has a revision already starts a fresh rollout of it when applied.

        ``again``: the template differs from the one in force (an earlier template applied again, the
        common rollback by reverting a commit); otherwise only a failed revision is restarted (retry).
        """
        revisions = self._store.revisions(name)
        rev = next((r for r in revisions if r.hash == h), None)
        if rev is None or not (again or rev.phase == "failed"):
            return False
        self._store.put_revision(fresh_rollout(rev, revisions, now, cause))
        self._store.deactivate_analysis_runs(name, h)
        return True

    def _update_spec(self, name: str, change: str, mutate: Any) -> dict[str, Any]:
        now = self._clock.now()
        with self._store.transaction():
            rec = self._store.rollout(name)
            doc = mutate(dict(rec.spec))
            rollout = Rollout.model_validate(doc)
            new_doc = rollout.to_document()
            if new_doc == rec.spec:
                return {"name": name, "generation": rec.generation, "changed": False}
            self._store.put_rollout(replace(rec, spec=new_doc, generation=rec.generation + 1, updated_at=now))
        self._controller.event(
            name, template_hash(rollout.spec.template), change, f"generation {rec.generation + 1}"
        )
        self._controller.wake()
        return {"name": name, "generation": rec.generation + 1, "changed": True}

    def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            doc["spec"] = dict(doc["spec"]) | {"paused": paused}
            return doc

        return self._update_spec(name, "Paused" if paused else "Resumed", mutate)

    def undo(self, name: str, to_revision: int | None) -> dict[str, Any]:
        """Go back to an earlier revision's template (default: the one before the current)."""
        rec = self._store.rollout(name)
        current = template_hash(Rollout.model_validate(rec.spec).spec.template)
        revisions = self._store.revisions(name)
        found = undo_target(revisions, current, to_revision)
        if found is None and to_revision is not None:
            known = ", ".join(str(r.number) for r in revisions) or "none"
            raise NotFoundError(f"revision {to_revision} of {name!r} not found (known: {known})")
        if found is None:
            raise ConflictError(f"rollout {name!r} has no earlier revision to go back to")
        target = found
        if target.hash == current:
            return {"name": name, "generation": rec.generation, "changed": False, "revision": target.number}
        required = target.template.get("requiresSchema")
        if isinstance(required, str) and required:
            gone = schema_gone(required, self._controller.schema.snapshot())
            if gone is not None:
                raise ConflictError(
                    f"cannot go back to revision {target.number} of {name!r}: its code needs schema version "
                    f"{required}, and {gone}. Roll forward with a revision written for the current schema"
                )
        template = Template.model_validate(target.template)
        now = self._clock.now()
        with self._store.transaction():
            fresh = fresh_rollout(target, revisions, now)
            number = fresh.number
            self._store.put_revision(fresh)
            self._store.deactivate_analysis_runs(name, target.hash)

            def mutate(doc: dict[str, Any]) -> dict[str, Any]:
                doc["spec"] = dict(doc["spec"]) | {
                    "template": template.model_dump(mode="json", by_alias=True, exclude_none=True)
                }
                return doc

            result = self._update_spec(name, "Undo", mutate)
        return result | {"revision": number, "from": target.number}

    def _target(self, name: str) -> tuple[Rollout, RevisionRecord]:
        rec = self._store.rollout(name)
        rollout = Rollout.model_validate(rec.spec)
        h = template_hash(rollout.spec.template)
        rev = next((r for r in self._store.revisions(name) if r.hash == h), None)
        if rev is None:
            raise ConflictError(f"rollout {name!r} has not started its current revision yet; try again")
        return rollout, rev

    def _set_state(self, name: str, rev: RevisionRecord, state: StepState, event: str, message: str) -> None:
        self._store.put_revision(replace(rev, step_state=state.to_json()))
        self._controller.event(name, rev.hash, event, message)
        self._controller.wake()

    def promote(self, name: str, *, full: bool) -> dict[str, Any]:
        """End the current pause or step (``full``: skip every remaining step)."""
        with self._store.transaction():
            rollout, rev = self._target(name)
            kind = rollout.spec.strategy.kind
            if kind == "RollingUpdate":
                raise ConflictError(f"rollout {name!r} uses a rolling update: there is nothing to promote")
            if rev.phase != "progressing":
                raise ConflictError(
                    f"revision {rev.number} of {name!r} is {rev.phase}: there is nothing to promote"
                )
            st = StepState.from_json(rev.step_state)
            if st.aborted_at is not None:
                raise ConflictError(f"rollout {name!r} was aborted; use `gapless retry {name}` first")
            st = replace(st, full=st.full or full, promote=True)
            # A promotion is progress: the deadline counts from it, not from before a long pause.
            rev = replace(rev, progress_at=self._clock.now())
            self._set_state(name, rev, st, "PromoteRequested", "full promotion" if full else "next step")
        return {"name": name, "revision": rev.number, "full": full}

    def abort(self, name: str, reason: str = "aborted by user") -> dict[str, Any]:
        """All traffic back to stable at once; the new revision is scaled down after the abort delay."""
        with self._store.transaction():
            rollout, rev = self._target(name)
            if rollout.spec.strategy.kind == "RollingUpdate":
                raise ConflictError(f"rollout {name!r} uses a rolling update; use `gapless undo {name}`")
            if rev.phase != "progressing":
                raise ConflictError(
                    f"revision {rev.number} of {name!r} is {rev.phase}: there is nothing to abort"
                )
            st = StepState.from_json(rev.step_state)
            if st.aborted_at is None:
                st = replace(st, aborted_at=self._clock.now(), abort_reason=reason, promote=False, full=False)
                self._set_state(name, rev, st, "Aborted", reason)
        return {"name": name, "revision": rev.number, "aborted": True}

    def retry(self, name: str) -> dict[str, Any]:
        """Start an aborted or failed rollout again from its first step."""
        with self._store.transaction():
            _, rev = self._target(name)
            st = StepState.from_json(rev.step_state)
            if st.aborted_at is None and rev.phase != "failed":
                raise ConflictError(f"revision {rev.number} of {name!r} was neither aborted nor failed")
            now = self._clock.now()
            self._store.put_revision(
                replace(
                    rev, phase="progressing", message="", progress_at=now, step_state=StepState().to_json()
                )
            )
            self._store.deactivate_analysis_runs(name, rev.hash)
            self._controller.event(name, rev.hash, "Retry", f"revision {rev.number} starts again")
            self._controller.wake()
        return {"name": name, "revision": rev.number}

    # -- analysis -----------------------------------------------------------------------------------

    def apply_template(self, template: AnalysisTemplate) -> dict[str, Any]:
        """Store an AnalysisTemplate; runs already started keep the version they resolved."""
        name = template.metadata.name
        problems = template_problems(template)
        if problems:
            raise SpecError(name, problems)
        doc = template.to_document()
        with self._store.transaction():
            rec = self._store.find_analysis_template(name)
            changed = rec is None or rec.spec != doc
            generation = (rec.generation if rec else 0) + (1 if changed else 0)
            if changed:
                self._store.put_analysis_template(
                    AnalysisTemplateRecord(name, doc, generation, self._clock.now())
                )
        return {"name": name, "kind": "AnalysisTemplate", "generation": generation, "changed": changed}

    def templates(self) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "generation": t.generation, "updatedAt": t.updated_at, "spec": t.spec}
            for t in self._store.analysis_templates()
        ]

    def template(self, name: str) -> dict[str, Any]:
        t = self._store.find_analysis_template(name)
        if t is None:
            raise NotFoundError(f"AnalysisTemplate {name!r} not found")
        return {"name": t.name, "generation": t.generation, "updatedAt": t.updated_at, "spec": t.spec}

    def delete_template(self, name: str) -> None:
        if self._store.find_analysis_template(name) is None:
            raise NotFoundError(f"AnalysisTemplate {name!r} not found")
        users = [
            r.name
            for r in self._store.rollouts()
            if any(ref == name for _, ref in template_refs(Rollout.model_validate(r.spec).spec.strategy))
        ]
        if users:
            raise ConflictError(f"AnalysisTemplate {name!r} is used by rollout(s) {', '.join(users)}")
        self._store.delete_analysis_template(name)

    def analysis(self, name: str, revision: int | None) -> dict[str, Any]:
        """Every analysis run of a rollout (or of one revision), newest last, with its measurements."""
        self._store.rollout(name)
        revisions = {r.hash: r for r in self._store.revisions(name)}
        wanted: str | None = None
        if revision is not None:
            found = next((r for r in revisions.values() if r.number == revision), None)
            if found is None:
                raise NotFoundError(f"revision {revision} of {name!r} not found")
            wanted = found.hash
        items = []
        for run in self._store.analysis_runs(name, wanted):
            rev = revisions.get(run.revision)
            items.append(
                run_summary(run)
                | {
                    "revision": rev.number if rev else None,
                    "hash": run.revision,
                    "active": run.active,
                    "args": run.spec.get("args", {}),
                    "measurements": {m.get("name", ""): m.get("measurements", []) for m in run.metrics},
                }
            )
        return {"name": name, "items": items}

    def delete(self, name: str) -> None:
        rec = self._store.rollout(name)
        self._store.put_rollout(replace(rec, deleting=True))
        self._controller.wake()

    def history(self, name: str) -> list[dict[str, Any]]:
        self._store.rollout(name)
        out = []
        for r in self._store.revisions(name):
            t = Template.model_validate(r.template)
            out.append(
                {
                    "number": r.number,
                    "hash": r.hash,
                    "phase": r.phase,
                    "createdAt": r.created_at,
                    "message": r.message,
                    "command": t.command,
                    "changeCause": r.change_cause or None,
                    "template": r.template,
                }
            )
        return sorted(out, key=lambda x: x["number"])


def template_refs(strategy: Strategy) -> list[tuple[str, str]]:
    """Every AnalysisTemplate a strategy references, with the field path of the reference."""
    refs: list[tuple[str, str]] = []
    canary, bg = strategy.canary, strategy.blue_green
    found: list[tuple[str, RolloutAnalysis | None]] = []
    if canary is not None:
        found.append(("spec.strategy.canary.analysis", canary.analysis))
        found += [
            (f"spec.strategy.canary.steps.{i}.analysis", step.analysis) for i, step in enumerate(canary.steps)
        ]
    if bg is not None:
        found.append(("spec.strategy.blueGreen.prePromotionAnalysis", bg.pre_promotion_analysis))
        found.append(("spec.strategy.blueGreen.postPromotionAnalysis", bg.post_promotion_analysis))
    for path, analysis in found:
        if analysis is not None:
            refs += [
                (f"{path}.templates.{j}.templateName", t.template_name)
                for j, t in enumerate(analysis.templates)
            ]
    return refs
