"""The runtime commands that take one rollout's HAProxy from what it holds to what is wanted (pure).

``plan`` compares HAProxy's servers (``show stat``, per backend) with the wanted servers and weights and
returns the commands in the order they must be sent:

1. ``raises``: servers added (``add server``, ``enable server``; dynamic servers start in maintenance),
   weights raised and drained servers made ready again. Capacity comes first.
2. (the caller commits the map of sticky ranges and routes here, so a slot never points at a revision
   whose servers are not there yet)
3. ``lowers``: weights lowered. Only after every raise: a blue-green switch sets blue to 0 once green
   holds its weight, so no request finds every weight at 0 (HAProxy answers such a request 503).
4. ``drains``: servers that left are drained (requests in flight finish); a drained server without a
   session left is put in maintenance and deleted.

The rule the tests check: replaying the commands in this order on the servers' weights, a backend that
has a positive weight before and after the change has one at every step in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gapless.haproxy.runtime import ServerStat
from gapless.router.config import Backend

__all__ = ["Plan", "plan"]

DYNAMIC_SERVER_POOL = "pool-max-conn -1 pool-purge-delay 5s"
"""Idle upstream connections kept for reuse, as a server in the configuration has by default. HAProxy
2.6 gives a server added by ``add server`` neither, so without these it opens a new connection to the
instance for every request (measured: one ``connect`` per request, 40-50 % of the requests per second)."""


@dataclass(frozen=True)
class Plan:
    """Commands in sending order, and the servers the drains delete (with their last counters)."""

    raises: list[str]
    lowers: list[str]
    drains: list[str]
    deleted: list[tuple[str, ServerStat]]

    @property
    def commands(self) -> list[str]:
        return self.raises + self.lowers + self.drains

    def __bool__(self) -> bool:
        return bool(self.raises or self.lowers or self.drains)


def plan(
    observed: Mapping[str, Mapping[str, ServerStat]],
    targets: Mapping[str, Mapping[str, int]],
    addresses: Mapping[str, Backend],
    applied: Mapping[str, int],
    draining: set[str],
) -> Plan:
    """Commands taking ``observed`` (backend -> server -> stat) to ``targets`` (backend -> server -> weight).

    ``addresses`` maps a server name to its instance; ``applied`` is the weight last sent per
    ``backend/server`` (empty after a control-plane restart: HAProxy's own weight is compared then);
    ``draining`` the ``backend/server`` keys already told to drain.
    """
    raises: list[str] = []
    lowers: list[str] = []
    drains: list[str] = []
    deleted: list[tuple[str, ServerStat]] = []
    for backend, servers in observed.items():
        target = targets.get(backend, {})
        for name, w in target.items():
            key = f"{backend}/{name}"
            if name not in servers:
                b = addresses[name]
                raises += [
                    f"add server {key} {b.host}:{b.port} weight {w} {DYNAMIC_SERVER_POOL}",
                    f"enable server {key}",
                ]
            elif applied.get(key) != w or key in draining:
                change = [f"set server {key} weight {w}", f"set server {key} state ready"]
                if key in draining or w >= applied.get(key, servers[name].weight):
                    raises += change
                else:
                    lowers += change
        for name, stat in servers.items():
            key = f"{backend}/{name}"
            if name in target:
                continue
            if key not in draining:
                drains.append(f"set server {key} state drain")
            elif stat.current == 0:
                drains += [f"set server {key} state maint", f"del server {key}"]
                deleted.append((key, stat))
    return Plan(raises, lowers, drains, deleted)
