"""Reading migration files: one YAML document per file, ordered by file name in a directory.

Every problem is reported at once with its field path, as for rollout specs. A file without ``name``
takes its file name without the extension, so ``migrations/0002_add_email.yaml`` is version
``0002_add_email``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gapless.core.errors import Problem, SpecError
from gapless.migrations.model import Migration
from gapless.spec.load import problems_from_validation

__all__ = [
    "MIGRATION_SUFFIXES",
    "load_migration",
    "load_migration_dir",
    "migration_json_schema",
    "parse_migration",
]

MAX_FILE_BYTES = 1 << 20
MIGRATION_SUFFIXES = (".yaml", ".yml", ".json")


def load_migration(path: str | Path) -> Migration:
    """Read and validate one migration file; raise ``SpecError`` naming every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError(str(path), [Problem("", f"cannot read file: {e.strerror or e}")]) from e
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(str(path), [Problem("", f"file is larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(str(path), [Problem("", "file is not UTF-8 text")]) from e
    return parse_migration(text, source=str(path), default_name=p.stem)


def load_migration_dir(directory: str | Path) -> list[Migration]:
    """Every migration file of a directory, in file-name order; names must be distinct."""
    d = Path(directory)
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in MIGRATION_SUFFIXES)
    migrations = [load_migration(p) for p in files]
    seen: dict[str, Path] = {}
    for path, m in zip(files, migrations, strict=True):
        if m.name in seen:
            raise SpecError(
                str(path), [Problem("name", f"{m.name!r} is also the name of {seen[m.name].name}")]
            )
        seen[m.name] = path
    return migrations


def parse_migration(text: str, *, source: str = "<migration>", default_name: str | None = None) -> Migration:
    """Validate YAML (or JSON) text as a migration."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise SpecError(
            source, [Problem("", f"invalid YAML{where}: {getattr(e, 'problem', None) or e}")]
        ) from e
    return validate_migration(data, source=source, default_name=default_name)


def validate_migration(
    data: Any, *, source: str = "<migration>", default_name: str | None = None
) -> Migration:
    """Validate parsed data as a migration; raise ``SpecError`` naming every problem."""
    if not isinstance(data, dict):
        raise SpecError(source, [Problem("", "expected a mapping with name and operations")])
    if "name" not in data and default_name is not None:
        data = {"name": default_name, **data}
    try:
        return Migration.model_validate(data)
    except ValidationError as e:
        problems = [Problem(p.path.rstrip("."), p.message) for p in problems_from_validation(e)]
        raise SpecError(source, problems) from e


def migration_json_schema() -> str:
    """The published JSON schema of migration files, as the text kept in the repository."""
    schema = Migration.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://gapless.dev/schemas/migration.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
