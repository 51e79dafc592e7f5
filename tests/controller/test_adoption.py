"""Which running processes a database has no record of, and the records an adoption rebuilds (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapless.controller.adoption import AdoptionError, adoption_records, find_unclaimed
from gapless.platform.base import DiscoveredProcess
from gapless.spec.load import validate_rollout
from gapless.spec.models import Rollout, template_hash
from gapless.store.revision_files import SavedRevision, load_revisions, save_revision


def _proc(pid: int, role: str, rollout: str, state_id: str | None, revision: str = "") -> DiscoveredProcess:
    return DiscoveredProcess(
        pid=pid,
        pgid=pid,
        role=role,
        rollout=rollout,
        instance_id=f"{rollout}-{pid}" if role == "instance" else None,
        revision=revision or None,
        started_at=1000.0 + pid,
        state_id=state_id,
        port=20000 + pid if role == "instance" else None,
    )


def _rollout(version: str) -> Rollout:
    return validate_rollout(
        {
            "apiVersion": "gapless.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web"},
            "spec": {"listen": "127.0.0.1:8000", "replicas": 2, "template": {"command": ["app", version]}},
        }
    )


@pytest.mark.parametrize(
    ("procs", "known", "rollouts", "unclaimed"),
    [
        # state.db deleted or emptied: a new identity and no rollout, everything is unclaimed
        (
            [_proc(1, "router", "web", "old"), _proc(2, "instance", "web", "old")],
            {"new"},
            set(),
            {"web": [1, 2]},
        ),
        # state.db from elsewhere that knows a rollout of the same name: the identity tells them apart
        (
            [_proc(1, "router", "web", "old"), _proc(2, "instance", "web", "old")],
            {"new"},
            {"web"},
            {"web": [1, 2]},
        ),
        # our own processes (ours or adopted identity, known rollout): nothing unclaimed
        ([_proc(1, "router", "web", "a"), _proc(2, "instance", "web", "b")], {"a", "b"}, {"web"}, {}),
        # a process of an older gapless (no identity) of a known rollout is ours; of an unknown one it is not
        (
            [_proc(1, "instance", "web", None), _proc(2, "instance", "api", None)],
            {"a"},
            {"web"},
            {"api": [2]},
        ),
        # a blue-green preview router counts for its rollout
        ([_proc(1, "router", "web.preview", "old")], {"new"}, set(), {"web": [1]}),
        # the control plane itself is never an unclaimed process
        ([_proc(1, "control-plane", "", "old")], {"new"}, set(), {}),
    ],
)
def test_find_unclaimed(
    procs: list[DiscoveredProcess], known: set[str], rollouts: set[str], unclaimed: dict[str, list[int]]
) -> None:
    """A process is unclaimed when another database started it or its rollout is unknown."""
    got = find_unclaimed(procs, known, rollouts)
    assert {k: [p.pid for p in v] for k, v in got.items()} == unclaimed


def test_adoption_mid_rollout_keeps_stable_and_target(tmp_path: Path) -> None:
    """Instances of two revisions: the older one is complete (stable), the file's one progresses; traffic marks readiness."""
    v1, v2 = _rollout("v1"), _rollout("v2")
    h1, h2 = template_hash(v1.spec.template), template_hash(v2.spec.template)
    saved = [
        SavedRevision("web", h1, 1, v1.spec.template.model_dump(mode="json", by_alias=True), 1.0),
        SavedRevision("web", h2, 2, v2.spec.template.model_dump(mode="json", by_alias=True), 2.0),
    ]
    procs = [
        _proc(5, "router", "web", "old"),
        _proc(6, "instance", "web", "old", h1),
        _proc(7, "instance", "web", "old", h2),
    ]
    a = adoption_records(v2, procs, saved, {"web-6"}, tmp_path, now=50.0)
    assert [(r.number, r.phase) for r in a.revisions] == [(1, "complete"), (2, "progressing")]
    assert [(i.id, i.revision, i.ready, i.port, i.pid) for i in a.instances] == [
        ("web-6", h1, True, 20006, 6),
        ("web-7", h2, False, 20007, 7),
    ]
    assert a.state_ids == {"old"}


def test_adoption_refuses_an_instance_whose_template_is_unknown(tmp_path: Path) -> None:
    """An instance of a revision with no kept template and another template in the file cannot be adopted."""
    with pytest.raises(AdoptionError, match="no template is kept for revision"):
        adoption_records(
            _rollout("v2"), [_proc(6, "instance", "web", "old", "abcdef1234")], [], set(), tmp_path, 1.0
        )


def test_revision_files_roundtrip_private(tmp_path: Path) -> None:
    """A saved revision is read back, the file is 0600, and a corrupt file is skipped."""
    t = _rollout("v1").spec.template.model_dump(mode="json", by_alias=True)
    save_revision(tmp_path, SavedRevision("web", "abcdef1234", 3, t, 7.0))
    (tmp_path / "revisions" / "web" / "0123456789.json").write_text("{half")
    [rev] = load_revisions(tmp_path, "web")
    assert (rev.number, rev.template) == (3, t)
    assert (tmp_path / "revisions" / "web" / "abcdef1234.json").stat().st_mode & 0o777 == 0o600
