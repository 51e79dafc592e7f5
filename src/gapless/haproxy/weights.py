"""Revision weights split exactly over HAProxy servers (pure).

HAProxy weighs servers, gapless weighs revisions. A revision's weight ``W`` becomes ``W * k`` server
weight units, spread over its servers as evenly as integers allow (the first ``T mod n`` servers by name
get one unit more), with ``k`` the largest factor that keeps every server within HAProxy's maximum of
256. So each revision's share of the total is exactly its share of the weights, and only the split
between servers of one revision can be off, by less than one unit each: ``Split.server_error`` reports
the worst such error as a fraction of all traffic. Weights too large for any ``k`` (a revision weighing
more than 256 per server) are scaled down by the least common factor (rounded) and ``revision_error`` says
how far a revision's share moved. A revision with weight 0 or missing from the weights gets 0 on every
server: no traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["MAX_SERVER_WEIGHT", "Split", "split_weights"]

MAX_SERVER_WEIGHT = 256
"""HAProxy's largest server weight."""


@dataclass(frozen=True)
class Split:
    """Server weights, and how far they are from the exact shares (fractions of all traffic)."""

    weights: dict[str, int]
    revision_error: float = 0.0
    """The largest difference between a revision's share and its share of the weights."""
    server_error: float = 0.0
    """The largest difference between a server's share and an exact split of its revision's share."""


def split_weights(servers: Mapping[str, Sequence[str]], weights: Mapping[str, int] | None) -> Split:
    """Server weights for ``servers`` (revision -> server names) under revision ``weights``.

    ``weights=None`` gives every server the same weight (an even split over all servers, as in a
    rolling update).
    """
    if any(w < 0 for w in (weights or {}).values()):
        raise ValueError("revision weights must not be negative")
    names = sorted(n for group in servers.values() for n in group)
    if len(set(names)) != len(names):
        raise ValueError("a server belongs to exactly one revision")
    if weights is None:
        return Split(dict.fromkeys(names, 1))
    live = {r: sorted(group) for r, group in servers.items() if group and weights.get(r, 0) > 0}
    out = dict.fromkeys(names, 0)
    if not live:
        return Split(out)
    wanted = {r: weights[r] for r in live}
    k = min(MAX_SERVER_WEIGHT * len(group) // wanted[r] for r, group in live.items())
    if k >= 1:
        totals = {r: w * k for r, w in wanted.items()}
    else:
        totals = _scaled_down(wanted, {r: len(g) for r, g in live.items()})
    for r, group in live.items():
        base, extra = divmod(totals[r], len(group))
        for i, name in enumerate(group):
            out[name] = base + (1 if i < extra else 0)
    return Split(out, *_errors(live, wanted, out))


def _scaled_down(wanted: dict[str, int], sizes: dict[str, int]) -> dict[str, int]:
    """Revision totals proportional to ``wanted``, divided by the least factor that fits every revision."""
    scale = max(-(-w // (MAX_SERVER_WEIGHT * sizes[r])) for r, w in wanted.items())
    return {r: max(1, round(w / scale)) for r, w in wanted.items()}


def _errors(live: dict[str, list[str]], wanted: dict[str, int], out: dict[str, int]) -> tuple[float, float]:
    total = sum(out.values())
    whole = sum(wanted.values())
    revision_error = 0.0
    server_error = 0.0
    for r, group in live.items():
        share = wanted[r] / whole
        got = sum(out[n] for n in group) / total
        revision_error = max(revision_error, abs(got - share))
        for n in group:
            server_error = max(server_error, abs(out[n] / total - got / len(group)))
    return revision_error, server_error
