"""The router's configuration: the contract between the control plane and the data plane.

The control plane sends a whole ``RouterConfig`` each time (level-triggered, never a diff). ``version``
only grows, so a late, older push is refused instead of undoing a newer one. Only backends listed here
receive new requests; a backend that disappears from the list is drained: requests already in flight on
it finish, and its idle upstream connections are closed.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gapless.core.regex import MAX_PATTERN_LENGTH, Regex, RegexError

__all__ = ["Backend", "Limits", "Route", "RouteMatch", "RouterConfig", "Stickiness", "StringMatch"]

MAX_REGEX = MAX_PATTERN_LENGTH


class Backend(BaseModel):
    """One ready instance that may receive traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    revision: str = Field(min_length=1)


class StringMatch(BaseModel):
    """Exactly one of: the whole value, a prefix, or a regular expression searched in the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = Field(default=None, max_length=MAX_REGEX)

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        if sum(x is not None for x in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("needs exactly one of exact, prefix, regex")
        if self.regex is not None:
            try:
                Regex(self.regex)  # linear time: no pattern can stall the event loop
            except RegexError as e:
                raise ValueError(f"regex: {e}") from e
        return self


class RouteMatch(BaseModel):
    """A condition on a request header or a cookie (names of headers compare case-insensitively)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    header: str | None = Field(default=None, min_length=1)
    cookie: str | None = Field(default=None, min_length=1)
    value: StringMatch

    @model_validator(mode="after")
    def _one(self) -> RouteMatch:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("a match needs exactly one of header, cookie")
        return self


class Route(BaseModel):
    """Requests matching every condition go to ``revision`` whatever the weights (if it has backends)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: tuple[RouteMatch, ...] = Field(min_length=1)
    revision: str = Field(min_length=1)


class Stickiness(BaseModel):
    """Split by a hash of this header or cookie, so a user keeps its revision while weights only grow.

    The key is hashed with murmur3 (x86, 32 bit, seed 0) into 10,000 buckets; revisions own consecutive
    bucket ranges in the order of ``weights``. Requests without the key are split by weight as usual.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    header: str | None = Field(default=None, min_length=1)
    cookie: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Stickiness:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("stickiness needs exactly one of header, cookie")
        return self


def _strict_number(value: Any) -> Any:
    """Numbers only: ``true`` is no count and ``inf`` no duration."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")  # noqa: TRY004 -- pydantic reports only ValueError
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def _strict_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")  # noqa: TRY004 -- pydantic reports only ValueError
    return value


Seconds = Annotated[float, BeforeValidator(_strict_number), Field(gt=0, le=86400)]
Count = Annotated[int, BeforeValidator(_strict_int), Field(gt=0)]


class Limits(BaseModel):
    """How the router defends itself against clients and backends (``spec.router`` of a Rollout).

    ``header_timeout``: seconds a client has to start a request head after connecting, and to finish
    one once started; ``idle_timeout``: seconds a kept-alive client connection may wait for its next request;
    ``max_connections``: client connections at once (past it the connection that has sent no complete
    head for the longest time is closed, or the new one refused when all are busy); ``max_header_bytes``:
    bytes of a request head; ``backend_timeout``: seconds a backend has to start its response;
    ``eject_after`` consecutive timeouts or connection failures take a backend out of the balancer for
    ``ejection`` seconds (doubling with each ejection in a row).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    header_timeout: Seconds = 10.0
    idle_timeout: Seconds = 60.0
    max_connections: Count = 10_000
    max_header_bytes: Annotated[int, BeforeValidator(_strict_int), Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    backend_timeout: Seconds = 30.0
    eject_after: Count = 3
    ejection: Seconds = 10.0


class RouterConfig(BaseModel):
    """Everything the router needs to route: backends and how traffic splits between revisions.

    ``weights`` maps revision -> relative weight. When it is ``None`` every backend gets an equal share
    whatever its revision (a rolling update, like a Kubernetes Service). When it is set, a revision is
    picked by weight first, then a backend of that revision round-robin; revisions with weight 0 or
    without ready backends get no traffic.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=0)
    backends: tuple[Backend, ...] = ()
    weights: dict[str, int] | None = None
    routes: tuple[Route, ...] = ()
    stickiness: Stickiness | None = None
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _check(self) -> RouterConfig:
        ids = [b.id for b in self.backends]
        if len(ids) != len(set(ids)):
            raise ValueError("backends: ids must be unique")
        if self.weights is not None:
            for rev, w in self.weights.items():
                if w < 0:
                    raise ValueError(f"weights.{rev}: must be >= 0")
        return self
