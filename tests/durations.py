"""Run the longest tests first, spread over the xdist workers, so that both workers end together.

pytest-xdist's ``worksteal`` hands each worker a contiguous share of the collection (by count, in
collection order) and lets an idle worker steal the tail of another's queue. In collection order a
minute-long test that happens to come last keeps one worker busy while the other has nothing left.
``order`` sorts the tests with a known duration longest first and deals them alternately into the
workers' shares, then fills the shares up with the quick tests in collection order; whatever is stolen
at the end is short.

The durations are measured, not guessed: ``durations.txt`` beside this module holds ``SECONDS NODEID``
lines (setup + call + teardown of one CI run). Tests missing from it count as quick, so a stale file
only costs speed, never a test. Rebuild it from a run's ``--durations=0`` report::

    CI=true .venv/bin/pytest -n 2 --dist worksteal --durations=0 > run.log
    .venv/bin/python -m tests.durations run.log

A module or class with a fixture of that scope (a cluster's operator, a Prometheus server) stays
together as one unit, so its fixture is still set up once per worker.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["FILE", "order", "read"]

FILE = Path(__file__).with_name("durations.txt")
MIN_SECONDS = 1.0
"""Tests shorter than this are left out of the file: their order does not change the run's end."""
_SHARED_SCOPES = frozenset({"class", "module", "package"})


def read(path: Path = FILE) -> dict[str, float]:
    """``{nodeid: seconds}`` from a durations file (empty when there is none)."""
    if not path.exists():
        return {}
    known: dict[str, float] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            seconds, nodeid = line.split(maxsplit=1)
            known[nodeid] = float(seconds)
    return known


def _unit_key(item: pytest.Item) -> str:
    """Items with the same key run together: a module (or class) with a shared fixture is one unit."""
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    if any(d.scope in _SHARED_SCOPES for ds in defs.values() for d in ds):
        return item.nodeid.split("::", 1)[0]
    return item.nodeid


def _shares(total: int, workers: int) -> list[int]:
    """How many items worksteal hands each worker at the start (its own arithmetic)."""
    sizes = []
    left = total
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    return sizes


def order(items: Sequence[pytest.Item], known: dict[str, float], workers: int) -> list[pytest.Item]:
    """``items`` reordered: known-long units dealt longest first into ``workers`` shares, then the rest."""
    units: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        units[_unit_key(item)].append(item)
    seconds = {key: sum(known.get(i.nodeid, 0.0) for i in group) for key, group in units.items()}
    slow = sorted((k for k in units if seconds[k] > 0), key=lambda k: -seconds[k])
    quick = [i for k, group in units.items() if seconds[k] == 0 for i in group]
    hands: list[list[pytest.Item]] = [[] for _ in range(max(1, workers))]
    totals = [0.0] * len(hands)
    for key in slow:  # greedy: the next longest unit to the share with the least work so far
        at = totals.index(min(totals))
        hands[at].extend(units[key])
        totals[at] += seconds[key]
    sizes = _shares(len(items), len(hands))
    if any(len(h) > size for h, size in zip(hands, sizes, strict=True)):
        return [i for h in hands for i in h] + quick  # shares cannot be kept: at least longest first
    rest = iter(quick)
    for h, size in zip(hands, sizes, strict=True):
        h.extend(next(rest) for _ in range(size - len(h)))
    return [i for h in hands for i in h]


def _rebuild(report: str) -> str:
    """A durations file from a pytest ``--durations=0`` report."""
    total: dict[str, float] = defaultdict(float)
    for m in re.finditer(r"^([\d.]+)s (?:setup|call|teardown)\s+(\S+)$", report, re.MULTILINE):
        total[m[2]] += float(m[1])
    longest = sorted(total.items(), key=lambda t: -t[1])
    header = "# seconds (setup + call + teardown) per test of one CI run; see tests/durations.py\n"
    return header + "".join(f"{s:.1f} {nodeid}\n" for nodeid, s in longest if s >= MIN_SECONDS)


if __name__ == "__main__":
    FILE.write_text(_rebuild(Path(sys.argv[1]).read_text()))
