"""Load a Rollout from YAML, reporting every problem at once with its field path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gapless.core.errors import Problem, SpecError
from gapless.spec.models import Rollout

__all__ = ["load_rollout", "parse_rollout", "problems_from_validation", "validate_rollout"]

MAX_SPEC_BYTES = 1 << 20


def load_rollout(path: str | Path) -> Rollout:
    """Read and validate a Rollout file; raise ``SpecError`` naming every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError(str(path), [Problem("", f"cannot read file: {e.strerror or e}")]) from e
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(str(path), [Problem("", f"file is larger than {MAX_SPEC_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(str(path), [Problem("", "file is not UTF-8 text")]) from e
    return parse_rollout(text, source=str(path))


def parse_rollout(text: str, *, source: str = "<spec>") -> Rollout:
    """Validate YAML text as a Rollout."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(source, [Problem("", f"invalid YAML{where}: {problem}")]) from e
    return validate_rollout(data, source=source)


def validate_rollout(data: Any, *, source: str = "<spec>") -> Rollout:
    if not isinstance(data, dict):
        raise SpecError(source, [Problem("", "expected a mapping with apiVersion, kind, metadata, spec")])
    try:
        return Rollout.model_validate(data)
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
