"""gapless flags as Unleash features, for Unleash's SDKs: the ruleset, written in Unleash's client format.

The Unleash client API serves this, and Unleash's SDKs evaluate it themselves, so a flag is served only
when Unleash's evaluation of the translation gives, for every context, what gapless's evaluator gives:
the inverse of ``gapless.flags.unleash``. Every other flag is left out and named in ``Export.omitted``
with the reason, so an operator sees why an Unleash SDK does not know a flag rather than a silent
difference. What translates (a boolean flag):

- each rule serving a true variant is a strategy, in order (Unleash takes the first that matches):
  ``default``, or ``flexibleRollout`` for a rule with one Unleash-bucketed ``inRollout`` (its salt is
  the ``groupId``, its stickiness chain Unleash's ``default``, ``random`` or one field);
- conditions become constraints (``in`` IN, ``notIn`` NOT_IN, the string, number, date, semver, regex
  and CIDR operators, ``negate`` inverted, ``caseInsensitive`` on the string operators); a positive
  ``inSegment`` of one segment is the strategy's segment; ``flagVariant`` conditions shared by every
  rule are the feature's dependencies;
- a rule serving a true variant other than ``on`` has that variant as its strategy variant; a split
  over true variants bucketed as Unleash (seed 86028157) is the strategy's variants, with payloads;
- rules serving false variants after the last rule serving a true one change nothing and are dropped;
  the default rollout serving a true variant is a last ``default`` strategy.

Not translated (the flag is omitted): non-boolean flags; gapless-bucketed rollouts and splits (another
hash: the users differ); a false-serving rule before a true-serving one; splits mixing true and false
variants; case-insensitive ``in``; ``inSegment`` of several segments or negated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gapless.flags.bucketing import RANDOM, UNLEASH
from gapless.flags.unleash import ON, OPERATORS

__all__ = ["ALL_OPERATORS", "CLASSIC_OPERATORS", "Export", "features_from_ruleset", "segment_ids"]

_TO_UNLEASH = {gapless: unleash for unleash, gapless in OPERATORS.items()}
_TO_UNLEASH["equals"] = "IN"
_STRING_CI = {"contains", "startsWith", "endsWith", "regex"}
_ROLLOUT_DEFAULT = ("userId", ("sessionId", RANDOM))
_VARIANT_DEFAULT = ("userId", ("sessionId", RANDOM))


class _NotExpressible(Exception):  # noqa: N818 -- a reason, not an error of the caller
    """Why a flag cannot be served to Unleash's SDKs."""


@dataclass
class Export:
    """Unleash features and segments, and the flags left out with the reason for each."""

    features: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    omitted: dict[str, str] = field(default_factory=dict)


def segment_ids(ruleset: Mapping[str, Any]) -> dict[str, int]:
    """Unleash segments have numbers: gapless's segments numbered 1, 2, ... in key order."""
    return {key: i + 1 for i, key in enumerate(sorted(ruleset.get("segments") or {}))}


CLASSIC_OPERATORS = frozenset(
    {
        "IN",
        "NOT_IN",
        "STR_CONTAINS",
        "STR_STARTS_WITH",
        "STR_ENDS_WITH",
        "NUM_EQ",
        "NUM_GT",
        "NUM_GTE",
        "NUM_LT",
    }
    | {"NUM_LTE", "DATE_AFTER", "DATE_BEFORE", "SEMVER_EQ", "SEMVER_GT", "SEMVER_LT"}
)
"""The constraint operators every Unleash SDK of the last years evaluates."""
ALL_OPERATORS = frozenset(OPERATORS)
"""With the newer ones: SEMVER_GTE / SEMVER_LTE, REGEX, IN_CIDR (Unleash's client specification 6)."""


def features_from_ruleset(
    ruleset: Mapping[str, Any], project: str, *, known: frozenset[str] = ALL_OPERATORS
) -> Export:
    """The features of a gapless ruleset (``ruleset_for``) as Unleash's ``/api/client/features`` has them,
    for an SDK that knows the constraint operators ``known``: ``semverGte`` / ``semverLte`` are then
    written with SEMVER_GT or SEMVER_EQ when it does not know SEMVER_GTE, and a flag needing an operator
    it does not know is omitted, named."""
    ids = segment_ids(ruleset)
    export = Export([], [])
    _export_into(export, ruleset, project, ids, known)
    return export


def _export_into(
    export: Export, ruleset: Mapping[str, Any], project: str, ids: Mapping[str, int], known: frozenset[str]
) -> None:
    for key, raw in (ruleset.get("segments") or {}).items():
        try:
            constraints = [_constraint(c, known) for c in raw.get("conditions") or []]
        except _NotExpressible as e:
            export.omitted[f"segment {key}"] = str(e)
            continue
        export.segments.append({"id": ids[key], "name": key, "constraints": constraints})
    usable = {s["name"] for s in export.segments}
    for key, flag in (ruleset.get("flags") or {}).items():
        try:
            export.features.append(_feature(key, flag, project, ids, usable, known))
        except _NotExpressible as e:
            export.omitted[key] = str(e)


def _feature(
    key: str,
    flag: Mapping[str, Any],
    project: str,
    ids: Mapping[str, int],
    usable: set[str],
    known: frozenset[str],
) -> dict[str, Any]:
    if flag.get("kind") != "boolean":
        raise _NotExpressible(f"a {flag.get('kind')} flag: Unleash's features are on/off with variants")
    variants = {v["key"]: v for v in flag.get("variants") or []}
    rules = [*(flag.get("rules") or []), {"conditions": [], **(flag.get("defaultRollout") or {})}]
    # Unleash has no "serve off here": a rule serving a false variant becomes, in every later strategy,
    # its negation (one strategy per negated condition, as not (A and B) is (not A) or (not B)).
    guards: list[list[dict[str, Any]]] = [[]]
    kept: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        path = f"rules[{i}]" if i < len(rules) - 1 else "defaultRollout"
        conditions = list(rule.get("conditions") or [])
        if _serves_true(rule, variants, path):
            kept.extend({**rule, "conditions": conditions + guard} for guard in guards)
            continue
        if not conditions:
            break  # everyone left gets a false variant: later rules are never reached
        negated = [_negated(c, f"{path}.conditions[{j}]") for j, c in enumerate(conditions)]
        guards = [[*guard, n] for guard in guards for n in negated]
        if len(guards) > _MAX_GUARDS:
            raise _NotExpressible(
                f"{path}: the rules serving false variants need over {_MAX_GUARDS} strategies"
            )
    kept = [expanded for rule in kept for expanded in _semver_expanded(rule, known)]
    gates = [_gates(r["conditions"]) for r in kept]
    if any(g != gates[0] for g in gates):
        raise _NotExpressible("flagVariant conditions differ between rules (Unleash's are per feature)")
    strategies = [_strategy(key, r, variants, f"rules[{i}]", ids, usable, known) for i, r in enumerate(kept)]
    feature: dict[str, Any] = {
        "name": key,
        "type": _TYPES.get(str(flag.get("type")), "release"),
        "project": project,
        "enabled": bool(flag.get("enabled")) and bool(strategies),  # no strategies is on, in Unleash
        "stale": False,
        "impressionData": bool(flag.get("impressionData")),
        "strategies": strategies,
        "variants": [],
        "tags": list(flag.get("tags") or []),  # for the API's tag filter; not sent to SDKs
    }
    if gates and gates[0]:
        feature["dependencies"] = gates[0]
    return feature


_TYPES = {
    "release": "release",
    "experiment": "experiment",
    "operational": "operational",
    "kill-switch": "kill-switch",
    "permission": "permission",
}


_MAX_GUARDS = 64
_NEGATABLE = frozenset(OPERATORS.values()) | {"equals"}


def _negated(condition: Mapping[str, Any], path: str) -> dict[str, Any]:
    if condition.get("operator") not in _NEGATABLE:
        raise _NotExpressible(
            f"{path}: a rule serving a false variant before one serving a true variant can only test constraints, not {condition.get('operator')}"
        )
    return {**condition, "negate": not condition.get("negate", False)}


def _serves_true(serve: Mapping[str, Any], variants: Mapping[str, Any], path: str) -> bool:
    if serve.get("variant") is not None:
        return variants[serve["variant"]]["value"] is True
    split = serve.get("split") or {}
    values = {variants[w["variant"]]["value"] for w in split.get("weights") or [] if w.get("weight")}
    if values == {True}:
        return True
    if values == {False}:
        return False
    raise _NotExpressible(f"{path}.split mixes true and false variants (use an inRollout condition)")


def _gates(conditions: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in conditions:
        if c.get("operator") != "flagVariant":
            continue
        values = list(c.get("values") or [])
        if values == ["off"] and c.get("negate"):
            out.append({"feature": c["attribute"], "enabled": True})
        elif values == ["off"]:
            out.append({"feature": c["attribute"], "enabled": False})
        elif c.get("negate"):
            raise _NotExpressible("a negated flagVariant other than 'not off'")
        else:
            named = ["disabled" if v == ON else v for v in values]
            out.append({"feature": c["attribute"], "enabled": True, "variants": named})
    return out


def _stickiness(attribute: str, fallback: list[str], default: tuple[str, tuple[str, ...]], path: str) -> str:
    if (attribute, tuple(fallback)) == default:
        return "default"
    if attribute == RANDOM and not fallback:
        return RANDOM
    if not fallback or (default is _VARIANT_DEFAULT and fallback == [RANDOM]):
        return attribute
    raise _NotExpressible(
        f"{path}: stickiness {attribute} then {', '.join(fallback)} is not one of Unleash's"
    )


def _strategy(
    flag: str,
    rule: Mapping[str, Any],
    variants: Mapping[str, Any],
    path: str,
    ids: Mapping[str, int],
    usable: set[str],
    known: frozenset[str],
) -> dict[str, Any]:
    constraints: list[dict[str, Any]] = []
    segments: list[int] = []
    rollout: Mapping[str, Any] | None = None
    for i, c in enumerate(rule.get("conditions") or []):
        op = c.get("operator")
        if op == "flagVariant":
            continue
        if op == "inRollout":
            if rollout is not None or c.get("negate") or c.get("bucketing") != UNLEASH:
                raise _NotExpressible(
                    f"{path}.conditions[{i}]: Unleash's SDKs take one rollout per strategy, bucketed as Unleash"
                )
            rollout = c
        elif op == "inSegment":
            values = c.get("values") or []
            if len(values) != 1 or c.get("negate") or values[0] not in usable:
                raise _NotExpressible(f"{path}.conditions[{i}]: inSegment of one translatable segment only")
            segments.append(ids[values[0]])
        else:
            try:
                constraints.append(_constraint(c, known))
            except _NotExpressible as e:
                raise _NotExpressible(f"{path}.conditions[{i}]: {e}") from None
    strategy: dict[str, Any] = {"name": "default", "parameters": {}, "constraints": constraints}
    split = rule.get("split")
    group = None
    if rollout is not None:
        group = str(rollout.get("salt") or flag)
        stickiness = _stickiness(
            str(rollout["attribute"]), list(rollout.get("fallback") or []), _ROLLOUT_DEFAULT, path
        )
        strategy["name"] = "flexibleRollout"
        strategy["parameters"] = {
            "rollout": str(int(rollout["value"]) // 1000),
            "stickiness": stickiness,
            "groupId": group,
        }
    if split is not None:
        if split.get("bucketing") != UNLEASH:
            raise _NotExpressible(f"{path}.split is bucketed the gapless way, which Unleash's SDKs do not do")
        stickiness = _stickiness(
            str(split.get("stickiness")), list(split.get("fallback") or []), _VARIANT_DEFAULT, path
        )
        salt = str(split.get("salt") or flag)
        if group is not None and (group != salt or strategy["parameters"]["stickiness"] != stickiness):
            raise _NotExpressible(f"{path}: the rollout and the split must share salt and stickiness")
        if group is None and stickiness == "default":
            strategy["name"] = "flexibleRollout"
            strategy["parameters"] = {"rollout": "100", "stickiness": "default", "groupId": salt}
        elif group is None:  # on for everyone; Unleash's variants read groupId and stickiness from it
            strategy["parameters"] = {"stickiness": stickiness, "groupId": salt}
        strategy["variants"] = [
            _variant(variants[w["variant"]], int(w["weight"]), stickiness) for w in split.get("weights") or []
        ]
    elif rule.get("variant") not in (None, ON):
        strategy["variants"] = [_variant(variants[rule["variant"]], 1000, "default")]
    if segments:
        strategy["segments"] = segments
    return strategy


def _variant(variant: Mapping[str, Any], weight: int, stickiness: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": variant["key"],
        "weight": weight,
        "weightType": "fix",
        "stickiness": stickiness,
    }
    if variant.get("payload") is not None:
        out["payload"] = variant["payload"]
    return out


_OR_EQUAL = {"semverGte": "semverGt", "semverLte": "semverLt"}


def _semver_expanded(rule: dict[str, Any], known: frozenset[str]) -> list[dict[str, Any]]:
    """``rule``, with each ``semverGte`` / ``semverLte`` the SDK does not know written as "greater (less)
    or equal": two rules for a positive one, two inverted conditions for a negated one."""
    if "SEMVER_GTE" in known:
        return [rule]
    rules: list[list[dict[str, Any]]] = [[]]
    for c in rule["conditions"]:
        strict = _OR_EQUAL.get(str(c.get("operator")))
        if strict is None:
            rules = [[*r, c] for r in rules]
        elif c.get("negate"):
            rules = [[*r, {**c, "operator": strict}, {**c, "operator": "semverEq"}] for r in rules]
        else:
            rules = [[*r, {**c, "operator": o}] for r in rules for o in (strict, "semverEq")]
        if len(rules) > _MAX_GUARDS:
            raise _NotExpressible(
                f"too many semverGte / semverLte conditions for this SDK (over {_MAX_GUARDS} strategies)"
            )
    return [{**rule, "conditions": r} for r in rules]


def _constraint(c: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    op = str(c.get("operator"))
    name = _TO_UNLEASH.get(op)
    if name is None:
        raise _NotExpressible(f"operator {op} has no Unleash constraint")
    if name not in known:
        raise _NotExpressible(f"{name} is not an operator this SDK evaluates (a newer Unleash SDK does)")
    if c.get("caseInsensitive") and op not in _STRING_CI:
        raise _NotExpressible(f"case-insensitive {op} (Unleash's IN compares case-sensitively)")
    out: dict[str, Any] = {"contextName": c["attribute"], "operator": name, "inverted": bool(c.get("negate"))}
    if c.get("caseInsensitive"):
        out["caseInsensitive"] = True
    if "values" in c:
        out["values"] = [_text(v) for v in c["values"]]
    else:
        value = c.get("value")
        if op == "equals":
            out["values"] = [_text(value)]
        else:
            out["value"] = _text(value)
    return out


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
