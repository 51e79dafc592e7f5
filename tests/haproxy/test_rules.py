"""Header routes and sticky ranges for HAProxy (pure), and their configuration accepted by a real HAProxy."""

from __future__ import annotations

import itertools
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapless.haproxy.config import HaproxyConfig, render
from gapless.haproxy.rules import (
    BUCKETS,
    SLOTS,
    FrontRules,
    RuleError,
    assign_slots,
    bucket_of,
    bucket_ranges,
    frontend_lines,
    map_entries,
)
from gapless.router.config import Backend, RouteMatch, Stickiness, StringMatch
from tests.haproxy.binary import require_haproxy

revisions = st.lists(st.sampled_from(["r1", "r2", "r3", "r4", "r5", "r6"]), unique=True, max_size=6)
weights = st.dictionaries(st.sampled_from(["r1", "r2", "r3", "r4", "r5"]), st.integers(0, 1000), max_size=5)


@given(weights, revisions)
def test_ranges_partition_the_buckets_in_weight_order(w: dict[str, int], serving: list[str]) -> None:
    """Revisions with weight and servers own consecutive ranges covering every bucket once, sized by weight."""
    ranges = bucket_ranges(w, set(serving))
    live = [r for r, x in w.items() if x > 0 and r in serving]
    assert list(ranges) == live
    if not live:
        return
    bounds = [ranges[r] for r in live]
    assert bounds[0][0] == 0
    assert bounds[-1][1] == BUCKETS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    total = sum(w[r] for r in live)
    for r in live:
        lo, hi = ranges[r]
        assert abs((hi - lo) - BUCKETS * w[r] / total) <= 1


@given(st.integers(0, 100), st.integers(0, 100))
def test_a_growing_canary_only_gains_buckets(a: int, b: int) -> None:
    """Canary listed first, weights out of 100: at a higher weight its range contains its range at a lower one."""
    low, high = sorted((a, b))
    before = bucket_ranges({"canary": low, "stable": 100 - low}, {"canary", "stable"})
    after = bucket_ranges({"canary": high, "stable": 100 - high}, {"canary", "stable"})
    if "canary" in before:
        assert after["canary"][0] == before["canary"][0] == 0
        assert after["canary"][1] >= before["canary"][1]
        assert after.get("stable", (BUCKETS, BUCKETS))[0] >= before.get("stable", (BUCKETS, BUCKETS))[0]


def test_growing_share_with_the_canary_steps() -> None:
    """The canary steps 10 -> 30 -> 60 of 100: each range contains the one before."""
    previous = (0, 0)
    for w in (10, 30, 60, 100):
        lo, hi = bucket_ranges({"v2": w, "v1": 100 - w}, {"v1", "v2"})["v2"]
        assert lo <= previous[0]
        assert hi >= previous[1]
        previous = (lo, hi)


@given(st.dictionaries(st.sampled_from(["r1", "r2", "r3"]), st.integers(0, SLOTS - 1), max_size=3), revisions)
def test_slots_are_kept_and_distinct(previous: dict[str, int], revs: list[str]) -> None:
    """A revision keeps its (unshared) slot while it has servers; slots are distinct; at most SLOTS revisions get one."""
    slots = assign_slots(previous, revs)
    assert len(set(slots.values())) == len(slots)
    assert set(slots) <= set(revs)
    assert len(slots) == min(SLOTS, len(revs)) or len(slots) <= SLOTS
    for r, s in previous.items():
        if r in revs and list(previous.values()).count(s) == 1:
            assert slots[r] == s
    assert all(0 <= s < SLOTS for s in slots.values())


@given(st.binary(max_size=64))
def test_bucket_is_crc32_mod_buckets(key: bytes) -> None:
    """The bucket is HAProxy's ``crc32`` converter (no avalanche) modulo the bucket count."""
    assert bucket_of(key) == zlib.crc32(key) % BUCKETS
    assert 0 <= bucket_of(key) < BUCKETS


def test_map_entries_point_slots_and_routes() -> None:
    """Every slot has lo/hi (0/0 when it owns nothing) and each route its slot + 1, or 0 when off."""
    match = (RouteMatch(header="X-Internal", value=StringMatch(exact="yes")),)
    rules = FrontRules(
        Stickiness(header="X-User"), (match, (RouteMatch(cookie="c", value=StringMatch(prefix="a")),))
    )
    slots = {"v1": 0, "v2": 1}
    ranges = bucket_ranges({"v2": 25, "v1": 75}, {"v1", "v2"})
    out = map_entries(rules, slots, ranges, {0: "v2"})
    assert out == {
        "lo0": 2500, "hi0": 10000, "lo1": 0, "hi1": 2500, "lo2": 0, "hi2": 0, "lo3": 0, "hi3": 0,
        "route0": 2, "route1": 0,
    }  # fmt: skip
    no_sticky = map_entries(FrontRules(routes=(match,)), slots, ranges, {})
    assert all(no_sticky[f"hi{s}"] == 0 for s in range(SLOTS))


names = st.text(alphabet="abcXYZ-_019", min_size=1, max_size=12)
values = st.text(alphabet=st.characters(codec="ascii", exclude_characters="'\x7f"), max_size=16).filter(
    lambda v: all(ord(c) >= 0x20 for c in v)
)
string_match = st.one_of(
    st.builds(StringMatch, exact=values),
    st.builds(StringMatch, prefix=values),
    st.builds(StringMatch, regex=st.sampled_from(["^a", "b+c", "[0-9]{2}", "x|y"])),
)
route_match = st.one_of(
    st.builds(RouteMatch, header=names, value=string_match),
    st.builds(RouteMatch, cookie=names, value=string_match),
)
front_rules = st.builds(
    FrontRules,
    st.one_of(st.none(), st.builds(Stickiness, header=names), st.builds(Stickiness, cookie=names)),
    st.lists(st.lists(route_match, min_size=1, max_size=3).map(tuple), max_size=3).map(tuple),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(front_rules)
def test_any_rules_give_a_configuration_haproxy_accepts(tmp_path: Path, rules: FrontRules) -> None:
    """Sticky keys and routes of any printable value render to a configuration `haproxy -c` accepts."""
    map_file = tmp_path / "r.map"
    map_file.write_text("lo0 0\n")
    backends = [Backend(id="i1", port=9001, revision="v1"), Backend(id="i2", port=9002, revision="v2")]
    cfg = HaproxyConfig(
        rollout="web",
        listen="127.0.0.1:8080",
        runtime_socket="unix@s.sock",
        servers={f"{b.revision}.{b.id}": (b, 1) for b in backends},
        rules=rules,
        map_file=str(map_file),
        slots={"v1": 0, "v2": 1},
    )
    path = tmp_path / "h.cfg"
    path.write_text(render(cfg))
    done = subprocess.run(
        [require_haproxy(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr + path.read_text()


def test_values_haproxy_cannot_carry_are_refused() -> None:
    """A quote or control character in a value, or a header name with a space: RuleError naming the route."""
    for m in (
        RouteMatch(header="X", value=StringMatch(exact="it's")),
        RouteMatch(header="X", value=StringMatch(prefix="a\tb")),
        RouteMatch(header="X Y", value=StringMatch(exact="a")),
    ):
        with pytest.raises(RuleError, match="route 0"):
            frontend_lines(FrontRules(routes=((m,),)), "/m.map", "web")
    with pytest.raises(RuleError, match="stickiness"):
        frontend_lines(FrontRules(Stickiness(cookie="a b")), "/m.map", "web")
