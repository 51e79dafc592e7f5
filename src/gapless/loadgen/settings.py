"""Validated settings of one load run, and the error every bad input raises.

Every bound is checked here, before a target is resolved or a socket opened, so a typo such as
``--rps 1e9`` or a zero duration is refused with a message that names the option instead of turning
into a run that exhausts the machine. The error carries the option's name so the CLI can point at the
flag and exit with status 2 while library callers still get an ordinary ``ValueError``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gapless.core.errors import GaplessError

__all__ = [
    "MAX_DURATION",
    "MAX_IN_FLIGHT",
    "MAX_RPS",
    "MAX_TIMEOUT",
    "METHODS",
    "LoadInputError",
    "LoadSettings",
]

MAX_RPS = 100_000.0
"""The highest target rate accepted; far above what one core can send, so it only stops typos."""

MAX_DURATION = 3600.0
"""The longest run accepted, in seconds."""

MAX_TIMEOUT = 600.0
"""The longest per-request timeout accepted, in seconds."""

MAX_IN_FLIGHT = 10_000
"""The highest cap on outstanding requests; each one holds a socket, so this bounds file descriptors."""

METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"})
"""Methods the load generator sends; all without a request body."""

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class LoadInputError(GaplessError, ValueError):
    """An input of a load run is invalid; ``option`` names it (``url``, ``rps``, ``duration``, ...)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}")


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """The numeric and protocol settings of a run, checked by :meth:`create`."""

    rps: float
    duration: float
    timeout: float
    version_header: str
    method: str
    max_in_flight: int

    @property
    def planned_requests(self) -> int:
        """How many requests the schedule holds: one at every ``i / rps`` with ``i / rps < duration``."""
        # Rounding first keeps 200 rps x 3 s at 600 even when the product is 600.0000000001.
        return max(1, math.ceil(round(self.rps * self.duration, 6)))

    @classmethod
    def create(
        cls,
        *,
        rps: float,
        duration: float,
        timeout: float,
        version_header: str,
        method: str,
        max_in_flight: int,
    ) -> LoadSettings:
        """Check every bound and return the settings, or raise :class:`LoadInputError` naming the option."""
        _check_range("rps", rps, MAX_RPS)
        _check_range("duration", duration, MAX_DURATION)
        _check_range("timeout", timeout, MAX_TIMEOUT)
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise LoadInputError("max_in_flight", f"must be an integer, got {max_in_flight!r}")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise LoadInputError(
                "max_in_flight", f"must be between 1 and {MAX_IN_FLIGHT}, got {max_in_flight}"
            )
        if not _TOKEN.match(version_header):
            raise LoadInputError("version_header", f"must be an HTTP header name, got {version_header!r}")
        upper = method.upper()
        if upper not in METHODS:
            raise LoadInputError("method", f"must be one of {', '.join(sorted(METHODS))}, got {method!r}")
        return cls(
            rps=float(rps),
            duration=float(duration),
            timeout=float(timeout),
            version_header=version_header,
            method=upper,
            max_in_flight=max_in_flight,
        )


def _check_range(option: str, value: float, maximum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LoadInputError(option, f"must be a number, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= maximum:
        raise LoadInputError(option, f"must be greater than 0 and at most {maximum:g}, got {value!r}")
