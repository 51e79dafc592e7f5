"""Planning an import from Unleash: which gapless flags and segments an Unleash export becomes, and what
changes in a project. Pure: the CLI (``gapless flags import --from-unleash``) reads the file and the
project, shows this plan, and applies it through the admin API.

The export read is Unleash's admin feature export (one environment's features, strategies, segments,
tags and dependencies, put into the client shape by ``gapless.flags.unleash_admin``) or its client format
for one environment (what ``/api/client/features`` answers a client token of that environment, or its
delta events), translated by ``gapless.flags.unleash``; a malformed file is an ``ExportError`` naming the field.
Each feature becomes a flag whose configuration in the chosen environment is replaced; the flag's other
environments are kept. Unleash segments become gapless segments ``unleash-<id>`` (described by their
Unleash name). Refused, each by name with the reason: what the translation cannot express, and names
that are not gapless keys (lowercase letters, digits, ``.``, ``_``, ``-``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gapless.flags.unleash import ruleset_from_unleash
from gapless.flags.unleash_admin import read_export

__all__ = ["ImportPlan", "plan_import"]

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_TYPES = {"release", "experiment", "operational", "kill-switch", "permission"}


@dataclass
class ImportPlan:
    """Documents to write (flag and segment documents as the admin API takes them) and what each does."""

    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Segment documents by key; write them before the flags that use them."""
    flags: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the file holds that has no effect on evaluation and is not carried over (shown, not silent)."""
    projects: set[str] = field(default_factory=set)
    """The Unleash projects of the features read."""


def plan_import(export: object, environment: str, flags: Mapping[str, Mapping[str, Any]]) -> ImportPlan:
    """The documents that import ``export`` into ``environment`` of a project holding ``flags``
    (documents by key, as the admin API returns them: their other environments are kept).
    ``ExportError`` (naming the field) when the file is not an Unleash export."""
    shape = read_export(export, environment)
    state = shape.state
    translation = ruleset_from_unleash(state)
    plan = ImportPlan(refused=shape.refused | dict(translation.refused), notes=list(shape.notes))
    plan.projects = {f["project"] for f in state["features"] if isinstance(f.get("project"), str)}
    names = {str(s.get("id")): str(s.get("name", "")) for s in state.get("segments") or []}
    for key, seg in translation.ruleset["segments"].items():
        plan.segments[key] = {"key": key, "description": names.get(key.removeprefix("unleash-"), ""), **seg}
    features = {str(f.get("name")): f for f in state.get("features") or []}
    for name, flag in translation.ruleset["flags"].items():
        if not _KEY_RE.match(name):
            plan.refused[name] = (
                "the name is not a gapless flag key (lowercase letters, digits, '.', '_', '-')"
            )
            continue
        feature = features[name]
        plan.flags[name] = _flag_doc(name, flag, feature, environment, flags.get(name))
    return plan


def _flag_doc(
    name: str,
    flag: Mapping[str, Any],
    feature: Mapping[str, Any],
    environment: str,
    existing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    environments = dict((existing or {}).get("environments") or {})
    environments[environment] = {
        "enabled": flag["enabled"],
        "rules": flag["rules"],
        "defaultRollout": flag["defaultRollout"],
    }
    variants = list((existing or {}).get("variants") or [])
    known = {v.get("key") for v in variants}
    for v in flag["variants"]:  # the union: another environment's rules may serve a variant this one does not
        if v["key"] in known:
            variants = [v if old.get("key") == v["key"] else old for old in variants]
        else:
            variants.append(v)
    doc: dict[str, Any] = {
        "key": name,
        "kind": "boolean",
        "variants": variants,
        "offVariant": flag["offVariant"],
        "environments": environments,
        "impressionData": bool(flag.get("impressionData")),
    }
    if feature.get("type") in _TYPES:
        doc["type"] = feature["type"]
    if isinstance(feature.get("description"), str) and feature["description"]:
        doc["description"] = feature["description"]
    tags = [f"{t['type']}:{t['value']}" for t in feature.get("tags") or []]
    if tags or existing:
        doc["tags"] = sorted(set(tags) | set((existing or {}).get("tags") or []))
    return doc
