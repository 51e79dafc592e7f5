"""The CRDs are generated from the models: the committed files match, and the schemas are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gapless.spec.crd import crd_documents, crds, structural_schema
from gapless.spec.models import Rollout
from tests.conftest import REPO

CRD_DIR = REPO / "deploy" / "kubernetes" / "crds"


def test_committed_crds_match_the_models() -> None:
    """Regenerating gives the committed files byte for byte (run `python -m gapless.spec.crd deploy/kubernetes/crds`)."""
    generated = crd_documents()
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(generated)
    for name, text in generated.items():
        assert (CRD_DIR / name).read_text() == text, f"{name} drifted from the models"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                out += walk(sub, f"{path}.{name}")
        if "items" in node:
            out += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schemas_are_structural() -> None:
    """Every node has a type or is explicitly open; no $ref, anyOf, oneOf, const or title is left."""
    for crd in crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "const", "title", "default", "$defs"} & set(
                node
            ), path
            open_ = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
            assert "type" in node or open_, path
            if isinstance(node.get("exclusiveMinimum"), bool):
                assert "minimum" in node, path


def test_a_new_model_field_reaches_the_crd() -> None:
    """Fields of the models appear under their YAML names, with their bounds."""
    spec = structural_schema(Rollout)["properties"]["spec"]["properties"]
    assert spec["replicas"]["type"] == "integer"
    assert spec["progressDeadlineSeconds"]["exclusiveMinimum"] is True
    strategy = spec["strategy"]["properties"]
    assert {"rollingUpdate", "canary", "blueGreen"} <= set(strategy)
    surge = strategy["rollingUpdate"]["properties"]["maxSurge"]
    assert surge == {"x-kubernetes-int-or-string": True}


def test_the_generator_writes_the_files(tmp_path: Path) -> None:
    """`python -m gapless.spec.crd DIR` writes one file per CRD."""
    from gapless.spec.crd import main

    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crd_documents())
    assert main([]) == 2
