"""What a rollout's HAProxy should hold: saved and read back unchanged, and the slots and map derived from it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.haproxy.rules import BUCKETS, SLOTS, FrontRules, slot_backend
from gapless.haproxy.tls import TlsFiles
from gapless.haproxy.wanted import Wanted, applied_of, map_text, slots_for
from gapless.router.config import Backend, Route, RouteMatch, Stickiness, StringMatch

revisions = st.sampled_from(["r1", "r2", "r3", "r4", "r5"])
backends = st.lists(
    st.builds(
        Backend,
        id=st.from_regex(r"i-[a-z0-9]{1,6}", fullmatch=True),
        port=st.integers(1, 65535),
        revision=revisions,
    ),
    max_size=8,
    unique_by=lambda b: b.id,
).map(tuple)
match = st.builds(
    RouteMatch,
    header=st.sampled_from(["X-A", "X-B"]),
    value=st.builds(StringMatch, exact=st.text("ab", max_size=3)),
)
rules = st.builds(
    FrontRules,
    st.one_of(
        st.none(), st.builds(Stickiness, header=st.just("X-User")), st.builds(Stickiness, cookie=st.just("u"))
    ),
    st.lists(st.lists(match, min_size=1, max_size=2).map(tuple), max_size=2, unique=True).map(tuple),
)
wanted = st.builds(
    Wanted,
    listen=st.just("127.0.0.1:8080"),
    backends=backends,
    weights=st.one_of(st.none(), st.dictionaries(revisions, st.integers(0, 100), max_size=3)),
    version=st.integers(0, 10**6),
    tls=st.one_of(st.none(), st.just(TlsFiles("/a.crt", "/a.key"))),
    rules=rules,
    slots=st.dictionaries(revisions, st.integers(0, SLOTS - 1), max_size=2),
)


@settings(max_examples=60)
@given(wanted, st.lists(revisions, max_size=2))
def test_saved_state_reads_back_unchanged(w: Wanted, routed: list[str]) -> None:
    """to_json then from_json gives the same state: a restarted control plane or HAProxy sees what was wanted."""
    routes = tuple(Route(match=m, revision=r) for m, r in zip(w.rules.routes, routed, strict=False))
    w = Wanted(**{**w.__dict__, "routes": routes})
    assert Wanted.from_json(w.to_json()) == w


@settings(max_examples=60)
@given(wanted)
def test_slots_and_map_follow_the_servers(w: Wanted) -> None:
    """Every revision with servers gets a slot while slots last; the map covers every slot and route; sticky ranges cover all buckets."""
    w = Wanted(**{**w.__dict__, "slots": slots_for(w)})
    serving = {b.revision for b in w.backends}
    if not w.rules:
        assert w.slots == {}
        assert w.map_entries() == {}
        assert w.slot_servers("web") == {}
        return
    assert set(w.slots) <= serving
    assert len(w.slots) == min(SLOTS, len(serving))
    entries = w.map_entries()
    assert set(entries) == {f"{k}{s}" for k in ("lo", "hi") for s in range(SLOTS)} | {
        f"route{j}" for j in range(len(w.rules.routes))
    }
    owned = sum(entries[f"hi{s}"] - entries[f"lo{s}"] for s in range(SLOTS))
    live = {r for r, x in (w.weights or {}).items() if x > 0 and r in w.slots}
    if (
        w.rules.stickiness is not None
        and live
        and live == {r for r, x in (w.weights or {}).items() if x > 0 and r in serving}
    ):
        assert owned == BUCKETS
    members = w.slot_servers("web")
    assert set(members) == {slot_backend("web", s) for s in range(SLOTS)}
    for b in w.backends:
        slot = w.slots.get(b.revision)
        if slot is not None:
            assert f"{b.revision}.{b.id}" in members[slot_backend("web", slot)]
    applied = applied_of("web", w)
    assert len(applied) == len(w.backends) + sum(len(m) for m in members.values())
    assert map_text(entries).count("\n") == len(entries)
