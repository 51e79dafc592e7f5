"""What one rollout's HAProxy should hold, as saved in ``routers/NAME.haproxy.json`` (pure).

The control plane writes it atomically before any change is sent, and generates HAProxy's configuration
from it whenever HAProxy starts, so a restarted HAProxy serves the current servers, weights, routes and
sticky ranges at once. The helpers derive what HAProxy must hold from it: the weight split, the slot
backends' members, the map's entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gapless.haproxy.config import backend_name, server_name
from gapless.haproxy.rules import (
    SLOTS,
    FrontRules,
    assign_slots,
    bucket_ranges,
    map_entries,
    slot_backend,
)
from gapless.haproxy.tls import TlsFiles
from gapless.haproxy.weights import Split, split_weights
from gapless.router.config import Backend, Limits, Route, RouteMatch, Stickiness

__all__ = ["Wanted", "applied_of", "map_text", "slots_for"]


@dataclass(frozen=True)
class Wanted:
    """What one rollout's HAProxy should hold (saved as ``routers/NAME.haproxy.json``)."""

    listen: str
    binary: str | None = None
    limits: Limits = field(default_factory=Limits)
    backends: tuple[Backend, ...] = ()
    weights: dict[str, int] | None = None
    version: int = 0
    tls: TlsFiles | None = None
    rules: FrontRules = field(default_factory=FrontRules)
    """What the frontend looks at (the configuration's part; a change reloads)."""
    routes: tuple[Route, ...] = ()
    """Header routes in force."""
    slots: dict[str, int] = field(default_factory=dict)
    """Revision -> slot backend (with ``rules``)."""
    log_sampling: int = 1
    """The request log keeps one request in this many (the configuration's part; a change reloads)."""

    def slot_servers(self, rollout: str) -> dict[str, dict[str, int]]:
        """Slot backend -> its servers (weight 1 each: plain round-robin within a revision)."""
        if not self.rules:
            return {}
        out: dict[str, dict[str, int]] = {slot_backend(backend_name(rollout), s): {} for s in range(SLOTS)}
        for b in self.backends:
            slot = self.slots.get(b.revision)
            if slot is not None:
                out[slot_backend(backend_name(rollout), slot)][server_name(b)] = 1
        return out

    def map_entries(self) -> dict[str, int]:
        """The map's contents: bucket ranges per slot and each route's slot."""
        serving = {b.revision for b in self.backends}
        ranges = bucket_ranges(self.weights or {}, serving)
        active = {
            self.rules.routes.index(r.match): r.revision for r in self.routes if r.match in self.rules.routes
        }
        return map_entries(self.rules, self.slots, ranges, active) if self.rules else {}

    def split(self) -> Split:
        by_revision: dict[str, list[str]] = {}
        for b in self.backends:
            by_revision.setdefault(b.revision, []).append(server_name(b))
        return split_weights(by_revision, self.weights)

    def servers(self) -> dict[str, tuple[Backend, int]]:
        weights = self.split().weights
        return {server_name(b): (b, weights[server_name(b)]) for b in self.backends}

    def to_json(self) -> str:
        return json.dumps(
            {
                "listen": self.listen,
                "binary": self.binary,
                "limits": self.limits.model_dump(mode="json"),
                "backends": [b.model_dump(mode="json") for b in self.backends],
                "weights": self.weights,
                "version": self.version,
                "tls": None if self.tls is None else [self.tls.cert_file, self.tls.key_file],
                "stickiness": None
                if self.rules.stickiness is None
                else self.rules.stickiness.model_dump(mode="json"),
                "rule_routes": [[m.model_dump(mode="json") for m in r] for r in self.rules.routes],
                "routes": [r.model_dump(mode="json") for r in self.routes],
                "slots": self.slots,
                "log_sampling": self.log_sampling,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Wanted:
        doc = json.loads(text)
        return cls(
            listen=str(doc["listen"]),
            binary=doc.get("binary"),
            limits=Limits(**doc.get("limits") or {}),
            backends=tuple(Backend(**b) for b in doc.get("backends") or ()),
            weights=None
            if doc.get("weights") is None
            else {str(k): int(v) for k, v in doc["weights"].items()},
            version=int(doc.get("version") or 0),
            tls=None if not doc.get("tls") else TlsFiles(str(doc["tls"][0]), str(doc["tls"][1])),
            rules=FrontRules(
                None if doc.get("stickiness") is None else Stickiness(**doc["stickiness"]),
                tuple(tuple(RouteMatch(**m) for m in r) for r in doc.get("rule_routes") or ()),
            ),
            routes=tuple(Route(**r) for r in doc.get("routes") or ()),
            slots={str(k): int(v) for k, v in (doc.get("slots") or {}).items()},
            log_sampling=int(doc.get("log_sampling") or 1),
        )


def slots_for(wanted: Wanted) -> dict[str, int]:
    """Slot backends for the revisions with servers (kept while they have any); none without rules."""
    if not wanted.rules:
        return {}
    order = list((wanted.weights or {}).keys())
    revisions = sorted(
        {b.revision for b in wanted.backends},
        key=lambda r: (r not in order, order.index(r) if r in order else 0, r),
    )
    return assign_slots(wanted.slots, revisions)


def applied_of(rollout: str, wanted: Wanted) -> dict[str, int]:
    """``backend/server`` -> weight for every server of a configuration HAProxy just read."""
    be = backend_name(rollout)
    out = {f"{be}/{n}": w for n, (_, w) in wanted.servers().items()}
    for backend, servers in wanted.slot_servers(rollout).items():
        out |= {f"{backend}/{n}": w for n, w in servers.items()}
    return out


def map_text(entries: dict[str, int]) -> str:
    """A map file: one ``key value`` per line."""
    return "".join(f"{k} {v}\n" for k, v in entries.items())
