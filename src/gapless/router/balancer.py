"""Choosing a backend for a request from the current ``RouterConfig``.

A ``Table`` is built once per config push and swapped in with one reference assignment, so requests
never see half a config and routing takes no lock. Between revisions it uses smooth weighted
round-robin (the nginx algorithm): exact proportions over every cycle of ``sum(weights)`` picks and
evenly interleaved, with no randomness; within a revision it is plain round-robin. With ``weights``
None every backend takes its turn regardless of revision.
"""

from __future__ import annotations

from gapless.router.config import RouterConfig
from gapless.router.pool import BackendPool

__all__ = ["Table"]


class Table:
    """The routing table of one config version."""

    __slots__ = ("_current", "_groups", "_rr", "_total", "_weights", "backends", "config")

    def __init__(self, config: RouterConfig, pools: dict[str, BackendPool]) -> None:
        self.config = config
        self.backends: tuple[BackendPool, ...] = tuple(pools[b.id] for b in config.backends)
        groups: list[tuple[BackendPool, ...]] = []
        weights: list[int] = []
        if config.weights is None:
            if self.backends:
                groups.append(self.backends)
                weights.append(1)
        else:
            for rev, weight in config.weights.items():
                members = tuple(p for p in self.backends if p.rev.name == rev)
                if weight > 0 and members:
                    groups.append(members)
                    weights.append(weight)
        self._groups = groups
        self._weights = weights
        self._total = sum(weights)
        self._current = [0] * len(groups)
        self._rr = [0] * len(groups)

    def pick(self) -> BackendPool | None:
        """The next backend to send a request to, or None when no revision may receive traffic."""
        groups = self._groups
        n = len(groups)
        if n == 1:
            g = 0
        elif n == 0:
            return None
        else:
            current = self._current
            weights = self._weights
            g = 0
            best = current[0] = current[0] + weights[0]
            for i in range(1, n):
                c = current[i] = current[i] + weights[i]
                if c > best:
                    best = c
                    g = i
            current[g] -= self._total
        members = groups[g]
        i = self._rr[g]
        self._rr[g] = i + 1
        return members[i % len(members)]

    def pick_other(self, tried: set[BackendPool]) -> BackendPool | None:
        """A backend not in ``tried`` for a retry: the next pick if it qualifies, else any other one."""
        for _ in range(len(self.backends)):
            pool = self.pick()
            if pool is None:
                return None
            if pool not in tried:
                return pool
        for pool in self.backends:
            if pool not in tried and self._routable(pool):
                return pool
        return None

    def _routable(self, pool: BackendPool) -> bool:
        return any(pool in g for g in self._groups)
