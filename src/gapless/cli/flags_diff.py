"""``gapless flags diff -f FILE``: what ``flags apply -f FILE`` would change, like ``kubectl diff``.

The comparison is pure: ``diff(a, b)`` lists the leaf changes that turn document ``a`` into ``b``
(objects compared key by key, lists of equal length item by item, anything else as a whole), and
``patch(a, diff(a, b)) == b``. ``plan_diff`` applies it to what apply would write: the file's project
fields, and each segment and flag the file names, all filled in with their defaults as the service
stores them (``gapless.flags.model``), against what the service holds. apply never removes flags or
segments the file leaves out, so neither does the diff: they are listed as left alone. A field the
file leaves out but the service holds (say, a killed environment's ``enabled: false``) is a change,
since apply replaces each document whole.

Exit codes as ``diff(1)``: 0 no difference, 1 differences, 2 trouble (bad file, no service).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from gapless.cli.flags_client import FlagsError, api_path
from gapless.cli.flags_cmd import (
    Output,
    StateDir,
    Token,
    Url,
    _check_output,
    _emit,
    _fail,
    flags_app,
    read_project_file,
    say,
    service,
)

__all__ = ["MISSING", "Change", "DocumentDiff", "ProjectDiff", "diff", "patch", "plan_diff"]


class _Missing:
    """Stands for an absent key: a field added has ``before`` MISSING, one removed ``after`` MISSING."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Change:
    path: Path_
    before: Any
    after: Any

    @property
    def op(self) -> str:
        """``added``, ``removed`` or ``changed``."""
        if self.before is MISSING:
            return "added"
        return "removed" if self.after is MISSING else "changed"

    def dotted(self) -> str:
        """``environments.production.rules[0].variant``."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "(the whole document)"


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: ``True`` is not ``1``, ``1`` is ``1.0``, key order does not matter."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return (type(a) is type(b) and a == b) or (_number(a) and _number(b) and a == b)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def diff(a: Any, b: Any, path: Path_ = ()) -> list[Change]:
    """The leaf changes that turn ``a`` into ``b`` (empty when they are the same)."""
    if isinstance(a, dict) and isinstance(b, dict):
        changes: list[Change] = []
        for k in a:
            if k not in b:
                changes.append(Change((*path, k), a[k], MISSING))
            else:
                changes += diff(a[k], b[k], (*path, k))
        changes += [Change((*path, k), MISSING, b[k]) for k in b if k not in a]
        return changes
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [c for i, (x, y) in enumerate(zip(a, b, strict=True)) for c in diff(x, y, (*path, i))]
    return [] if same(a, b) else [Change(path, a, b)]


def patch(doc: Any, changes: list[Change]) -> Any:
    """``doc`` with ``changes`` made (a copy; ``doc`` is not touched)."""
    result = json.loads(json.dumps(doc))
    for change in changes:
        if not change.path:
            result = json.loads(json.dumps(change.after))
            continue
        parent = result
        for part in change.path[:-1]:
            parent = parent[part]
        last = change.path[-1]
        if change.after is MISSING:
            del parent[last]
        else:
            parent[last] = json.loads(json.dumps(change.after))
    return result


@dataclass(frozen=True)
class DocumentDiff:
    kind: str
    """``project``, ``segment`` or ``flag``."""
    key: str
    action: str
    """``added`` (apply creates it) or ``changed``."""
    changes: list[Change] = field(default_factory=list)
    after: Any = None


@dataclass(frozen=True)
class ProjectDiff:
    project: str
    documents: list[DocumentDiff]
    left_alone: list[tuple[str, str]]
    """(kind, key) of segments and flags the service holds and the file does not name."""


_VOLATILE = ("createdAt", "updatedAt")


def _stored(doc: Any) -> Any:
    """A document without the times the service stamps on it."""
    if isinstance(doc, dict):
        return {k: _stored(v) for k, v in doc.items() if k not in _VOLATILE}
    if isinstance(doc, list):
        return [_stored(v) for v in doc]
    return doc


def plan_diff(desired: dict[str, Any], current: dict[str, Any] | None) -> ProjectDiff:
    """What apply of the project document ``desired`` changes in ``current`` (None: no such project).

    ``desired`` is filled in with its defaults as the service stores it; ``SpecError`` when it is not a
    valid project (segments the service holds count for its references, as they do for apply).
    """
    from gapless.flags.model import parse_project

    held = current or {}
    named = {s.get("key") for s in desired.get("segments") or []}
    extra = [s for s in held.get("segments") or [] if s.get("key") not in named]
    checked = parse_project(
        {**desired, "segments": [*(desired.get("segments") or []), *extra]}, source="file"
    )
    full = checked.model_dump(mode="json", by_alias=True, exclude_none=True)
    full["segments"] = full["segments"][: len(full["segments"]) - len(extra)]
    project = str(full["key"])
    documents: list[DocumentDiff] = []
    fields = {k: v for k, v in full.items() if k not in ("segments", "flags")}
    if current is None:
        documents.append(DocumentDiff("project", project, "added", after=fields))
    else:
        before = {k: v for k, v in _stored(current).items() if k in fields}
        changes = diff(before, fields)
        if changes:
            documents.append(DocumentDiff("project", project, "changed", changes))
    for kind in ("segment", "flag"):
        have = {d["key"]: _stored(d) for d in held.get(f"{kind}s") or []}
        for doc in full[f"{kind}s"]:
            want = _stored(doc)
            old = have.get(want["key"])
            if old is None:
                documents.append(DocumentDiff(kind, want["key"], "added", after=want))
            elif changes := diff(old, want):
                documents.append(DocumentDiff(kind, want["key"], "changed", changes))
    left = [
        (kind, str(d["key"]))
        for kind in ("segment", "flag")
        for d in held.get(f"{kind}s") or []
        if d["key"] not in {x["key"] for x in full[f"{kind}s"]}
    ]
    return ProjectDiff(project, documents, left)


def _show(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def diff_lines(result: ProjectDiff) -> list[str]:
    """The text ``flags diff`` prints: one header per document, then ``+``/``-``/``~`` per field."""
    lines = []
    for d in result.documents:
        lines.append(f"{d.kind} {d.key}: {'added' if d.action == 'added' else 'changed'}")
        changes = diff({}, d.after) if d.action == "added" else d.changes
        for c in changes:
            if c.op == "added":
                lines.append(f"  + {c.dotted()}: {_show(c.after)}")
            elif c.op == "removed":
                lines.append(f"  - {c.dotted()}: {_show(c.before)}")
            else:
                lines.append(f"  ~ {c.dotted()}: {_show(c.before)} -> {_show(c.after)}")
    return lines


def diff_data(result: ProjectDiff) -> dict[str, Any]:
    """``-o json|yaml``: the same, as data (an absent side is left out)."""

    def change(c: Change) -> dict[str, Any]:
        out: dict[str, Any] = {"path": c.dotted(), "op": c.op}
        if c.before is not MISSING:
            out["before"] = c.before
        if c.after is not MISSING:
            out["after"] = c.after
        return out

    return {
        "project": result.project,
        "changes": [
            {"kind": d.kind, "key": d.key, "action": d.action}
            | ({"after": d.after} if d.action == "added" else {"fields": [change(c) for c in d.changes]})
            for d in result.documents
        ],
        "leftAlone": [{"kind": k, "key": key} for k, key in result.left_alone],
    }


@flags_app.command("diff")
def diff_command(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="The project file `flags apply -f` would apply.")
    ],
    output: Output = "text",
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Show what `flags apply -f FILE` would change: exit 0 no difference, 1 differences, 2 trouble."""
    from gapless.core.errors import SpecError

    _check_output(output)
    try:
        desired = read_project_file(file)
    except FlagsError as e:
        raise _fail(str(e), 2, e.details) from e
    project = desired["key"]
    try:
        with service(url, token, state_dir) as svc:
            status, current = svc.request("GET", api_path("projects", project))
            if status >= 400 and status != 404:
                svc.call("GET", api_path("projects", project))  # reports the error
    except typer.Exit as e:
        raise typer.Exit(2) from e  # diff's trouble is 2, whatever the service said
    try:
        result = plan_diff(desired, None if status == 404 else current)
    except SpecError as e:
        raise _fail(f"{file}: {len(e.problems)} problem(s)", 2, [f"  {p}" for p in e.problems]) from e
    if output != "text":
        _emit(diff_data(result), output)
    elif result.documents:
        sys.stdout.write("\n".join(diff_lines(result)) + "\n")
    for kind, key in result.left_alone:
        say(f"{kind} {key}: not in the file; apply leaves it as it is")
    raise typer.Exit(1 if result.documents else 0)
