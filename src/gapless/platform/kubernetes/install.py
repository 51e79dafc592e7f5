"""The install manifests of the operator: what ``gapless k8s manifests`` prints and ``deploy/kubernetes/`` holds.

One source of truth, shipped inside the package so that an installed gapless can print them without the
repository: the CRDs are generated from the pydantic models (:mod:`gapless.spec.crd`), the rest (the
namespace, the RBAC, the operator Deployment and the kustomization) are the YAML files in
``install_yaml/`` beside this module. ``python -m gapless.platform.kubernetes.install deploy/kubernetes``
writes the whole directory, and a test fails when the committed copy drifts from what this module gives.

Printed without options, the documents are the files' own text (their comments explain each RBAC verb);
``namespace`` and ``image`` rewrite the parsed documents instead, since a text substitution could not
tell the operator's namespace from any other string.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from gapless.spec.crd import crd_documents

__all__ = ["DEFAULT_IMAGE", "DEFAULT_NAMESPACE", "RESOURCES", "documents", "files", "manifests"]

DEFAULT_NAMESPACE = "gapless-system"
"""The operator's namespace in the shipped files."""
DEFAULT_IMAGE = "gapless-operator:0.1.0"
"""The image the shipped Deployment names: built from ``deploy/docker/Dockerfile`` (none is published)."""
RESOURCES = (
    "crds/rollouts.gapless.dev.yaml",
    "crds/analysistemplates.gapless.dev.yaml",
    "operator/namespace.yaml",
    "operator/rbac.yaml",
    "operator/deployment.yaml",
)
"""The kustomization's resources, in the order they are applied (CRDs and namespace first)."""
_HERE = Path(__file__).parent / "install_yaml"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_IMAGE = re.compile(r"[^\s]+")


def files() -> dict[str, str]:
    """Relative path -> text of every file of ``deploy/kubernetes/`` (the kustomization included)."""
    out = {f"crds/{name}": text for name, text in crd_documents().items()}
    for path in RESOURCES:
        if path.startswith("operator/"):
            out[path] = (_HERE / path.removeprefix("operator/")).read_text()
    out["kustomization.yaml"] = (_HERE / "kustomization.yaml").read_text()
    return out


def documents() -> list[dict[str, Any]]:
    """The Kubernetes objects of the install, in apply order."""
    texts = files()
    return [doc for path in RESOURCES for doc in yaml.safe_load_all(texts[path]) if doc]


def manifests(namespace: str = DEFAULT_NAMESPACE, image: str = DEFAULT_IMAGE) -> str:
    """One multi-document YAML of the install, for ``kubectl apply -f -``.

    Raises ``ValueError`` naming ``--namespace`` or ``--image`` when one is not a valid value.
    """
    if not _NAME.fullmatch(namespace):
        raise ValueError(
            f"--namespace: {namespace!r} is not a namespace name "
            "(lower case letters, digits and '-', starting and ending with a letter or digit, at most 63)"
        )
    if not _IMAGE.fullmatch(image):
        raise ValueError(f"--image: {image!r} is not an image reference")
    texts = files()
    if (namespace, image) == (DEFAULT_NAMESPACE, DEFAULT_IMAGE):
        return "---\n".join(_ending(texts[path]) for path in RESOURCES)
    docs = [_rewrite(doc, namespace, image) for doc in documents()]
    header = f"# gapless {_version()} install manifests: operator namespace {namespace}, image {image}\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False, width=100)


def _ending(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _version() -> str:
    from gapless import __version__

    return __version__


def _rewrite(doc: dict[str, Any], namespace: str, image: str) -> dict[str, Any]:
    """``doc`` with the operator's namespace and image replaced."""
    meta = doc.setdefault("metadata", {})
    if doc.get("kind") == "Namespace":
        meta["name"] = namespace
    elif meta.get("namespace") == DEFAULT_NAMESPACE:
        meta["namespace"] = namespace
    for subject in doc.get("subjects") or []:
        if subject.get("namespace") == DEFAULT_NAMESPACE:
            subject["namespace"] = namespace
    if doc.get("kind") == "Deployment":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container.get("image") == DEFAULT_IMAGE:
                container["image"] = image
    return doc


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gapless.platform.kubernetes.install DIRECTORY", file=sys.stderr)
        return 2
    target = Path(argv[0])
    for path, text in files().items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
