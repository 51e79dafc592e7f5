"""Reading an Unleash export file: the admin feature export, or the client features, checked by field.

Unleash's export (its UI's "Export", ``POST /api/admin/features-batch/export``) describes features of one
environment in separate lists joined by feature name: ``features``, ``featureStrategies`` (each with its
``featureName``, in ``sortOrder``), ``featureEnvironments`` (enabled and variants per feature),
``segments``, ``featureTags`` / ``tagTypes``, ``contextFields`` and ``dependencies``. gapless evaluates
Unleash's client format (what ``/api/client/features`` serves), so the admin export is first put into that
shape, for the environment chosen, exactly as Unleash's client API would serve it; the translation into
gapless flags (``gapless.flags.unleash``) is then the same for both files.

Pure and strict. A file that does not have the documented shape is an ``ExportError`` naming the field
(``featureStrategies[3].constraints``): nothing is imported from it. What is well-formed but cannot be
carried into gapless is refused per feature, by name, with the reason (``Shape.refused``): an archived
feature, a strategy on a segment whose constraints the file does not hold (Unleash exports segments by
name only; add each segment's ``constraints`` from ``/api/admin/segments`` to its entry). What has no
effect on evaluation and no place in gapless is named in ``Shape.notes`` and shown before anything is
written: disabled strategies (Unleash does not evaluate them), context field definitions (descriptions and
legal values of Unleash's UI) and tag type descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ADMIN_KEYS", "ExportError", "Shape", "read_export"]

ADMIN_KEYS = frozenset(
    {
        "features",
        "featureStrategies",
        "featureEnvironments",
        "segments",
        "tagTypes",
        "featureTags",
        "contextFields",
        "dependencies",
    }
)
"""The top-level fields of Unleash's admin export (its schema allows no others)."""
_CLIENT_KEYS = frozenset({"version", "features", "segments", "query", "meta", "events"})


class ExportError(ValueError):
    """The file is not an Unleash export: ``field`` names where (``featureStrategies[2].name``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Shape:
    """An export as Unleash's client features of one environment, and what reading it found."""

    state: dict[str, Any]
    """``{"version": 2, "features": [...], "segments": [...]}``, as ``/api/client/features`` answers."""
    admin: bool
    """Whether the file was the admin export (else the client features or delta events)."""
    refused: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_export(doc: object, environment: str) -> Shape:
    """The client features an export file describes for ``environment``; ``ExportError`` if malformed."""
    if not isinstance(doc, Mapping):
        raise ExportError("(file)", "expected a JSON object (Unleash's export or client features)")
    if "featureStrategies" in doc:
        return _from_admin(doc, environment)
    unknown = sorted(set(doc) - _CLIENT_KEYS)
    if not ("features" in doc or "events" in doc):
        raise ExportError(
            "(file)",
            "expected Unleash's export (features, featureStrategies, ...) or client features "
            "({'features': [...]}) or delta events ({'events': [...]})",
        )
    if unknown:
        raise ExportError(unknown[0], "not a field of Unleash's client features")
    if "events" in doc:
        events = _list(doc, "events", required=True)
        for i, e in enumerate(events):
            _obj(e, f"events[{i}]")
            _str(e, "type", f"events[{i}]")
        from gapless.flags.unleash import state_from_delta

        state = state_from_delta(events)
    else:
        state = {
            "version": 2,
            "features": _list(doc, "features", required=True),
            "segments": _list(doc, "segments"),
        }
    _check_client(state)
    return Shape(state=state, admin=False)


def _from_admin(doc: Mapping[str, Any], environment: str) -> Shape:
    unknown = sorted(set(doc) - ADMIN_KEYS)
    if unknown:
        raise ExportError(unknown[0], "not a field of Unleash's feature export")
    shape = Shape(state={"version": 2, "features": [], "segments": []}, admin=True)
    features: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(_list(doc, "features", required=True)):
        where = f"features[{i}]"
        name = _str(_obj(f, where), "name", where)
        if name in features:
            raise ExportError(f"{where}.name", f"{name!r} appears twice")
        for k, v in enumerate(_optional(f, "variants", list, where) or []):
            _variant(v, f"{where}.variants[{k}]")
        _optional(f, "impressionData", bool, where)
        _optional(f, "archived", bool, where)
        features[name] = dict(f)
    env_rows = _one_environment(doc, "featureEnvironments", environment)
    strategies = _one_environment(doc, "featureStrategies", environment)
    enabled: dict[str, bool] = {}
    env_variants: dict[str, list[Any]] = {}
    for where, row in env_rows:
        name = _feature_of(row, where, features)
        if name in enabled:
            raise ExportError(f"{where}.featureName", f"{name!r} has two environment rows")
        enabled[name] = _optional(row, "enabled", bool, where) is True
        if "variants" in row and row["variants"] is not None:
            env_variants[name] = _optional(row, "variants", list, where) or []
            for k, v in enumerate(env_variants[name]):
                _variant(v, f"{where}.variants[{k}]")
    by_feature: dict[str, list[tuple[float, int, dict[str, Any]]]] = {name: [] for name in features}
    for index, (where, row) in enumerate(strategies):
        name = _feature_of(row, where, features)
        _str(row, "name", where)
        order = _optional(row, "sortOrder", (int, float), where)
        _strategy_fields(row, where)
        if _optional(row, "disabled", bool, where):
            title = row.get("title") or row.get("id") or row["name"]
            shape.notes.append(f"feature {name}: disabled strategy {title!r} not imported (Unleash skips it)")
            continue
        strategy: dict[str, Any] = {
            k: row[k] for k in ("name", "parameters", "constraints", "segments", "variants") if k in row
        }
        if isinstance(row.get("title"), str) and row["title"]:
            strategy["title"] = row["title"]
        by_feature[name].append((float(order or 0), index, strategy))
    segments = _segments(doc)
    parents = _dependencies(doc, features)
    tags = _tags(doc, features)
    for name, f in features.items():
        if f.get("archived") is True:
            shape.refused[name] = "archived in Unleash (revive it there, or leave it out of the export)"
            continue
        rows = [s for _, _, s in sorted(by_feature[name], key=lambda t: (t[0], t[1]))]
        missing = sorted(
            {
                sid
                for s in rows
                for sid in s.get("segments") or []
                if segments.get(sid, {}).get("constraints") is None
            },
            key=str,
        )
        if missing:
            named = ", ".join(
                f"{segments[s]['name']!r} (id {s})" if s in segments else f"id {s}" for s in missing
            )
            shape.refused[name] = (
                f"uses segment {named} whose constraints the export does not hold "
                "(add them from Unleash's /api/admin/segments to the segment's entry)"
            )
            continue
        feature: dict[str, Any] = {
            "name": name,
            "enabled": enabled.get(name, False),
            "strategies": rows,
            "variants": env_variants.get(name, f.get("variants") or []),
        }
        for key in ("project", "type", "description", "impressionData"):
            if key in f and f[key] is not None:
                feature[key] = f[key]
        if name in parents:
            feature["dependencies"] = parents[name]
        if name in tags:
            feature["tags"] = tags[name]
        shape.state["features"].append(feature)
    shape.state["segments"] = [
        {"id": s["id"], "name": s["name"], "constraints": s["constraints"]}
        for s in segments.values()
        if s.get("constraints") is not None
    ]
    contexts = [
        _str(_obj(c, f"contextFields[{i}]"), "name", f"contextFields[{i}]")
        for i, c in enumerate(_list(doc, "contextFields"))
    ]
    if contexts:
        shape.notes.append(
            "context fields "
            + ", ".join(sorted(contexts))
            + ": their definitions (descriptions, legal values) "
            "are Unleash's UI and not imported; gapless evaluates any context attribute"
        )
    types = [
        _str(_obj(t, f"tagTypes[{i}]"), "name", f"tagTypes[{i}]")
        for i, t in enumerate(_list(doc, "tagTypes"))
    ]
    if types:
        shape.notes.append(
            "tag types " + ", ".join(sorted(types)) + ": kept as the type of each flag tag (type:value); "
            "their descriptions and icons are not imported"
        )
    _check_client(shape.state)
    return shape


def _one_environment(doc: Mapping[str, Any], key: str, environment: str) -> list[tuple[str, dict[str, Any]]]:
    """The rows of ``doc[key]`` (with where each is), of one environment: an export is of one, but rows
    that name several are narrowed to ``environment`` (which must then be one of them)."""
    rows = [
        (f"{key}[{i}]", _obj(r, f"{key}[{i}]"))
        for i, r in enumerate(_list(doc, key, required=key == "featureStrategies"))
    ]
    named = {r["environment"] for _, r in rows if "environment" in r}
    for where, r in rows:
        if "environment" in r:
            _str(r, "environment", where)
    if len(named) <= 1:
        return rows
    if environment not in named:
        raise ExportError(
            f"{key}[].environment",
            f"the export holds environments {', '.join(sorted(named))}; --environment names none of them",
        )
    return [(w, r) for w, r in rows if r.get("environment", environment) == environment]


def _feature_of(row: Mapping[str, Any], where: str, features: Mapping[str, Any]) -> str:
    name = _str(row, "featureName", where)
    if name not in features:
        raise ExportError(f"{where}.featureName", f"{name!r} is not among the export's features")
    return name


def _segments(doc: Mapping[str, Any]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for i, s in enumerate(_list(doc, "segments")):
        where = f"segments[{i}]"
        _obj(s, where)
        sid = s.get("id")
        if not isinstance(sid, int) or isinstance(sid, bool):
            raise ExportError(f"{where}.id", "expected a whole number")
        if sid in out:
            raise ExportError(f"{where}.id", f"segment id {sid} appears twice")
        name = _str(s, "name", where)
        constraints = _optional(s, "constraints", list, where)
        out[sid] = {"id": sid, "name": name, "constraints": constraints}
    return out


def _dependencies(doc: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for i, d in enumerate(_list(doc, "dependencies")):
        where = f"dependencies[{i}]"
        child = _str(_obj(d, where), "feature", where)
        if child not in features:
            raise ExportError(f"{where}.feature", f"{child!r} is not among the export's features")
        parents = _optional(d, "dependencies", list, where) or []
        for j, p in enumerate(parents):
            pw = f"{where}.dependencies[{j}]"
            _str(_obj(p, pw), "feature", pw)
            _optional(p, "enabled", bool, pw)
            _optional(p, "variants", list, pw)
        out.setdefault(child, []).extend(dict(p) for p in parents)
    return out


def _tags(doc: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for i, t in enumerate(_list(doc, "featureTags")):
        where = f"featureTags[{i}]"
        name = _feature_of(_obj(t, where), where, features)
        kind = t.get("tagType", t.get("type"))
        value = t.get("tagValue", t.get("value"))
        if not isinstance(kind, str) or not isinstance(value, str):
            raise ExportError(f"{where}.tagType", "expected tagType and tagValue strings")
        out.setdefault(name, []).append({"type": kind, "value": value})
    return out


def _check_client(state: Mapping[str, Any]) -> None:
    """Client features with the shape the translation reads; ``ExportError`` naming the first fault."""
    for i, f in enumerate(state.get("features") or []):
        where = f"features[{i}]"
        _str(_obj(f, where), "name", where)
        for j, s in enumerate(_optional(f, "strategies", list, where) or []):
            sw = f"{where}.strategies[{j}]"
            _str(_obj(s, sw), "name", sw)
            _strategy_fields(s, sw)
        for k, v in enumerate(_optional(f, "variants", list, where) or []):
            _variant(v, f"{where}.variants[{k}]")
        for k, d in enumerate(_optional(f, "dependencies", list, where) or []):
            _str(_obj(d, f"{where}.dependencies[{k}]"), "feature", f"{where}.dependencies[{k}]")
    for i, s in enumerate(state.get("segments") or []):
        where = f"segments[{i}]"
        if "id" not in _obj(s, where):
            raise ExportError(f"{where}.id", "missing")
        _constraints(s, where)


def _strategy_fields(s: Mapping[str, Any], where: str) -> None:
    _optional(s, "parameters", dict, where)
    _constraints(s, where)
    for k, v in enumerate(_optional(s, "variants", list, where) or []):
        _variant(v, f"{where}.variants[{k}]")
    for k, sid in enumerate(_optional(s, "segments", list, where) or []):
        if not isinstance(sid, (int, str)) or isinstance(sid, bool):
            raise ExportError(f"{where}.segments[{k}]", "expected a segment id")


def _constraints(owner: Mapping[str, Any], where: str) -> None:
    for k, c in enumerate(_optional(owner, "constraints", list, where) or []):
        cw = f"{where}.constraints[{k}]"
        _str(_obj(c, cw), "contextName", cw)
        _str(c, "operator", cw)
        _optional(c, "values", list, cw)
        _optional(c, "inverted", bool, cw)
        _optional(c, "caseInsensitive", bool, cw)


def _variant(v: object, where: str) -> None:
    _str(_obj(v, where), "name", where)
    weight = v.get("weight", 0) if isinstance(v, Mapping) else 0
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
        raise ExportError(f"{where}.weight", "expected a whole number, 0 or more")
    for k, o in enumerate(_optional(v, "overrides", list, where) or []):
        ow = f"{where}.overrides[{k}]"
        _str(_obj(o, ow), "contextName", ow)
        _optional(o, "values", list, ow)
    _optional(v, "payload", dict, where)


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ExportError(where, f"expected an object, not {type(value).__name__}")
    return value


def _list(doc: Mapping[str, Any], key: str, *, required: bool = False) -> list[Any]:
    if key not in doc or doc[key] is None:
        if required:
            raise ExportError(key, "missing")
        return []
    if not isinstance(doc[key], list):
        raise ExportError(key, f"expected a list, not {type(doc[key]).__name__}")
    return list(doc[key])


def _str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ExportError(f"{where}.{key}", "expected a non-empty string")
    return value


def _optional(doc: object, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key) if isinstance(doc, Mapping) else None
    if value is None:
        return None
    if not isinstance(value, kind) or (kind in (int, (int, float)) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        readable = {"dict": "an object", "list": "a list", "bool": "true or false"}.get(names, names)
        raise ExportError(f"{where}.{key}", f"expected {readable}, not {type(value).__name__}")
    return value
