"""JSON request bodies parsed with limits, so bad input is a problem to report and never a crash.

``json.loads`` alone accepts what the rest of the program cannot handle: nesting deep enough to exhaust
the recursion limit (in the parser or in the validation after it), ``1e309`` (infinity), ``NaN``, and
integers of thousands of digits (Python refuses to convert them past 4300 digits, and SQLite stores
none past 64 bits). Each would surface later as a 500. ``parse_json`` refuses all of them up front with
a ``SpecError`` whose message names the problem, so every API answers them with a 4xx.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gapless.core.errors import Problem, SpecError

__all__ = ["MAX_DEPTH", "MAX_INT", "MIN_INT", "check_depth", "parse_json"]

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (the deepest real document is under 15)."""
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
"""Integers must fit SQLite's (and most languages') signed 64 bits."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class _NumberError(ValueError):
    pass


def check_depth(raw: bytes, limit: int = MAX_DEPTH) -> int:
    """The deepest nesting of ``raw`` (strings skipped); raises ``SpecError`` past ``limit``."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise SpecError("request", [Problem("", f"JSON nested deeper than {limit} levels")])
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def _int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 19:
        raise _NumberError(f"integer {text[:24]}{'...' if len(text) > 24 else ''} is out of range")
    value = int(text)
    if not MIN_INT <= value <= MAX_INT:
        raise _NumberError(f"integer {text} is out of range (signed 64 bits)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberError(f"number {text[:24]} is out of range (finite numbers only)")
    return value


def _constant(name: str) -> Any:
    raise _NumberError(f"{name} is not a number JSON allows")


def parse_json(raw: bytes, *, source: str = "request") -> Any:
    """Parse a request body; raises ``SpecError`` for invalid JSON, deep nesting or unusable numbers."""
    check_depth(raw)
    try:
        return json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _NumberError as e:
        raise SpecError(source, [Problem("", str(e))]) from e
    except json.JSONDecodeError as e:
        raise SpecError(source, [Problem("", f"invalid JSON: {e.msg} at position {e.pos}")]) from e
    except (UnicodeDecodeError, RecursionError) as e:
        raise SpecError(source, [Problem("", f"invalid JSON: {e}")]) from e
