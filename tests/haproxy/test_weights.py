"""Revision weights split over HAProxy servers: exact revision shares, bounded per-server error."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.haproxy.weights import MAX_SERVER_WEIGHT, split_weights

revisions = st.dictionaries(
    st.from_regex(r"[0-9a-f]{4}", fullmatch=True),
    st.integers(min_value=0, max_value=12),
    min_size=1,
    max_size=4,
)


def _servers(sizes: dict[str, int]) -> dict[str, list[str]]:
    return {r: [f"{r}.i{k}" for k in range(n)] for r, n in sizes.items()}


@given(sizes=revisions, data=st.data())
def test_revision_shares_are_exact_for_percent_weights(sizes: dict[str, int], data: st.DataObject) -> None:
    """With weights up to 100, every revision's share of the server weights equals its share of the weights."""
    weights = {r: data.draw(st.integers(min_value=0, max_value=100)) for r in sizes}
    servers = _servers(sizes)
    split = split_weights(servers, weights)
    assert sorted(split.weights) == sorted(n for g in servers.values() for n in g)
    assert all(0 <= w <= MAX_SERVER_WEIGHT for w in split.weights.values())
    live = {r: w for r, w in weights.items() if w > 0 and sizes[r] > 0}
    total = sum(split.weights.values())
    if not live:
        assert total == 0
        return
    for r, group in servers.items():
        got = sum(split.weights[n] for n in group)
        if r not in live:
            assert got == 0, "a revision with weight 0 or no servers gets no traffic"
        else:
            assert Fraction(got, total) == Fraction(live[r], sum(live.values()))
    assert split.revision_error == 0.0


@given(sizes=revisions, data=st.data())
def test_servers_of_a_revision_differ_by_at_most_one_unit(sizes: dict[str, int], data: st.DataObject) -> None:
    """Within a revision the split is as even as integers allow, and the reported error bounds it."""
    weights = {r: data.draw(st.integers(min_value=0, max_value=100_000)) for r in sizes}
    servers = _servers(sizes)
    split = split_weights(servers, weights)
    total = sum(split.weights.values())
    for group in servers.values():
        ws = [split.weights[n] for n in group]
        if ws:
            assert max(ws) - min(ws) <= 1
    if total:
        for group in servers.values():
            if group:
                mean = sum(split.weights[n] for n in group) / len(group) / total
                for n in group:
                    assert abs(split.weights[n] / total - mean) <= split.server_error + 1e-12
                    assert split.server_error <= 1 / total + 1e-12
    assert all(0 <= w <= MAX_SERVER_WEIGHT for w in split.weights.values())


@given(sizes=revisions, data=st.data())
def test_large_weights_keep_every_revision_in_play(sizes: dict[str, int], data: st.DataObject) -> None:
    """Weights beyond what HAProxy can hold are scaled down; the error is reported and no live revision drops to 0."""
    weights = {r: data.draw(st.integers(min_value=0, max_value=10**6)) for r in sizes}
    servers = _servers(sizes)
    split = split_weights(servers, weights)
    total = sum(split.weights.values())
    for r, group in servers.items():
        got = sum(split.weights[n] for n in group)
        assert (got > 0) == (weights[r] > 0 and bool(group))
        if got and total:
            share = weights[r] / sum(w for q, w in weights.items() if w > 0 and servers[q])
            assert abs(got / total - share) <= split.revision_error + 1e-9


@given(sizes=revisions)
def test_no_weights_split_evenly_over_servers(sizes: dict[str, int]) -> None:
    """Without revision weights (a rolling update) every server weighs the same."""
    split = split_weights(_servers(sizes), None)
    assert set(split.weights.values()) <= {1}


def test_bad_input_is_refused() -> None:
    """A negative weight or a server in two revisions is an error, not a guess."""
    with pytest.raises(ValueError, match="negative"):
        split_weights({"a": ["a.1"]}, {"a": -1})
    with pytest.raises(ValueError, match="exactly one revision"):
        split_weights({"a": ["x"], "b": ["x"]}, {"a": 1, "b": 1})


def test_a_canary_at_20_percent_on_four_and_one_servers() -> None:
    """80/20 over 4 stable servers and 1 canary server: the canary server holds exactly 20 % of the units."""
    split = split_weights({"s": ["s.1", "s.2", "s.3", "s.4"], "c": ["c.1"]}, {"s": 80, "c": 20})
    assert split.weights["c.1"] * 5 == sum(split.weights.values())
