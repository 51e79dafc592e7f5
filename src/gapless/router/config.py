"""The router's configuration: the contract between the control plane and the data plane.

The control plane sends a whole ``RouterConfig`` each time (level-triggered, never a diff). ``version``
only grows, so a late, older push is refused instead of undoing a newer one. Only backends listed here
receive new requests; a backend that disappears from the list is drained: requests already in flight on
it finish, and its idle upstream connections are closed.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Backend", "Route", "RouteMatch", "RouterConfig", "Stickiness", "StringMatch"]

MAX_REGEX = 512


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
                re.compile(self.regex)
            except re.error as e:
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
