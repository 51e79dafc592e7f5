"""``gapless history NAME --revision N``: one revision as ``kubectl rollout history --revision`` shows it.

The revision's number, state and change cause, then its template as YAML: what would run again if
``gapless undo --to-revision N`` went back to it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

__all__ = ["render_revision"]


def render_revision(rev: dict[str, Any]) -> RenderableType:
    import yaml

    from gapless.cli.times import rfc3339

    head = Text()
    head.append(f"revision {rev['number']}", style="bold")
    head.append(f"  {rev['hash']}  {rev['phase']}")
    created = rev.get("createdAt")
    lines: list[RenderableType] = [head]
    if created:
        lines.append(Text(f"created       {rfc3339(created)}"))
    lines.append(Text(f"change-cause  {rev.get('changeCause') or '<none>'}"))
    if rev.get("message"):
        lines.append(Text(f"message       {rev['message']}"))
    lines.append(Text("template:"))
    template = yaml.safe_dump(rev.get("template") or {}, sort_keys=False, allow_unicode=True)
    lines.append(Text("\n".join("  " + line for line in template.rstrip("\n").splitlines())))
    return Group(*lines)
