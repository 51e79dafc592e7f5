"""The suite's order: longest tests first in every worker's share, shared-fixture modules kept together."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.durations import _rebuild, order


def _items(*nodeids: str, module_scoped: tuple[str, ...] = ()) -> list[pytest.Item]:
    """Stand-ins with what ``order`` reads: a node id and the scopes of the item's fixtures."""

    def item(nodeid: str) -> Any:
        scope = "module" if nodeid.split("::", maxsplit=1)[0] in module_scoped else "function"
        info = SimpleNamespace(name2fixturedefs={"f": [SimpleNamespace(scope=scope)]})
        return SimpleNamespace(nodeid=nodeid, _fixtureinfo=info)

    return [cast(pytest.Item, item(n)) for n in nodeids]


def _ids(items: list[pytest.Item]) -> list[str]:
    return [i.nodeid for i in items]


def test_each_share_starts_with_its_longest_and_keeps_every_test() -> None:
    """Two workers: the known-long tests are dealt over both halves, longest first; nothing is lost."""
    items = _items(*(f"t.py::q{i}" for i in range(6)), "t.py::a", "t.py::b", "t.py::c", "t.py::d")
    known = {"t.py::a": 10.0, "t.py::b": 30.0, "t.py::c": 20.0, "t.py::d": 5.0}
    ordered = _ids(order(items, known, 2))
    assert sorted(ordered) == sorted(_ids(items))
    first, second = ordered[:5], ordered[5:]
    assert first[:2] == ["t.py::b", "t.py::d"]
    assert second[:2] == ["t.py::c", "t.py::a"]
    assert [n for n in ordered if n.startswith("t.py::q")] == [f"t.py::q{i}" for i in range(6)]


def test_one_worker_runs_the_longest_first() -> None:
    """Without xdist the known-long tests simply come first, longest first."""
    items = _items("t.py::q", "t.py::a", "t.py::b")
    assert _ids(order(items, {"t.py::a": 1.0, "t.py::b": 2.0}, 1)) == ["t.py::b", "t.py::a", "t.py::q"]


def test_a_module_with_a_module_scoped_fixture_stays_together_in_its_order() -> None:
    """Its tests run one after another (the fixture is set up once), ranked by their summed time."""
    items = _items("m.py::x", "m.py::y", "t.py::a", "m.py::z", module_scoped=("m.py",))
    known = {"m.py::x": 1.0, "m.py::z": 1.0, "t.py::a": 1.5}
    assert _ids(order(items, known, 1)) == ["m.py::x", "m.py::y", "m.py::z", "t.py::a"]


def test_the_file_is_rebuilt_from_a_durations_report() -> None:
    """Setup, call and teardown add up per test; tests under a second are left out."""
    report = (
        "2.50s call     tests/a.py::t\n0.70s teardown tests/a.py::t\n"
        "0.40s call     tests/b.py::u\n3.00s setup    tests/c.py::v[x-1]\n"
    )
    body = _rebuild(report).splitlines()[1:]
    assert body == ["3.2 tests/a.py::t", "3.0 tests/c.py::v[x-1]"]
