"""``-o text|json|yaml``: the read verbs' data for programs, in the form kubectl users expect.

JSON and YAML carry the same document (YAML read back with ``yaml.safe_load`` equals the JSON), with
times in RFC 3339. A verb that streams (``--watch``, ``--follow``) writes one JSON document per line, or
YAML documents separated by ``---``. PyYAML is imported only when YAML is asked for: ``gapless status``
must start fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from gapless.cli.times import with_rfc3339_times

__all__ = ["FORMATS", "check_format", "dump", "write"]

FORMATS = ("text", "json", "yaml")


def check_format(value: str) -> str | None:
    """None when ``value`` is a format, else the message saying what is wrong."""
    if value in FORMATS:
        return None
    return f"--output must be text, json or yaml, not {value!r}"


def dump(data: Any, fmt: str, *, stream: bool = False) -> str:
    """``data`` (API JSON, epoch times) as ``fmt`` text, ending in a newline.

    ``stream``: one document of a series (JSON on one line; YAML starting with ``---``).
    """
    doc = with_rfc3339_times(data)
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False) + "\n" if stream else json.dumps(doc, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        text = yaml.safe_dump(doc, sort_keys=False, width=1 << 30)  # ASCII: PyYAML loses U+0085 otherwise
        return f"---\n{text}" if stream else text
    raise ValueError(check_format(fmt))


def write(data: Any, fmt: str, *, stream: bool = False) -> None:
    sys.stdout.write(dump(data, fmt, stream=stream))
    sys.stdout.flush()
