"""The router's configuration: the contract between the control plane and the data plane.

The control plane sends a whole ``RouterConfig`` each time (level-triggered, never a diff). ``version``
only grows, so a late, older push is refused instead of undoing a newer one. Only backends listed here
receive new requests; a backend that disappears from the list is drained: requests already in flight on
it finish, and its idle upstream connections are closed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Backend", "RouterConfig"]


class Backend(BaseModel):
    """One ready instance that may receive traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    revision: str = Field(min_length=1)


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
