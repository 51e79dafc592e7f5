"""Helpers shared by the flag tests: small rulesets built inline, so each test shows its whole input."""

from __future__ import annotations

from typing import Any

from gapless.flags.evaluate import CompiledRuleset, Reason, compile_ruleset

BOOLEAN = [{"key": "on", "value": True}, {"key": "off", "value": False}]


def boolean_flag(
    *, rules: list[dict[str, Any]] | None = None, default: dict[str, Any] | None = None, enabled: bool = True
) -> dict[str, Any]:
    """A boolean flag in ruleset form (on/off), off unless a rule or the default says otherwise."""
    return {
        "kind": "boolean",
        "variants": BOOLEAN,
        "offVariant": "off",
        "enabled": enabled,
        "rules": rules or [],
        "defaultRollout": default or {"variant": "off"},
    }


def ruleset(
    flags: dict[str, dict[str, Any]], *, segments: dict[str, Any] | None = None, revision: int = 1
) -> dict[str, Any]:
    return {"formatVersion": 1, "revision": revision, "segments": segments or {}, "flags": flags}


def compile_one(conditions: list[dict[str, Any]], segments: dict[str, Any] | None = None) -> CompiledRuleset:
    """A ruleset with flag ``f`` that is on exactly when ``conditions`` hold."""
    flag = boolean_flag(rules=[{"conditions": conditions, "variant": "on"}])
    return compile_ruleset(ruleset({"f": flag}, segments=segments), strict=True)


def holds(condition: dict[str, Any], context: Any, segments: dict[str, Any] | None = None) -> bool:
    """Whether one condition holds for ``context``, evaluated through a compiled ruleset."""
    ev = compile_one([condition], segments).evaluate("f", context)
    assert ev.error_code is None, ev
    assert ev.reason in (Reason.TARGETING_MATCH, Reason.DEFAULT)
    return bool(ev.value)
