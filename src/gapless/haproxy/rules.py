"""Header routes and sticky splits on HAProxy without a reload per change (pure).

The built-in router sends a request matching a header route to the route's revision, and a request
carrying the sticky header or cookie to the revision owning its hash bucket (revisions own consecutive
bucket ranges, in the order of the weights, sized by weight; so a growing canary listed first only
gains keys). Other requests are split by weight. HAProxy does the same with fixed parts and a map:

- **Slot backends.** Besides the rollout's weighted backend, the configuration has ``SLOTS`` backends
  ``<rollout>:slot<i>``; each revision in traffic owns one slot (kept while it has servers) and its
  servers are in that backend too (plain round-robin, as the built-in router does within a revision).
  A new revision therefore needs no new backend, and backends cannot be added at run time in 2.6.
- **Rules from the spec.** The sticky key and every ``setHeaderRoute`` of the spec become frontend
  rules (``req.fhdr(NAME,1)`` / ``req.cook(NAME)`` with ``-m str``/``-m beg``/``-m reg``) when HAProxy
  starts, so a step that turns a route on changes no configuration.
- **A map holds what changes.** ``lo<i>``/``hi<i>`` (slot ``i`` owns buckets ``lo <= b < hi``) and
  ``route<j>`` (the slot of route ``j``'s revision plus one; 0 when off). Changes are made atomically
  through the runtime API (``prepare map``, ``add map @VERSION``, ``commit map``), so a request never
  sees half of a change.

The bucket is ``crc32(key) mod 10000``: HAProxy has no murmur3 converter, so the buckets are the
built-in router's in meaning (same count, same ranges for the same weights) but a given key may fall in
another bucket than with the built-in router. Routes are checked before the sticky key, as there.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gapless.router.config import RouteMatch, Stickiness, StringMatch

__all__ = [
    "BUCKETS",
    "SLOTS",
    "FrontRules",
    "RuleError",
    "assign_slots",
    "bucket_of",
    "bucket_ranges",
    "frontend_lines",
    "map_entries",
    "slot_backend",
]

BUCKETS = 10_000
"""Sticky buckets, as in the built-in router."""

SLOTS = 4
"""Revisions that can hold a route or sticky keys at once (a canary has two; a third drains)."""

_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 token)."""
_COOKIE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class RuleError(ValueError):
    """A route or sticky key HAProxy's configuration cannot carry as written."""


@dataclass(frozen=True)
class FrontRules:
    """What the frontend looks at: the sticky key, and the match lists of the spec's header routes."""

    stickiness: Stickiness | None = None
    routes: tuple[tuple[RouteMatch, ...], ...] = ()

    def __bool__(self) -> bool:
        return self.stickiness is not None or bool(self.routes)

    def with_routes(self, more: Sequence[tuple[RouteMatch, ...]]) -> FrontRules:
        """These rules plus any of ``more`` not already present (in order)."""
        routes = list(self.routes)
        for r in more:
            if r not in routes:
                routes.append(r)
        return FrontRules(self.stickiness, tuple(routes))


def slot_backend(rollout_backend: str, slot: int) -> str:
    """The name of slot ``slot``'s backend."""
    return f"{rollout_backend}:slot{slot}"


def bucket_of(key: bytes) -> int:
    """The bucket HAProxy computes for a sticky key: ``crc32`` (no avalanche) mod ``BUCKETS``."""
    return zlib.crc32(key) % BUCKETS


def bucket_ranges(weights: Mapping[str, int], serving: set[str]) -> dict[str, tuple[int, int]]:
    """Buckets ``[lo, hi)`` per revision: consecutive, in the order of ``weights``, sized by weight.

    Only revisions with weight > 0 and servers (``serving``) own buckets, as in the built-in router;
    together they own all ``BUCKETS`` (none when no revision qualifies).
    """
    live = [(r, w) for r, w in weights.items() if w > 0 and r in serving]
    total = sum(w for _, w in live)
    out: dict[str, tuple[int, int]] = {}
    cumulative, lo = 0, 0
    for r, w in live:
        cumulative += w
        hi = BUCKETS * cumulative // total
        out[r] = (lo, hi)
        lo = hi
    return out


def assign_slots(previous: Mapping[str, int], revisions: Sequence[str]) -> dict[str, int]:
    """A slot per revision: kept from ``previous`` when still in ``revisions``, else the lowest free one.

    Revisions beyond ``SLOTS`` get none (they are then reached by weight only).
    """
    out: dict[str, int] = {}
    for r, s in previous.items():
        if r in revisions and 0 <= s < SLOTS and s not in out.values():  # a slot held twice: first wins
            out[r] = s
    free = [s for s in range(SLOTS) if s not in out.values()]
    for r in revisions:
        if r not in out and free:
            out[r] = free.pop(0)
    return out


def map_entries(
    rules: FrontRules,
    slots: Mapping[str, int],
    ranges: Mapping[str, tuple[int, int]],
    active_routes: Mapping[int, str],
) -> dict[str, int]:
    """The map's every key and value: bucket bounds per slot, and the slot (+1, 0 = off) of each route."""
    out: dict[str, int] = {}
    by_slot = {s: r for r, s in slots.items()}
    for s in range(SLOTS):
        lo, hi = ranges.get(by_slot.get(s, ""), (0, 0)) if rules.stickiness is not None else (0, 0)
        out[f"lo{s}"] = lo
        out[f"hi{s}"] = hi
    for j in range(len(rules.routes)):
        rev = active_routes.get(j)
        out[f"route{j}"] = slots[rev] + 1 if rev is not None and rev in slots else 0
    return out


def _quoted(value: str, where: str) -> str:
    """``value`` as one word of HAProxy's configuration: single-quoted, so nothing in it is interpreted."""
    if "'" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise RuleError(f"{where}: {value!r} holds a quote or a control character HAProxy cannot carry")
    return f"'{value}'"


def _fetch(m: RouteMatch | Stickiness, where: str) -> str:
    if m.header is not None:
        if not _HEADER.fullmatch(m.header):
            raise RuleError(f"{where}: {m.header!r} is not a header name")
        return f"req.fhdr({m.header},1)"
    cookie = m.cookie or ""
    if not _COOKIE.fullmatch(cookie):
        raise RuleError(f"{where}: {cookie!r} is not a cookie name HAProxy can look up")
    return f"req.cook({cookie})"


def _test(value: StringMatch, where: str) -> str:
    if value.exact is not None:
        return f"-m str {_quoted(value.exact, where)}" if value.exact else "-m len 0"
    if value.prefix is not None:
        return f"-m beg {_quoted(value.prefix, where)}" if value.prefix else "-m found"
    return f"-m reg {_quoted(value.regex or '', where)}"


def frontend_lines(rules: FrontRules, map_file: str, rollout_backend: str) -> list[str]:
    """The frontend's rules: the sticky bucket's slot, then routes (later wins), then the slot backend."""
    if not rules:
        return []
    if not map_file.startswith("/") or any(c.isspace() or c in "'\"\\#" for c in map_file):
        raise RuleError(f"map file path {map_file!r} is not usable in HAProxy's configuration")
    lookup = f"map_str_int({map_file},0)"
    lines: list[str] = []
    if rules.stickiness is not None:
        key = _fetch(rules.stickiness, "stickiness")
        lines.append(
            f"    http-request set-var(txn.gl_b) {key},crc32,mod({BUCKETS}) if {{ {key} -m len gt 0 }}"
        )
        for s in range(SLOTS):
            lines += [
                f"    http-request set-var(txn.gl_lo) str(lo{s}),{lookup} if {{ var(txn.gl_b) -m found }}",
                f"    http-request set-var(txn.gl_hi) str(hi{s}),{lookup} if {{ var(txn.gl_b) -m found }}",
                f"    http-request set-var(txn.gl_s) int({s}) if {{ var(txn.gl_b) -m found }}"
                " { var(txn.gl_b),sub(txn.gl_lo) -m int ge 0 } { var(txn.gl_b),sub(txn.gl_hi) -m int lt 0 }",
            ]
    for j, matches in enumerate(rules.routes):
        conditions = " ".join(
            f"{{ {_fetch(m, f'route {j}')} {_test(m.value, f'route {j}')} }}" for m in matches
        )
        lines.append(
            f"    http-request set-var(txn.gl_s) str(route{j}),{lookup},sub(1)"
            f" if {{ str(route{j}),{lookup} -m int gt 0 }} {conditions}"
        )
    lines.append(f"    use_backend {rollout_backend}:slot%[var(txn.gl_s)] if {{ var(txn.gl_s) -m found }}")
    return lines
