"""Choosing a backend for a request from the current ``RouterConfig``.

A ``Table`` is built once per config push and swapped in with one reference assignment, so requests
never see half a config and routing takes no lock. Between revisions it uses smooth weighted
round-robin (the nginx algorithm): exact proportions over every cycle of ``sum(weights)`` picks and
evenly interleaved, with no randomness; within a revision it is plain round-robin. With ``weights``
None every backend takes its turn regardless of revision.

Smooth weighted round-robin repeats itself every ``sum(weights)`` picks, so the table computes one such
cycle of revision indices when it is built (up to ``_MAX_CYCLE`` picks; beyond, it runs the algorithm per
pick) and a pick is a look-up in it.

Header routes and stickiness look at the request, which costs a little, so a table without them says
``plain`` and the protocol then calls ``pick()`` without handing over the head. A table with them
compiles the names of every header they read (``Cookie`` for cookies) into one case-insensitive
pattern, ``keys``: a request naming none of them (most requests, when routes and stickiness are
configured but only some clients carry the header) is split by weight after that one search. A request matching
every condition of a route goes to that route's revision whatever the weights (when it has backends).
A request with the sticky header or cookie goes to the revision owning its hash bucket: revisions own
consecutive ranges of the buckets in the order of ``weights``, sized by weight, so as a revision listed
first grows, keys only ever move onto it. Other requests are split by weight.

An ejected backend (see ``pool.py``) is passed over: its turn goes to the next healthy member of its
revision, else to any healthy backend. When every backend is ejected the table routes as if none were
(Envoy's panic threshold): a guess beats a certain 503. The check is one attribute read per pick.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from gapless.core.regex import Regex
from gapless.router.config import RouteMatch, RouterConfig, StringMatch
from gapless.router.sticky import BUCKETS, bucket_of, cookie_value, header_value

if TYPE_CHECKING:
    from gapless.router.upstream import Pool

__all__ = ["Table"]

# A condition on a request head: (cookie?, lower-case header name or cookie name, value test).
_Condition = tuple[bool, bytes, Callable[[str], bool]]

_MAX_CYCLE = 100_000
"""Picks of one smooth weighted round-robin cycle computed ahead; a longer cycle is run pick by pick."""


def _value_test(match: StringMatch) -> Callable[[str], bool]:
    if match.exact is not None:
        return match.exact.__eq__
    if match.prefix is not None:
        prefix = match.prefix
        return lambda v: v.startswith(prefix)
    # Linear in the value whatever the pattern (``gapless.core.regex``): a header cannot stall the loop.
    return Regex(match.regex or "").search


def _condition(m: RouteMatch) -> _Condition:
    if m.header is not None:
        return False, m.header.lower().encode("latin-1"), _value_test(m.value)
    return True, (m.cookie or "").encode("latin-1"), _value_test(m.value)


class Table:
    """The routing table of one config version."""

    __slots__ = (
        "_by_revision",
        "_current",
        "_cycle",
        "_groups",
        "_k",
        "_ranges",
        "_revision_rr",
        "_routes",
        "_rr",
        "_sticky",
        "_total",
        "_weights",
        "backends",
        "config",
        "keys",
        "plain",
    )

    def __init__(self, config: RouterConfig, pools: dict[str, Pool]) -> None:
        self.config = config
        self.backends: tuple[Pool, ...] = tuple(pools[b.id] for b in config.backends)
        by_revision: dict[str, tuple[Pool, ...]] = {}
        for pool in self.backends:
            by_revision[pool.rev.name] = (*by_revision.get(pool.rev.name, ()), pool)
        self._by_revision = by_revision
        self._revision_rr = dict.fromkeys(by_revision, 0)
        groups: list[tuple[Pool, ...]] = []
        weights: list[int] = []
        names: list[str] = []
        if config.weights is None:
            if self.backends:
                groups.append(self.backends)
                weights.append(1)
        else:
            for rev, weight in config.weights.items():
                members = by_revision.get(rev, ())
                if weight > 0 and members:
                    groups.append(members)
                    weights.append(weight)
                    names.append(rev)
        self._groups = groups
        self._weights = weights
        self._total = sum(weights)
        self._current = [0] * len(groups)
        self._rr = [0] * len(groups)
        self._routes = [
            (tuple(_condition(m) for m in route.match), route.revision)
            for route in config.routes
            if route.revision in by_revision
        ]
        self._sticky: tuple[bool, bytes] | None = None
        self._ranges: list[tuple[int, str]] = []
        if config.stickiness is not None and names:
            s = config.stickiness
            if s.header is not None:
                self._sticky = (False, s.header.lower().encode("latin-1"))
            else:
                self._sticky = (True, (s.cookie or "").encode("latin-1"))
            total, upper = 0, 0
            for rev, weight in zip(names, weights, strict=True):
                total += weight
                upper = BUCKETS * total // self._total
                self._ranges.append((upper, rev))
        self.plain = not self._routes and self._sticky is None
        read = {
            b"cookie" if is_cookie else name
            for conditions, _ in self._routes
            for is_cookie, name, _ in conditions
        }
        if self._sticky is not None:
            read.add(b"cookie" if self._sticky[0] else self._sticky[1])
        alternatives = b"|".join(re.escape(name) for name in sorted(read))
        self.keys = re.compile(rb"\n(?:" + alternatives + b"):" if read else b"(?!)", re.IGNORECASE)
        self._k = 0
        self._cycle: tuple[int, ...] = ()
        if 0 < self._total <= _MAX_CYCLE:
            self._cycle = tuple(self._next_group() for _ in range(self._total))
            self._current = [0] * len(groups)

    def _next_group(self) -> int:
        """The next revision group by smooth weighted round-robin (nginx's algorithm); needs a group."""
        current = self._current
        weights = self._weights
        g = 0
        best = current[0] = current[0] + weights[0]
        for i in range(1, len(current)):
            c = current[i] = current[i] + weights[i]
            if c > best:
                best = c
                g = i
        current[g] -= self._total
        return g

    def pick(self) -> Pool | None:
        """The next backend to send a request to, or None when no revision may receive traffic."""
        cycle = self._cycle
        if cycle:
            k = self._k
            g = cycle[k]
            k += 1
            self._k = 0 if k == len(cycle) else k
        elif self._groups:
            g = self._next_group()
        else:
            return None
        members = self._groups[g]
        i = self._rr[g]
        self._rr[g] = i + 1
        pool = members[i % len(members)]
        if pool.ejected:
            return self._instead_of_ejected(g, i, pool)
        return pool

    def _instead_of_ejected(self, g: int, i: int, ejected: Pool) -> Pool:
        """Another backend of the same group, else of any group; all ejected: route anyway (panic)."""
        members = self._groups[g]
        for k in range(1, len(members)):
            pool = members[(i + k) % len(members)]
            if not pool.ejected:
                return pool
        for group in self._groups:
            for pool in group:
                if not pool.ejected:
                    return pool
        return ejected

    def pick_for(self, head: bytes, tried: set[Pool] | None = None) -> Pool | None:
        """The backend for a request with this head, by route, sticky key or weight; avoids ``tried``."""
        rev = self.revision_for(head) if not self.plain else None
        if rev is not None:
            members = self._by_revision[rev]
            for _ in range(len(members)):
                i = self._revision_rr[rev]
                self._revision_rr[rev] = i + 1
                pool = members[i % len(members)]
                if (tried is None or pool not in tried) and not pool.ejected:
                    return pool
        return self.pick() if tried is None else self.pick_other(tried)

    def revision_for(self, head: bytes) -> str | None:
        """The revision a route or the sticky key sends this request to; None to split by weight."""
        if self.keys.search(head) is None:
            return None  # it has none of the headers routes and stickiness read
        lower = head.lower()
        for conditions, rev in self._routes:
            if all(_holds(c, head, lower) for c in conditions):
                return rev
        if self._sticky is not None:
            is_cookie, name = self._sticky
            key = cookie_value(head, lower, name) if is_cookie else header_value(head, lower, name)
            if key:
                bucket = bucket_of(key)
                for upper, rev in self._ranges:
                    if bucket < upper:
                        return rev
        return None

    def pick_other(self, tried: set[Pool]) -> Pool | None:
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

    def _routable(self, pool: Pool) -> bool:
        return any(pool in g for g in self._groups)


def _holds(condition: _Condition, head: bytes, lower: bytes) -> bool:
    is_cookie, name, test = condition
    value = cookie_value(head, lower, name) if is_cookie else header_value(head, lower, name)
    return value is not None and test(value.decode("latin-1"))
