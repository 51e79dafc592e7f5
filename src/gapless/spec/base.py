"""Building blocks shared by the spec models: the strict base model, field-located errors, int-or-percent."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

__all__ = ["IntOrPercent", "SpecModel", "check_listen", "field_error", "parse_duration"]

_PERCENT_RE = re.compile(r"^(\d{1,6})%$")
_DURATION_RE = re.compile(r"^(\d{1,12}(?:\.\d{1,9})?)(ms|s|m|h)?$")
_MAX_DURATION = 315_360_000.0


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error raised by a model validator that belongs to one of the model's fields.

    Pydantic locates model-level errors at the model; the loader appends ``field`` to the path so the
    message names the exact field (``spec.strategy.rollingUpdate.maxSurge: ...``).
    """
    return PydanticCustomError("gapless_field", "{message}", {"field": field, "message": message})


class SpecModel(BaseModel):
    """Strict, frozen, camelCase in YAML: a typo is an error, never silently ignored."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=False,
        # Types as written: no bool for a number, no "3" for 3, no infinities or NaN.
        strict=True,
        allow_inf_nan=False,
    )


def _check_int_or_percent(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("must be an integer or a percentage such as '25%'")  # noqa: TRY004 -- pydantic reports only ValueError
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        if value > 1_000_000:
            raise ValueError("must be at most 1000000")
        return value
    if isinstance(value, str):
        m = _PERCENT_RE.match(value.strip())
        if m:
            return f"{int(m.group(1))}%"
        if value.strip().isdigit() and len(value.strip()) <= 7:
            return _check_int_or_percent(int(value.strip()))
    raise ValueError(f"must be an integer or a percentage such as '25%', not {value!r}")


IntOrPercent = Annotated[int | str, BeforeValidator(_check_int_or_percent)]
"""A count or a percentage of the desired replicas, as Kubernetes' IntOrString."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``30s``, ``10m``, ``1h``, ``500ms`` (Argo's pause durations)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 10m or 1h")  # noqa: TRY004 -- pydantic reports only ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value.strip())):
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
        seconds = float(m.group(1)) * unit
    else:
        raise ValueError(f"must be a duration such as 30s, 10m or 1h, not {value!r}")
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > _MAX_DURATION:
        raise ValueError("must be at most ten years")
    return seconds


def check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be 1-65535, not {port!r}")
    return value
