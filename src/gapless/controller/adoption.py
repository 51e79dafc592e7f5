"""Processes serving without a record: never killed, refused to a plain apply, taken over on request.

A control plane starting next to a ``state.db`` that was deleted, emptied or replaced finds routers and
instances of its state directory that its database knows nothing of. Killing them as orphans (what a
restart does with a process whose start was never recorded) would drop every request they serve. They
are told apart by the identity of the state database that started them (``GAPLESS_STATE_ID`` in their
environment, see ``gapless.platform.base``) and by their rollout: a process is *unclaimed* when that
identity is neither this database's nor one it adopted, or when its rollout is not in the database.

Unclaimed processes are left alone: the controller does not reconcile their rollout, and applying a
spec for it is refused (409) with a message naming what runs and how to recover. ``gapless up --adopt``
(``PUT /api/v1/rollouts/{name}?adopt=true``) rebuilds the records from what survived the database:
each instance's markers (rollout, instance id, revision hash, ``PORT``), the router's persisted
configuration (which instances are in traffic) and the revision files (``gapless.store.revision_files``:
each revision's template and number). ``adoption_records`` is the pure part of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapless.controller.traffic import PREVIEW_SUFFIX, Traffic
from gapless.core.errors import GaplessError
from gapless.platform.base import ROLE_INSTANCE, ROLE_ROUTER, DiscoveredProcess, Platform
from gapless.router.persist import load_config
from gapless.spec.models import Rollout, Template, template_hash
from gapless.store.records import InstanceRecord, RevisionPhase, RevisionRecord, RolloutRecord
from gapless.store.revision_files import SavedRevision, load_revisions, save_revision
from gapless.store.sqlite import Store

__all__ = [
    "Adoption",
    "AdoptionError",
    "adopt_processes",
    "adoption_records",
    "describe_unclaimed",
    "find_unclaimed",
]

log = logging.getLogger("gapless.controller")


class AdoptionError(GaplessError):
    """Running processes cannot be taken over as asked (nothing to adopt, another address, no template)."""


def _base(rollout: str) -> str:
    return rollout.removesuffix(PREVIEW_SUFFIX)


def find_unclaimed(
    processes: Iterable[DiscoveredProcess], known_ids: set[str], rollouts: set[str]
) -> dict[str, list[DiscoveredProcess]]:
    """Routers and instances no record of this database covers, by (base) rollout name."""
    out: dict[str, list[DiscoveredProcess]] = {}
    for p in processes:
        if p.role not in (ROLE_INSTANCE, ROLE_ROUTER) or not p.rollout:
            continue
        base = _base(p.rollout)
        foreign = p.state_id is not None and p.state_id not in known_ids
        if foreign or base not in rollouts:
            out.setdefault(base, []).append(p)
    return out


def describe_unclaimed(name: str, processes: list[DiscoveredProcess]) -> str:
    """What runs for ``name`` without a record, and the two ways out."""
    routers = [p for p in processes if p.role == ROLE_ROUTER]
    instances = sorted((p for p in processes if p.role == ROLE_INSTANCE), key=lambda p: p.pid)
    parts = [f"router pid {p.pid}" + (" (preview)" if p.rollout != name else "") for p in routers]
    if instances:
        pids = ", ".join(str(p.pid) for p in instances)
        parts.append(f"{len(instances)} instance(s) (pids {pids})")
    return (
        f"rollout {name!r} has processes running for this state directory but no record of them in "
        f"state.db (it was deleted, emptied or replaced): {', '.join(parts)}. They keep serving and are "
        f"not touched. Take them over with `gapless up --adopt -f FILE` (the rollout's spec), or stop "
        f"them with `gapless down`."
    )


@dataclass(frozen=True)
class Adoption:
    """The records that describe adopted processes, written in one transaction."""

    rollout: RolloutRecord
    revisions: tuple[RevisionRecord, ...]
    instances: tuple[InstanceRecord, ...]
    state_ids: frozenset[str]


def adoption_records(
    rollout: Rollout,
    processes: list[DiscoveredProcess],
    saved: list[SavedRevision],
    in_traffic: set[str],
    state_dir: Path,
    now: float,
) -> Adoption:
    """Records for ``processes`` of ``rollout`` (pure): the spec as given, revisions, running instances.

    The revisions are the saved ones (history, numbers kept). Phases follow what runs: when only the
    spec's template runs it is complete; otherwise the newest other revision that runs is complete
    (the stable one) and the spec's template, if it runs too, is progressing from ``now``. An instance
    is ready (and stays in the router) when the router's saved configuration has it as a backend.
    """
    name = rollout.name
    target = template_hash(rollout.spec.template)
    instances = [p for p in processes if p.role == ROLE_INSTANCE and p.rollout == name]
    by_hash: dict[str, SavedRevision] = {s.hash: s for s in saved}
    if target not in by_hash:
        number = max((s.number for s in saved), default=0) + 1
        template = rollout.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
        by_hash[target] = SavedRevision(name, target, number, template, now)
    unknown = sorted({p.revision or "?" for p in instances if (p.revision or "") not in by_hash})
    if unknown:
        raise AdoptionError(
            f"no template is kept for revision(s) {', '.join(unknown)} that instances of {name!r} run, "
            "and the file's template is another one: adopt with the file those instances were started "
            "from, then apply the new one"
        )
    bad_port = [p.pid for p in instances if p.port is None or not p.instance_id]
    if bad_port:
        raise AdoptionError(f"instances of {name!r} without their PORT or id markers: pids {bad_port}")
    for s in by_hash.values():
        Template.model_validate(s.template)  # a saved template that no longer validates is an error here
    running = {str(p.revision) for p in instances}
    phases: dict[str, RevisionPhase] = dict.fromkeys(by_hash, "superseded")
    others = sorted((by_hash[h] for h in running if h != target), key=lambda s: s.number)
    if others:
        phases[others[-1].hash] = "complete"
        phases[target] = "progressing"
    elif target in running:
        phases[target] = "complete"
    else:
        phases[target] = "progressing"
    if target not in running and target not in {s.hash for s in saved}:
        del by_hash[target]  # the next pass creates it as a new revision, with its event
    revisions = tuple(
        RevisionRecord(
            rollout=name,
            hash=s.hash,
            number=s.number,
            template=s.template,
            created_at=s.created_at,
            phase=phases[s.hash],
            progress_at=now,
            step_state=s.step_state if phases[s.hash] == "progressing" else {},
        )
        for s in sorted(by_hash.values(), key=lambda s: s.number)
    )
    records = tuple(
        InstanceRecord(
            id=str(p.instance_id),
            rollout=name,
            revision=str(p.revision),
            state="running",
            created_at=p.started_at,
            log_path=str(state_dir / "logs" / name / f"{p.instance_id}.log"),
            pid=p.pid,
            pgid=p.pgid,
            port=p.port,
            started_at=p.started_at,
            ready=p.instance_id in in_traffic,
            ready_since=now if p.instance_id in in_traffic else None,
        )
        for p in sorted(instances, key=lambda p: p.started_at)
    )
    doc: dict[str, Any] = rollout.to_document()
    return Adoption(
        rollout=RolloutRecord(name=name, spec=doc, generation=1, created_at=now, updated_at=now),
        revisions=revisions,
        instances=records,
        state_ids=frozenset(p.state_id for p in processes if p.state_id),
    )


async def adopt_processes(
    rollout: Rollout, store: Store, platform: Platform, traffic: Traffic, state_dir: Path, now: float
) -> tuple[Adoption, list[DiscoveredProcess]]:
    """Find the unclaimed processes of ``rollout`` and write their records (one transaction).

    Raises ``AdoptionError`` when there is nothing to adopt, when the running router serves another
    address than ``spec.listen``, or when an instance runs a revision whose template is unknown.
    """
    name = rollout.name
    rollouts = {r.name for r in store.rollouts()} - {name}
    found = [
        p
        for p in platform.discover()
        if p.rollout in (name, name + PREVIEW_SUFFIX) and p.role in (ROLE_INSTANCE, ROLE_ROUTER)
    ]
    procs = find_unclaimed(found, store.known_state_ids(), rollouts).get(name, [])
    if not procs:
        raise AdoptionError(f"nothing to adopt: no process of rollout {name!r} runs without a record")
    if any(p.role == ROLE_ROUTER and p.rollout == name for p in procs):
        address = await traffic.address(name)
        if address is not None and address != rollout.spec.listen:
            raise AdoptionError(
                f"the running router of {name!r} serves {address} but spec.listen is "
                f"{rollout.spec.listen}: adopt with listen {address}, then apply the new address"
            )
    try:
        config = load_config(state_dir / "routers" / f"{name}.json")
    except ValueError as e:
        log.warning(
            "%s: the router's saved configuration is unusable (%s); instances start not ready", name, e
        )
        config = None
    in_traffic = {b.id for b in config.backends} if config is not None else set()
    adoption = adoption_records(rollout, procs, load_revisions(state_dir, name), in_traffic, state_dir, now)
    with store.transaction():
        if store.find_rollout(name) is not None:
            store.delete_rollout(name)  # records of another installation describe nothing here
        store.put_rollout(adoption.rollout)
        for rev in adoption.revisions:
            store.put_revision(rev)
        for inst in adoption.instances:
            store.put_instance(inst)
        store.add_known_state_ids(adoption.state_ids)
    for rev in adoption.revisions:
        saved = SavedRevision(rev.rollout, rev.hash, rev.number, rev.template, rev.created_at, rev.step_state)
        save_revision(state_dir, saved, update=True)
    return adoption, procs
