"""Unleash's flags in gapless's terms: an Unleash feature becomes a gapless flag that answers as Unleash does.

Pure data translation (no I/O, no pydantic): the evaluator then does the work, so an Unleash flag is
evaluated by the same engine as every other gapless flag. An Unleash feature is on when any strategy
matches; the variant is the first matching strategy's variants, else the feature's, overrides first.
gapless rules are first-match, so each strategy becomes rules, in order:

- each variant override of the variants the strategy serves: the strategy's conditions plus
  ``<contextName> in <values>``, serving that variant;
- the strategy's conditions, serving a split over its variants (else the feature's) bucketed as
  Unleash (``"bucketing": "unleash"``: seed 86028157, modulo the total weight, stickiness chain), or
  serving ``on`` when there are no variants;
- a feature with no strategies is on for everyone (as in Unleash); nothing matching serves ``off``.

A flag's variants: ``off`` (false, the off variant), ``on`` (true: on, without an Unleash variant) and
every Unleash variant (true), each with its ``payload``; Unleash's answer reads back from an evaluation
as ``unleash_result``. Strategies: ``default``, ``userWithId``, ``flexibleRollout`` (stickiness
``default`` is userId, then sessionId, then random; ``random``; or any field, as in Unleash),
``gradualRolloutUserId`` / ``SessionId`` / ``Random``, ``remoteAddress`` (``inCidr``) and
``applicationHostname`` (``hostname``, case-insensitive). Rollouts bucket as Unleash
(``murmur3("groupId:value") % 100``), so a user gets the same answer from gapless as from Unleash.

What cannot be expressed is reported by name in ``Translation.refused`` (import refuses it; the client
specification runner counts it): unknown strategies and operators, invalid operands (an invalid regex,
an unparsable number), a regex outside gapless's engine (inline flags, word boundaries, POSIX classes),
dependencies on other features, variant names ``on`` / ``off`` or not of gapless's key syntax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gapless.flags.bucketing import BUCKETS, RANDOM, UNLEASH
from gapless.flags.operators import ConditionError, parse_condition, parse_operand

__all__ = [
    "OFF",
    "ON",
    "OPERATORS",
    "Translation",
    "context_from_unleash",
    "ruleset_from_unleash",
    "state_from_delta",
    "unleash_result",
]

ON, OFF = "on", "off"
OPERATORS = {
    "IN": "in",
    "NOT_IN": "notIn",
    "STR_CONTAINS": "contains",
    "STR_STARTS_WITH": "startsWith",
    "STR_ENDS_WITH": "endsWith",
    "NUM_EQ": "eq",
    "NUM_GT": "gt",
    "NUM_GTE": "gte",
    "NUM_LT": "lt",
    "NUM_LTE": "lte",
    "DATE_AFTER": "dateAfter",
    "DATE_BEFORE": "dateBefore",
    "SEMVER_EQ": "semverEq",
    "SEMVER_GT": "semverGt",
    "SEMVER_GTE": "semverGte",
    "SEMVER_LT": "semverLt",
    "SEMVER_LTE": "semverLte",
    "REGEX": "regex",
    "IN_CIDR": "inCidr",
}
"""Unleash's constraint operators and the gapless operator each one is."""
_MANY = {"in", "notIn", "contains", "startsWith", "endsWith", "inCidr"}
_NUMBER = {"eq", "gt", "gte", "lt", "lte"}
_STRING_CI = {"contains", "startsWith", "endsWith", "regex"}
_VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DEFAULT_ROLLOUT_CHAIN = ("userId", ("sessionId", RANDOM))
_DEFAULT_VARIANT_CHAIN = ("userId", ("sessionId", RANDOM))


class _NeverError(Exception):
    """The strategy can never match (an ``IN`` with no values): it is left out, as it serves no one."""


class _RefusedError(Exception):
    """Something gapless cannot express; the message names it."""


@dataclass
class Translation:
    """A ruleset of translated flags, and the features that could not be translated, with the reason."""

    ruleset: dict[str, Any]
    refused: dict[str, str] = field(default_factory=dict)


def context_from_unleash(context: Mapping[str, Any]) -> dict[str, Any]:
    """An Unleash context as a gapless one: ``properties`` flattened, the standard fields over them."""
    out: dict[str, Any] = {}
    props = context.get("properties")
    if isinstance(props, Mapping):
        out.update(props)
    out.update((k, v) for k, v in context.items() if k != "properties")
    return out


def unleash_result(value: object, variant: str | None, payloads: Mapping[str, Any]) -> dict[str, Any]:
    """Unleash's ``getVariant`` answer from a gapless evaluation of a translated flag."""
    if value is not True:
        return {"name": "disabled", "enabled": False, "feature_enabled": False}
    if variant is None or variant == ON:
        return {"name": "disabled", "enabled": False, "feature_enabled": True}
    out: dict[str, Any] = {"name": variant, "enabled": True, "feature_enabled": True}
    if payloads.get(variant) is not None:
        out["payload"] = payloads[variant]
    return out


def state_from_delta(events: list[Any]) -> dict[str, Any]:
    """The features document that Unleash's delta events (``/api/client/delta``) describe, in order:
    ``hydration`` replaces everything, ``feature-updated`` / ``-removed`` and ``segment-updated`` /
    ``-removed`` change one thing."""
    features: dict[str, Any] = {}
    segments: dict[Any, Any] = {}
    for e in events:
        kind = e.get("type")
        if kind == "hydration":
            features = {f["name"]: f for f in e.get("features") or []}
            segments = {s["id"]: s for s in e.get("segments") or []}
        elif kind == "feature-updated":
            features[e["feature"]["name"]] = e["feature"]
        elif kind == "feature-removed":
            features.pop(e.get("featureName"), None)
        elif kind == "segment-updated":
            segments[e["segment"]["id"]] = e["segment"]
        elif kind == "segment-removed":
            segments.pop(e.get("segmentId"), None)
    return {"version": 2, "features": list(features.values()), "segments": list(segments.values())}


def ruleset_from_unleash(state: Mapping[str, Any], *, revision: int = 1) -> Translation:
    """Translate an Unleash client features document (``/api/client/features``) into a ruleset."""
    segments = {
        f"unleash-{s['id']}": s for s in state.get("segments") or [] if isinstance(s, Mapping) and "id" in s
    }
    translation = Translation({"formatVersion": 1, "revision": revision, "segments": {}, "flags": {}})
    usable: dict[str, bool] = {}  # segment key -> whether it can match at all
    for key, segment in segments.items():
        try:
            conditions = _constraints(segment.get("constraints") or [])
        except _NeverError:
            usable[key] = False
            continue
        except _RefusedError as e:
            translation.refused[f"segment {segment.get('name', key)}"] = str(e)
            continue
        usable[key] = True
        translation.ruleset["segments"][key] = {"conditions": conditions}
    for feature in state.get("features") or []:
        name = str(feature.get("name"))
        try:
            translation.ruleset["flags"][name] = _flag(feature, usable)
        except _RefusedError as e:
            translation.refused[name] = str(e)
    return translation


def _dependencies(raw: object) -> list[dict[str, Any]]:
    """Unleash's ``dependencies`` as ``flagVariant`` conditions: every parent must be satisfied."""
    out: list[dict[str, Any]] = []
    for i, d in enumerate(raw if isinstance(raw, list) else []):
        parent = d.get("feature") if isinstance(d, Mapping) else None
        if not isinstance(parent, str) or not parent:
            raise _RefusedError(f"dependencies[{i}]: needs the parent's `feature` name")
        if d.get("enabled", True) is False:
            out.append({"attribute": parent, "operator": "flagVariant", "values": [OFF]})
            continue
        wanted = [ON if v == "disabled" else str(v) for v in d.get("variants") or []]
        if wanted:
            out.append({"attribute": parent, "operator": "flagVariant", "values": wanted})
        else:  # enabled, whichever variant
            out.append({"attribute": parent, "operator": "flagVariant", "values": [OFF], "negate": True})
    return out


def _flag(feature: Mapping[str, Any], segments: Mapping[str, bool]) -> dict[str, Any]:
    name = str(feature["name"])
    gate = _dependencies(feature.get("dependencies"))
    feature_variants = _variants(feature.get("variants") or [])
    variants: dict[str, Any] = {OFF: None, ON: None}
    rules: list[dict[str, Any]] = []
    strategies = feature.get("strategies") or [{"name": "default"}]
    for i, strategy in enumerate(strategies):
        try:
            conditions = gate + _strategy(name, strategy, segments)
        except _NeverError:
            continue
        except _RefusedError as e:
            raise _RefusedError(f"strategies[{i}]: {e}") from None
        own = _variants(strategy.get("variants") or [])
        params = strategy.get("parameters") or {}
        title = strategy.get("title")
        label = {"description": title[:1024]} if isinstance(title, str) and title else {}
        if own:
            serve, salt, sticky = own, str(params.get("groupId") or name), params.get("stickiness")
        else:
            serve, salt, sticky = feature_variants, name, None
            if serve:
                sticky = serve[0].get("stickiness")
        for v in serve:
            variants[v["name"]] = v.get("payload")
        if not serve:
            rules.append({"conditions": conditions, "variant": ON} | label)
            continue
        for v in serve:
            for o in v.get("overrides") or []:
                values = [str(x) for x in o.get("values") or []]
                if values:
                    attr = str(o.get("contextName"))
                    rules.append(
                        {
                            "conditions": [
                                *conditions,
                                {"attribute": attr, "operator": "in", "values": values},
                            ],
                            "variant": v["name"],
                        }
                    )
        rules.append({"conditions": conditions, "split": _split(serve, salt, sticky)} | label)
    flag = {
        "kind": "boolean",
        "variants": [
            {"key": k, "value": k != OFF} | ({"payload": p} if p is not None else {})
            for k, p in variants.items()
        ],
        "offVariant": OFF,
        "enabled": bool(feature.get("enabled")),
        "rules": rules,
        "defaultRollout": {"variant": OFF},
    }
    if feature.get("impressionData"):
        flag["impressionData"] = True
    return flag


def _variants(raw: list[Any]) -> list[dict[str, Any]]:
    out = [v for v in raw if isinstance(v, Mapping)]
    for v in out:
        name = v.get("name")
        if not isinstance(name, str) or name in (ON, OFF) or not _VARIANT_RE.match(name) or len(name) > 128:
            raise _RefusedError(f"variant name {name!r} is reserved or not a gapless variant key")
    if sum(int(v.get("weight") or 0) for v in out) <= 0:
        return []
    return [dict(v) for v in out]


def _chain(stickiness: object, default: tuple[str, tuple[str, ...]], *, variant: bool) -> dict[str, Any]:
    if stickiness in (None, "", "default"):
        attr, rest = default
    elif stickiness == RANDOM:
        attr, rest = RANDOM, ()
    else:
        attr, rest = str(stickiness), ((RANDOM,) if variant else ())
    return {"fallback": list(rest)} | ({"attribute": attr} if not variant else {"stickiness": attr})


def _split(variants: list[dict[str, Any]], salt: str, stickiness: object) -> dict[str, Any]:
    weights = [{"variant": v["name"], "weight": int(v.get("weight") or 0)} for v in variants]
    if sum(w["weight"] for w in weights) > BUCKETS:
        raise _RefusedError(f"variant weights sum to more than {BUCKETS}")
    return {"weights": weights, "salt": salt, "bucketing": UNLEASH} | _chain(
        stickiness, _DEFAULT_VARIANT_CHAIN, variant=True
    )


def _percent(raw: object) -> int:
    try:
        p = int(str(raw).strip())
    except ValueError:
        raise _RefusedError(f"percentage {raw!r} is not a whole number") from None
    return max(0, min(100, p)) * 1000


def _rollout(share: int, salt: str, chain: dict[str, Any]) -> list[dict[str, Any]]:
    if share >= BUCKETS and RANDOM in (chain["attribute"], *chain["fallback"]):
        return []  # 100% with a random fallback: everyone
    if share <= 0:
        raise _NeverError
    return [{"operator": "inRollout", "value": share, "salt": salt, "bucketing": UNLEASH} | chain]


def _strategy(flag: str, strategy: Mapping[str, Any], segments: Mapping[str, bool]) -> list[dict[str, Any]]:
    name = strategy.get("name")
    params = strategy.get("parameters") or {}
    conditions = _constraints(strategy.get("constraints") or [])
    for sid in strategy.get("segments") or []:
        key = f"unleash-{sid}"
        if not segments.get(key, False):  # Unleash: a strategy on a missing segment is off
            raise _NeverError
        conditions.append({"operator": "inSegment", "values": [key]})
    if name == "default":
        return conditions
    if name == "userWithId":
        ids = [u.strip() for u in str(params.get("userIds", "")).split(",") if u.strip()]
        if not ids:
            raise _NeverError
        return [*conditions, {"attribute": "userId", "operator": "in", "values": ids}]
    if name == "flexibleRollout":
        chain = _chain(params.get("stickiness"), _DEFAULT_ROLLOUT_CHAIN, variant=False)
        salt = str(params.get("groupId") or flag)
        return conditions + _rollout(_percent(params.get("rollout", "100")), salt, chain)
    if name in ("gradualRolloutUserId", "gradualRolloutSessionId", "gradualRolloutRandom"):
        attr = {"gradualRolloutUserId": "userId", "gradualRolloutSessionId": "sessionId"}.get(name, RANDOM)
        salt = str(params.get("groupId") or flag)
        chain = {"attribute": attr, "fallback": []}
        return conditions + _rollout(_percent(params.get("percentage", "100")), salt, chain)
    if name == "remoteAddress":
        ips = [ip.strip() for ip in str(params.get("IPs", "")).split(",") if ip.strip()]
        if not ips:
            raise _NeverError
        return [*conditions, _checked({"attribute": "remoteAddress", "operator": "inCidr", "values": ips})]
    if name == "applicationHostname":
        hosts = [h.strip().lower() for h in str(params.get("hostNames", "")).split(",") if h.strip()]
        if not hosts:
            raise _NeverError
        cond = {"attribute": "hostname", "operator": "in", "values": hosts, "caseInsensitive": True}
        return [*conditions, cond]
    raise _RefusedError(f"unknown strategy {name!r} (custom strategies run only in Unleash's SDKs)")


def _constraints(raw: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, c in enumerate(raw):
        try:
            cond = _constraint(c)
        except _RefusedError as e:
            raise _RefusedError(f"constraints[{i}]: {e}") from None
        if cond:
            out.append(cond)
    return out


def _constraint(c: Mapping[str, Any]) -> dict[str, Any] | None:
    """A condition, or None for one that always holds; ``_NeverError`` for one that never does."""
    op = OPERATORS.get(str(c.get("operator")))
    if op is None:
        raise _RefusedError(f"unknown operator {c.get('operator')!r}")
    inverted = bool(c.get("inverted"))
    out: dict[str, Any] = {"attribute": str(c.get("contextName")), "operator": op}
    if op in _MANY:
        values = [str(v) for v in c.get("values") or []]
        if not values:  # nothing is in no set: IN [] never holds, NOT_IN [] always does
            holds = op == "notIn"
            if holds != inverted:
                return None
            raise _NeverError
        out["values"] = values
    else:
        value = c.get("value")
        if value is None and c.get("values"):
            value = c["values"][0]
        if op in _NUMBER:
            try:
                value = float(str(value))
            except ValueError:
                raise _RefusedError(f"{c.get('operator')} needs a number, not {value!r}") from None
        out["value"] = value
    if inverted:
        out["negate"] = True
    if c.get("caseInsensitive") and op in _STRING_CI:
        out["caseInsensitive"] = True
    return _checked(out)


_UNSUPPORTED_REGEX = ("inline flags", "word boundaries", "not supported")
_NEVER_REGEX = ("lookaround", "backreferences")


def _checked(condition: dict[str, Any]) -> dict[str, Any]:
    """The condition, if gapless's own check (the model's and every SDK's) accepts it.

    An operand Unleash itself cannot use (an invalid version, date, address or regex) makes Unleash's
    constraint false, so the strategy never matches (``_NeverError``), or always does when inverted. A
    regex valid in Unleash (Rust's syntax) but outside gapless's engine is refused by name.
    """
    if condition["operator"] == "regex" and re.search(r"\[:\^?[a-z]+:\]", str(condition.get("value"))):
        raise _RefusedError("regex: POSIX character classes ([[:alpha:]]) are not in gapless's regex engine")
    if condition["operator"] == "inCidr":  # Unleash skips entries that are no address or range
        valid = [v for v in condition["values"] if _operand_ok("inCidr", v)]
        if not valid:
            return _never(condition)
        condition = condition | {"values": valid}
    try:
        parse_condition(
            operator=condition["operator"],
            attribute=condition.get("attribute"),
            value=condition.get("value"),
            values=condition.get("values"),
            negate=condition.get("negate", False),
            case_insensitive=condition.get("caseInsensitive", False),
        )
    except ConditionError as e:
        text = str(e)
        if (
            condition["operator"] == "regex"
            and any(w in text for w in _UNSUPPORTED_REGEX)
            and not any(w in text for w in _NEVER_REGEX)
        ):
            raise _RefusedError(f"regex: {e.message}") from None
        if e.field in ("value", "values") or e.field.startswith("values["):
            return _never(condition)
        raise _RefusedError(f"{condition['operator']}: {e}") from None
    return condition


def _operand_ok(operator: str, raw: object) -> bool:
    try:
        parse_operand(operator, raw)
    except ValueError:
        return False
    return True


def _never(condition: dict[str, Any]) -> dict[str, Any]:
    """A constraint that never holds (``_NeverError``), or, inverted, one that always does (no condition)."""
    if condition.get("negate"):
        return {}
    raise _NeverError
