"""Kubernetes CustomResourceDefinitions of ``Rollout`` and ``AnalysisTemplate``, generated from the models.

The pydantic models are the one source of truth: the CRDs' OpenAPI v3 schemas are derived from their
JSON Schemas, so a field added to a model reaches the cluster by regenerating
(``python -m gapless.spec.crd deploy/kubernetes/crds``), and a test fails when the committed files drift.

Kubernetes wants *structural* schemas: no ``$ref``, a ``type`` on every node, no ``anyOf`` branches
that add types or properties, no ``const``, no JSON Schema 2020 numeric exclusives. The conversion
inlines references, turns ``X | None`` into ``nullable``, ``int | str`` into
``x-kubernetes-int-or-string``, merges alternative objects into one, and leaves a value whose input a
validator reshapes (durations such as ``30s``, the env list form, ...) untyped with
``x-kubernetes-preserve-unknown-fields``. The apiserver's check is therefore a first gate; the
models' full validation (cross-field rules, expressions) runs in gapless on every document it reads.
Defaults are left out on purpose: gapless applies them, so the stored object stays what the user wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gapless.spec.analysis import AnalysisTemplate
from gapless.spec.models import Rollout

__all__ = ["GROUP", "VERSION", "crd_documents", "crds", "structural_schema"]

GROUP = "gapless.dev"
VERSION = "v1alpha1"

_KEEP = (
    "description",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
)
_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}


class _InputSchema(GenerateJsonSchema):
    """Validation-mode JSON Schema in which a value reshaped by a validator accepts any input."""

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if {b.get("type") for b in inner.get("anyOf", [])} == {"integer", "string"}:
            return inner  # int-or-string (maxSurge: 25%): the validator only checks what it is given
        return {"anyOf": [inner, {}]}

    def function_plain_schema(self, schema: core_schema.PlainValidatorFunctionSchema) -> JsonSchemaValue:
        return {}

    def function_wrap_schema(self, schema: core_schema.WrapValidatorFunctionSchema) -> JsonSchemaValue:
        return {"anyOf": [self.generate_inner(schema["schema"]), {}]}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's input schema as a Kubernetes structural OpenAPI v3 schema."""
    schema = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_InputSchema)
    return _convert(schema, schema.get("$defs", {}), frozenset())


def _convert(node: dict[str, Any], defs: dict[str, Any], seen: frozenset[str]) -> dict[str, Any]:
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if name in seen:  # a recursive type cannot be inlined
            return {"type": "object", **_PRESERVE}
        resolved = _convert(defs[name], defs, seen | {name})
        if node.get("description"):
            resolved["description"] = node["description"]
        return resolved
    for key in ("anyOf", "oneOf"):
        if key in node:
            either = _alternatives(list(node[key]), defs, seen)
            if node.get("description"):
                either["description"] = node["description"]
            return either
    if "const" in node:
        return {"enum": [node["const"]]} | ({"type": node["type"]} if "type" in node else {})
    if not node or node.get("type") is None:
        return dict(_PRESERVE)
    typ = node["type"]
    out: dict[str, Any] = {"type": typ}
    out.update({k: node[k] for k in _KEEP if k in node})
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[flag] = node[bound]
            out[bound] = True
    if typ == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {k: _convert(v, defs, seen) for k, v in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = _convert(extra, defs, seen)
        else:
            out.update(_PRESERVE)
    elif typ == "array":
        out["items"] = _convert(node.get("items", {}), defs, seen)
    return out


def _alternatives(
    branches: list[dict[str, Any]], defs: dict[str, Any], seen: frozenset[str]
) -> dict[str, Any]:
    nullable = any(b.get("type") == "null" for b in branches)
    converted = [_convert(b, defs, seen) for b in branches if b.get("type") != "null"]
    if any(c == _PRESERVE for c in converted):
        out: dict[str, Any] = dict(_PRESERVE)
    elif len(converted) == 1:
        out = converted[0]
    else:
        types = {c.get("type") for c in converted}
        if types == {"integer", "string"}:
            out = {"x-kubernetes-int-or-string": True}
        elif types <= {"integer", "number"}:
            out = {"type": "number"}
        elif types == {"object"}:
            out = _merge_objects(converted)
        else:
            out = dict(_PRESERVE)
    if nullable:
        out["nullable"] = True
    return out


def _merge_objects(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """One object accepting every alternative's properties (a property typed differently is left open)."""
    properties: dict[str, Any] = {}
    for obj in objects:
        if obj.get("x-kubernetes-preserve-unknown-fields"):
            return {"type": "object", **_PRESERVE}
        for name, schema in obj.get("properties", {}).items():
            if name in properties and properties[name] != schema:
                properties[name] = dict(_PRESERVE)
            else:
                properties.setdefault(name, schema)
    required = set.intersection(*(set(o.get("required", [])) for o in objects))
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = sorted(required)
    return out


def _resource(
    kind: str, plural: str, short: list[str], spec: dict[str, Any], columns: list[dict[str, str]]
) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {"type": "object", **_PRESERVE},
        },
        "required": ["spec"],
    }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
    }
    if columns:
        version["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
            },
            "versions": [version],
        },
    }


ROLLOUT_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Revision", "type": "string", "jsonPath": ".status.currentRevision"},
    {"name": "Weights", "type": "string", "jsonPath": ".status.weights"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
"""What ``kubectl get rollouts`` shows; the operator writes these status fields (``ready`` as ``2/3``)."""


def crds() -> list[dict[str, Any]]:
    """The two CustomResourceDefinitions, Rollout first."""
    rollout_spec = structural_schema(Rollout)["properties"]["spec"]
    template_spec = structural_schema(AnalysisTemplate)["properties"]["spec"]
    return [
        _resource("Rollout", "rollouts", ["gro"], rollout_spec, ROLLOUT_COLUMNS),
        _resource("AnalysisTemplate", "analysistemplates", ["gat"], template_spec, []),
    ]


def crd_documents() -> dict[str, str]:
    """File name -> YAML text of each CRD, as committed under ``deploy/kubernetes/crds``."""
    header = "# Generated from gapless's pydantic models by `python -m gapless.spec.crd`: do not edit.\n"
    return {
        f"{doc['metadata']['name']}.yaml": header + yaml.safe_dump(doc, sort_keys=False, width=100)
        for doc in crds()
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gapless.spec.crd DIRECTORY", file=sys.stderr)
        return 2
    target = Path(argv[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, text in crd_documents().items():
        (target / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
