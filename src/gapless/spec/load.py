"""Load Rollouts and AnalysisTemplates from YAML, reporting every problem at once with its field path.

A file holds one document (``load_rollout``) or several separated by ``---`` (``load_documents``),
each a ``Rollout`` or an ``AnalysisTemplate`` by its ``kind``. Problems of a multi-document file are
prefixed with ``documents.N.`` (0-based, counting every document in the file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gapless.core.errors import Problem, SpecError
from gapless.spec.analysis import AnalysisTemplate
from gapless.spec.models import Rollout

__all__ = [
    "KINDS",
    "Documents",
    "load_documents",
    "load_rollout",
    "parse_documents",
    "parse_rollout",
    "problems_from_validation",
    "validate_rollout",
    "validate_template",
]

MAX_SPEC_BYTES = 1 << 20
KINDS = ("Rollout", "AnalysisTemplate")


@dataclass(frozen=True)
class Documents:
    """The valid documents of a file, by kind, in file order."""

    rollouts: list[Rollout] = field(default_factory=list)
    templates: list[AnalysisTemplate] = field(default_factory=list)


def _read_text(path: str | Path) -> str:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError(str(path), [Problem("", f"cannot read file: {e.strerror or e}")]) from e
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(str(path), [Problem("", f"file is larger than {MAX_SPEC_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(str(path), [Problem("", "file is not UTF-8 text")]) from e


def _yaml_problem(e: yaml.YAMLError) -> Problem:
    where = ""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        where = f" (line {mark.line + 1}, column {mark.column + 1})"
    problem = getattr(e, "problem", None) or str(e)
    return Problem("", f"invalid YAML{where}: {problem}")


def load_rollout(path: str | Path) -> Rollout:
    """Read and validate a Rollout file; raise ``SpecError`` naming every problem."""
    return parse_rollout(_read_text(path), source=str(path))


def parse_rollout(text: str, *, source: str = "<spec>") -> Rollout:
    """Validate YAML text as a Rollout."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(source, [_yaml_problem(e)]) from e
    return validate_rollout(data, source=source)


def load_documents(path: str | Path) -> Documents:
    """Read and validate a file of Rollouts and AnalysisTemplates; raise ``SpecError`` naming every problem."""
    return parse_documents(_read_text(path), source=str(path))


def parse_documents(text: str, source: str = "<spec>") -> Documents:
    """Validate YAML text of one or more ``---``-separated documents, dispatching on ``kind``.

    Empty documents (a trailing ``---``) are skipped. Every problem of every document is reported in one
    ``SpecError``; two documents of the same kind with the same name are a problem too.
    """
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise SpecError(source, [_yaml_problem(e)]) from e
    present = [(i, data) for i, data in enumerate(loaded) if data is not None]
    if not present:
        raise SpecError(source, [Problem("", "no documents: expected a Rollout or an AnalysisTemplate")])
    several = len(present) > 1
    problems: list[Problem] = []
    rollouts: list[tuple[int, Rollout]] = []
    templates: list[tuple[int, AnalysisTemplate]] = []
    for i, data in present:
        prefix = f"documents.{i}" if several else ""
        try:
            document = _validate_document(data)
        except _DocumentError as e:
            problems += [Problem(_join(prefix, p.path), p.message) for p in e.problems]
            continue
        if isinstance(document, Rollout):
            rollouts.append((i, document))
        else:
            templates.append((i, document))
    for kind, named in (("Rollout", rollouts), ("AnalysisTemplate", templates)):
        first: dict[str, int] = {}
        for i, document in named:
            if document.name in first:
                problems.append(
                    Problem(
                        _join(f"documents.{i}", "metadata.name"),
                        f"another {kind} in this file (document {first[document.name]}) "
                        f"is named '{document.name}'",
                    )
                )
            first.setdefault(document.name, i)
    if problems:
        raise SpecError(source, problems)
    return Documents(rollouts=[r for _, r in rollouts], templates=[t for _, t in templates])


class _DocumentError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


def _join(prefix: str, path: str) -> str:
    return ".".join(x for x in (prefix, path) if x)


def _validate_document(data: Any) -> Rollout | AnalysisTemplate:
    if not isinstance(data, dict):
        raise _DocumentError([Problem("", "expected a mapping with apiVersion, kind, metadata, spec")])
    kind = data.get("kind")
    model: type[Rollout] | type[AnalysisTemplate]
    if kind == "Rollout":
        model = Rollout
    elif kind == "AnalysisTemplate":
        model = AnalysisTemplate
    else:
        name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
        named = f" (metadata.name {name!r})" if isinstance(name, str) else ""
        what = "is required" if kind is None else f"is {kind!r}"
        raise _DocumentError([Problem("kind", f"{what}{named}; must be one of {', '.join(KINDS)}")])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _DocumentError(problems_from_validation(e)) from e


def validate_rollout(data: Any, *, source: str = "<spec>") -> Rollout:
    if not isinstance(data, dict):
        raise SpecError(source, [Problem("", "expected a mapping with apiVersion, kind, metadata, spec")])
    try:
        return Rollout.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, problems_from_validation(e)) from e


def validate_template(data: Any, *, source: str = "<spec>") -> AnalysisTemplate:
    """Validate parsed data as an AnalysisTemplate; raise ``SpecError`` naming every problem."""
    if not isinstance(data, dict):
        raise SpecError(source, [Problem("", "expected a mapping with apiVersion, kind, metadata, spec")])
    try:
        return AnalysisTemplate.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, problems_from_validation(e)) from e


_TYPE_TAGS = frozenset({"int", "str", "float", "bool", "dict", "list"})


def _is_internal_tag(part: str) -> bool:
    return part in _TYPE_TAGS or part.startswith("function-") or bool(re.match(r"^[a-z]+\[.*\]$", part))


def problems_from_validation(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for err in error.errors(include_url=False):
        loc = [str(x) for x in err["loc"]]
        # Drop pydantic's internal union/validator tags from the location.
        loc = [x for x in loc if not _is_internal_tag(x)]
        message = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "gapless_field":
            loc.append(str(ctx["field"]))
        elif err["type"] == "missing":
            message = "is required"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "literal_error":
            message = f"must be {ctx.get('expected', 'one of the allowed values')}"
        message = message.removeprefix("Value error, ")
        problems.append(Problem(".".join(loc), message))
    return problems
