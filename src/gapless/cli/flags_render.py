"""Flags for people: one flag's state, rules, variants and release stage as plain lines, and ``-o``.

Pure functions of the service's documents (``GET .../flags/{key}`` and an item of ``GET .../flags``);
no rich, so ``gapless flags get`` prints without importing it.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["OUTPUTS", "condition_text", "dump", "flag_lines", "serve_text"]

OUTPUTS = ("text", "json", "yaml")


def dump(data: Any, output: str) -> str:
    """``data`` as JSON (indented) or YAML (the same data when parsed back), ending with a newline."""
    if output == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    import yaml  # only when asked for: it costs a verb's start

    # allow_unicode=False: PyYAML writes U+0085 and U+2028 raw, and its reader takes them for line breaks
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=False, default_flow_style=False))


def _value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v


def condition_text(c: dict[str, Any]) -> str:
    """``plan in [pro, team]``, ``not country in [FR]``, ``inSegment [beta]``, ``inRollout 25%``."""
    op = str(c.get("operator", "?"))
    if op == "inRollout":
        text = f"inRollout {_percent(int(c.get('value') or 0))}"
    else:
        operand = (
            "[" + ", ".join(_value(v) for v in c.get("values") or []) + "]"
            if "values" in c
            else _value(c.get("value"))
        )
        attribute = c.get("attribute")
        text = f"{attribute} {op} {operand}" if attribute else f"{op} {operand}"
    if c.get("caseInsensitive"):
        text += " (any case)"
    return f"not {text}" if c.get("negate") else text


def _percent(weight: int) -> str:
    """Weights are in units of 0.001% (100,000 is everyone)."""
    return f"{weight / 1000:g}%"


def serve_text(target: dict[str, Any] | None) -> str:
    """What a rule or rollout serves: a variant, or a split ``on 25% / off 75%``."""
    if not target:
        return "the off variant"
    if target.get("variant") is not None:
        return str(target["variant"])
    split = target.get("split") or {}
    parts = [f"{w.get('variant')} {_percent(int(w.get('weight', 0)))}" for w in split.get("weights") or []]
    by = split.get("stickiness")
    return " / ".join(parts) + (f" (by {by})" if by and by != "targetingKey" else "")


def _rule_lines(rules: list[dict[str, Any]], first: int, indent: str) -> list[str]:
    lines = []
    for i, rule in enumerate(rules, first):
        when = " and ".join(condition_text(c) for c in rule.get("conditions") or []) or "everyone"
        lines.append(f"{indent}rule {i}: {when} -> {serve_text(rule)}")
    return lines


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def flag_lines(doc: dict[str, Any], report: dict[str, Any] | None = None) -> list[str]:
    """One flag, as ``gapless flags get`` prints it: what it is, its variants, then each environment."""
    key = doc.get("key", "?")
    head = f"{key}: {doc.get('type', 'release')} flag, {doc.get('kind', 'boolean')}"
    if doc.get("archived"):
        head += ", archived"
    lines = [head]
    if doc.get("owner"):
        lines.append(f"owner: {doc['owner']}")
    if doc.get("description"):
        lines.append(f"description: {doc['description']}")
    variants = ", ".join(f"{v.get('key')}={_value(v.get('value'))}" for v in doc.get("variants") or [])
    lines.append(f"variants: {variants or '-'}; off variant: {doc.get('offVariant', 'off')}")
    environments: dict[str, Any] = dict(doc.get("environments") or {})
    if report is not None:
        for name in report.get("environments") or {}:
            environments.setdefault(name, None)
    for name, env in environments.items():
        if not env:
            lines.append(f"{name}: OFF (not configured)")
            continue
        state = "on" if env.get("enabled") else "OFF (killed: everyone gets the off variant)"
        lines.append(f"{name}: {state}")
        rules = list(env.get("rules") or [])
        lines += _rule_lines(rules, 1, "  ")
        plan = env.get("releasePlan")
        rollout = env.get("defaultRollout")
        if plan and plan.get("stages"):
            stages = plan["stages"]
            current = min(int(plan.get("currentStage", 0)), len(stages) - 1)
            stage = stages[current]
            line = f"  release plan: stage {current + 1}/{len(stages)} {stage.get('name', '')!r}"
            line += f" since {_when(plan.get('stageStartedAt'))}"
            if stage.get("monitoringWindow"):
                line += f", advances after {stage['monitoringWindow']}"
            lines.append(line)
            lines += _rule_lines(list(stage.get("rules") or []), len(rules) + 1, "    ")
            if stage.get("rollout"):
                rollout = stage["rollout"]
        lines.append(f"  rollout: {serve_text(rollout)}")
    if report is not None:
        evaluations = report.get("evaluations") or {}
        if evaluations:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(evaluations.items()))
            lines.append(f"evaluations: {counts} (last {_when(report.get('lastEvaluatedAt'))})")
        else:
            lines.append("evaluations: none yet")
        if report.get("stale"):
            lines.append("stale: " + ", ".join(report.get("staleReasons") or []))
    return lines
