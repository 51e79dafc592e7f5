"""What a flag serves in one environment, as people read it: its rules, its rollout and its stage (pure).

The flag list the dashboard shows (``GET /api/v1/projects/{p}/flags``) said only on/off per
environment. During an incident the question is "who gets the new code path": the rules in force (the
environment's, then the current release stage's, in evaluation order), what everyone else gets (one
variant, or a percentage split), and how much of the traffic gets something other than the off variant.
:func:`environment_summary` answers that from the model; it reads no clock and no database.
"""

from __future__ import annotations

from typing import Any

from gapless.flags.model import Condition, Flag, Rollout, Rule, Split

__all__ = ["condition_text", "environment_summary", "rollout_summary", "rule_text"]

_MAX_VALUES = 3


def _value(v: Any) -> str:
    if isinstance(v, str | int | float | bool) or v is None:
        return str(v)
    return "..."  # a list or object value: too long to read in a cell


def condition_text(c: Condition) -> str:
    """``country in DE, FR``, ``in segment beta``, ``not email endsWith @example.com``."""
    values = list(c.values or []) + ([c.value] if c.value is not None else [])
    shown = ", ".join(_value(v) for v in values[:_MAX_VALUES]) + (
        ", ..." if len(values) > _MAX_VALUES else ""
    )
    if c.operator == "inSegment":
        text = f"in segment {shown}"
    else:
        text = " ".join(part for part in (c.attribute or "", c.operator, shown) if part)
    return f"not {text}" if c.negate else text


def _split_shares(split: Split) -> list[tuple[str, float]]:
    total = sum(w.weight for w in split.weights) or 1
    return [(w.variant, 100 * w.weight / total) for w in split.weights]


def _percent(p: float) -> str:
    return f"{p:.3g}%"


def _serve_text(variant: str | None, split: Split | None) -> str:
    if split is not None:
        return ", ".join(f"{_percent(p)} {v}" for v, p in _split_shares(split) if p > 0) or "nothing"
    return variant or "nothing"


def rule_text(rule: Rule) -> str:
    """``if country in DE and plan in pro: on``; a rule without conditions serves everyone it reaches."""
    serve = _serve_text(rule.variant, rule.split)
    if not rule.conditions:
        return f"everyone: {serve}"
    return "if " + " and ".join(condition_text(c) for c in rule.conditions) + f": {serve}"


def rollout_summary(rollout: Rollout | None, off_variant: str) -> dict[str, Any]:
    """What everyone no rule matched gets, and the percentage of them served something other than off."""
    if rollout is None:
        return {
            "variant": off_variant,
            "split": None,
            "percent": 0.0,
            "text": f"everyone else: {off_variant}",
        }
    if rollout.split is not None:
        shares = _split_shares(rollout.split)
        percent = sum(p for v, p in shares if v != off_variant)
        return {
            "variant": None,
            "split": [{"variant": v, "percent": p} for v, p in shares],
            "percent": percent,
            "text": f"everyone else: {_serve_text(None, rollout.split)}",
        }
    variant = rollout.variant or off_variant
    return {
        "variant": variant,
        "split": None,
        "percent": 0.0 if variant == off_variant else 100.0,
        "text": f"everyone else: {variant}",
    }


def environment_summary(flag: Flag, env: str) -> dict[str, Any]:
    """``{"rules": [text, ...], "rollout": {...}}`` of the flag in ``env`` (a kill switch serves off to all)."""
    fe = flag.environments.get(env)
    if fe is None:
        return {"rules": [], "rollout": rollout_summary(None, flag.off_variant)}
    return {
        "rules": [rule_text(r) for r in fe.effective_rules()],
        "rollout": rollout_summary(fe.effective_rollout(), flag.off_variant),
    }
