"""``gapless flags import --from-unleash EXPORT.json``: Unleash's flags into a gapless project.

A dry run by default (or with ``--dry-run``): it lists each segment and flag to create, update or leave
unchanged, every feature refused with the reason, and what the file holds that is not carried over,
and changes nothing. ``--apply`` writes the changes through the admin API (each audited), refusing to
write anything while a feature is refused unless ``--skip-refused``. The export is Unleash's admin
feature export or its client format for one environment (``/api/client/features`` with a client token
of that environment, or its delta events); see ``gapless.flags.unleash_import``. A malformed file is
exit 2 naming the field, before the service is asked anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gapless.cli import flags_diff, flags_refs  # noqa: F401 -- they add `flags diff` and `flags refs`
from gapless.cli.flags_client import api_path
from gapless.cli.flags_cmd import StateDir, Token, Url, _fail, flags_app, say, service

__all__ = ["import_from_unleash"]


def _normalized(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A document as the service stores it (defaults filled in), so equal meaning compares equal."""
    from gapless.flags.model import Flag, Segment

    model = Flag if kind == "flag" else Segment
    dumped = model.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_none=True)
    return {k: v for k, v in dumped.items() if k not in ("createdAt", "updatedAt")}


@flags_app.command("import")
def import_from_unleash(
    from_unleash: Annotated[
        Path,
        typer.Option(
            "--from-unleash",
            help="Unleash's feature export (JSON, as its UI or /api/admin/features-batch/export writes it), "
            "or its client features of one environment.",
        ),
    ],
    project: Annotated[
        str | None, typer.Option("--project", help="The gapless project (default: the features' project).")
    ] = None,
    environment: Annotated[
        str, typer.Option("--environment", help="The environment to configure.")
    ] = "production",
    apply: Annotated[bool, typer.Option("--apply", help="Write the changes (default: list them).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would change (the default; not with --apply).")
    ] = False,
    skip_refused: Annotated[
        bool, typer.Option("--skip-refused", help="With --apply, import the rest when features are refused.")
    ] = False,
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Import Unleash's flags (a dry run unless --apply); anything gapless cannot express is refused by name."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from gapless.flags.unleash_admin import ExportError
    from gapless.flags.unleash_import import plan_import

    if apply and dry_run:
        raise _fail("--dry-run and --apply exclude each other", 2)
    try:
        export = json.loads(from_unleash.read_text())
        found = plan_import(export, environment, {}).projects  # checks the whole file first
    except ExportError as e:
        raise _fail(f"{from_unleash}: {e}", 2) from e
    except (OSError, ValueError) as e:
        raise _fail(f"{from_unleash}: {e}", 2) from e
    if project is None:
        if len(found) != 1:
            raise _fail("give --project: the features are of several Unleash projects, or none", 2)
        project = str(next(iter(found)))
    with service(url, token, state_dir) as svc:
        status, found_project = svc.request("GET", api_path("projects", project))
        if status >= 400 and status != 404:
            svc.call("GET", api_path("projects", project))  # reports the error and exits
    if status == 404:
        existing: dict[str, Any] = {"environments": [environment], "flags": [], "segments": []}
        new_project = True
    else:
        existing = found_project
        new_project = False
        if environment not in existing["environments"]:
            raise _fail(f"project {project!r} has no environment {environment!r}", 2)
    flags = {f["key"]: f for f in existing.get("flags") or []}
    segments = {s["key"]: s for s in existing.get("segments") or []}
    plan = plan_import(export, environment, flags)
    actions: list[tuple[str, str, str, dict[str, Any]]] = []
    for kind, docs, before in (("segment", plan.segments, segments), ("flag", plan.flags, flags)):
        for key, doc in docs.items():
            try:
                after = _normalized(kind, doc)
            except ValidationError as e:
                plan.refused[key] = "; ".join(
                    f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()
                )
                continue
            old = before.get(key)
            action = "create" if old is None else "unchanged" if _normalized(kind, old) == after else "update"
            actions.append((kind, key, action, doc))
    table = Table(box=None, header_style="bold")
    for col in ("KIND", "KEY", "ACTION"):
        table.add_column(col)
    if new_project:
        table.add_row("project", Text(project), Text(f"create (environment {environment})"))
    for kind, key, action, _ in actions:
        table.add_row(kind, Text(key), action)
    for name, reason in sorted(plan.refused.items()):
        table.add_row("refused", Text(name), Text(reason))
    for note in plan.notes:
        table.add_row("not imported", "", Text(note))
    Console().print(table)
    changes = sum(1 for a in actions if a[2] != "unchanged")
    if not apply:
        say(f"dry run: {changes} change(s), {len(plan.refused)} refused; --apply writes them")
        raise typer.Exit(2 if plan.refused else 0)
    if plan.refused and not skip_refused:
        raise _fail(
            f"{len(plan.refused)} feature(s) refused (listed above); nothing written (--skip-refused)", 2
        )
    with service(url, token, state_dir) as svc:
        if new_project:
            svc.call("PUT", api_path("projects", project), {"environments": [environment]})
        for kind, key, action, doc in actions:
            if action != "unchanged":
                svc.call("PUT", api_path("projects", project, f"{kind}s", key), doc)
    say(f"imported into {project}/{environment}: {changes} change(s), {len(plan.refused)} refused")
