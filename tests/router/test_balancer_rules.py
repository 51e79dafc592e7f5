"""Rules of the routing table: the precomputed weighted cycle and the one-search shortcut change no choice."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.router import balancer
from gapless.router.balancer import Table
from gapless.router.config import Backend, Route, RouteMatch, RouterConfig, Stickiness, StringMatch
from gapless.router.counters import RevisionCounters
from gapless.router.pool import BackendPool
from gapless.router.sticky import bucket_of, cookie_value, header_value

REVISIONS = ("r0", "r1", "r2", "r3")


def _table(config: RouterConfig) -> Table:
    revs = {b.revision: RevisionCounters(b.revision) for b in config.backends}
    return Table(config, {b.id: BackendPool(b, revs[b.revision]) for b in config.backends})


def _reference_picks(config: RouterConfig, n: int) -> list[str]:
    """Backend ids picked by smooth weighted round-robin run pick by pick, round-robin within a revision."""
    by_rev: dict[str, list[str]] = {}
    for b in config.backends:
        by_rev.setdefault(b.revision, []).append(b.id)
    if config.weights is None:
        groups, weights = [[b.id for b in config.backends]], [1]
        if not config.backends:
            return []
    else:
        listed = [(r, w) for r, w in config.weights.items() if w > 0 and by_rev.get(r)]
        groups, weights = [by_rev[r] for r, _ in listed], [w for _, w in listed]
    if not groups:
        return []
    total = sum(weights)
    current = [0] * len(groups)
    rr = [0] * len(groups)
    out = []
    for _ in range(n):
        for i, w in enumerate(weights):
            current[i] += w
        g = max(range(len(groups)), key=lambda i: (current[i], -i))
        current[g] -= total
        out.append(groups[g][rr[g] % len(groups[g])])
        rr[g] += 1
    return out


@st.composite
def configs(draw: st.DrawFn, max_weight: int = 30) -> RouterConfig:
    counts = draw(st.lists(st.integers(0, 3), min_size=1, max_size=len(REVISIONS)))
    backends = tuple(
        Backend(id=f"{rev}-{i}", port=1000 + 10 * r + i, revision=rev)
        for r, (rev, count) in enumerate(zip(REVISIONS, counts, strict=False))
        for i in range(count)
    )
    weights = draw(
        st.none()
        | st.dictionaries(st.sampled_from(REVISIONS), st.integers(0, max_weight), min_size=1, max_size=4)
    )
    return RouterConfig(version=1, backends=backends, weights=weights)


@settings(max_examples=300, deadline=None)
@given(configs(), st.integers(1, 3))
def test_precomputed_cycle_picks_as_the_algorithm_does(config: RouterConfig, cycles: int) -> None:
    """Over several whole cycles a table picks exactly the backends smooth weighted round-robin picks."""
    table = _table(config)
    n = cycles * max(1, sum((config.weights or {"x": 1}).values()))
    picked = [table.pick() for _ in range(n)]
    expected = _reference_picks(config, n)
    assert [p.id if p is not None else None for p in picked] == (expected or [None] * n)


def test_a_cycle_too_long_to_precompute_is_run_pick_by_pick(monkeypatch: object) -> None:
    """Weights summing past the precomputed limit still split by the same algorithm."""
    config = RouterConfig(
        version=1,
        backends=(Backend(id="a", port=1, revision="r0"), Backend(id="b", port=2, revision="r1")),
        weights={"r0": balancer._MAX_CYCLE, "r1": 7},
    )
    table = _table(config)
    assert not table._cycle
    assert [p.id for p in (table.pick() for _ in range(30_000)) if p is not None] == _reference_picks(
        config, 30_000
    )


HEADER_NAMES = ("X-Canary", "x-user", "Cookie", "X-Region", "Accept")
COOKIE_NAMES = ("beta", "user", "x")
VALUES = ("1", "yes", "yes-please", "eu", "mobile", "")


@st.composite
def routed_configs(draw: st.DrawFn) -> RouterConfig:
    match = st.builds(
        lambda is_cookie, name, cookie, kind, value: RouteMatch(
            header=None if is_cookie else name,
            cookie=cookie if is_cookie else None,
            value=StringMatch(**{kind: value or "v"}),
        ),
        st.booleans(),
        st.sampled_from(("X-Canary", "x-region", "X-USER", "accept")),
        st.sampled_from(COOKIE_NAMES),
        st.sampled_from(("exact", "prefix", "regex")),
        st.sampled_from(VALUES),
    )
    routes = draw(
        st.lists(
            st.builds(
                lambda m, rev: Route(match=tuple(m), revision=rev),
                st.lists(match, min_size=1, max_size=2),
                st.sampled_from(("r0", "r1")),
            ),
            max_size=3,
        )
    )
    sticky = draw(
        st.none()
        | st.builds(lambda h: Stickiness(header=h), st.sampled_from(("X-User", "x-canary")))
        | st.builds(lambda c: Stickiness(cookie=c), st.sampled_from(COOKIE_NAMES))
    )
    return RouterConfig(
        version=1,
        backends=(Backend(id="a", port=1, revision="r0"), Backend(id="b", port=2, revision="r1")),
        weights={"r0": draw(st.integers(0, 5)), "r1": draw(st.integers(1, 5))},
        routes=tuple(routes),
        stickiness=sticky,
    )


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    lines = [b"GET / HTTP/1.1", b"Host: example"]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(HEADER_NAMES))
        name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
        if name.lower() == "cookie":
            pairs = draw(
                st.lists(st.tuples(st.sampled_from(COOKIE_NAMES), st.sampled_from(VALUES)), max_size=3)
            )
            value = "; ".join(f"{k}={v}" for k, v in pairs)
        else:
            value = draw(st.sampled_from(VALUES))
        lines.append(f"{name}:{draw(st.sampled_from(('', ' ', '  ')))}{value}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _revision_without_shortcut(table: Table, head: bytes) -> str | None:
    """The revision as the table chose it before the one-search shortcut: every route, then the sticky key."""
    lower = head.lower()
    for conditions, rev in table._routes:
        if all(balancer._holds(c, head, lower) for c in conditions):
            return rev
    if table._sticky is not None:
        is_cookie, name = table._sticky
        key = cookie_value(head, lower, name) if is_cookie else header_value(head, lower, name)
        if key:
            bucket = bucket_of(key)
            for upper, rev in table._ranges:
                if bucket < upper:
                    return rev
    return None


@settings(max_examples=400, deadline=None)
@given(routed_configs(), heads())
def test_the_header_search_shortcut_changes_no_choice(config: RouterConfig, head: bytes) -> None:
    """A request goes to the same revision with the search for the read headers as without it."""
    table = _table(config)
    expected = _revision_without_shortcut(table, head)
    assert table.revision_for(head) == expected
    if table.plain or table.keys.search(head) is None:
        assert expected is None
