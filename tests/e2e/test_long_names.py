"""A rollout name as long as the spec allows, under a deep state directory, still gets its router.

A unix socket path has at most 107 bytes; ``routers/NAME.sock`` under a deep state directory can be
longer, and then the router's admin socket takes a short hashed name (``core.files.router_socket``).
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gapless.core.files import SOCKET_PATH_MAX, longest_socket, router_socket
from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

names = st.from_regex(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)


@given(names, names, st.integers(1, 60))
def test_router_sockets_fit_and_stay_apart(a: str, b: str, depth: int) -> None:
    state = Path("/s") / ("d" * depth)
    for n in (a, b):
        path = router_socket(state, n)
        assert len(os.fsencode(path)) <= SOCKET_PATH_MAX
        if len(os.fsencode(state / "routers" / f"{n}.sock")) <= SOCKET_PATH_MAX:
            assert path.name == f"{n}.sock"  # the plain name whenever it fits
    if a != b:
        assert router_socket(state, a) != router_socket(state, b)


async def test_a_63_character_name_serves(tmp_path: Path) -> None:
    deep = tmp_path / "state"
    g = Gapless(deep)
    name = "a" + "b" * 61 + "c"
    port = free_port()
    try:
        code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc(name, port, "v1", replicas=1))))
        assert code == 0, out + err
        assert len(os.fsencode(deep / "routers" / f"{name}.sock")) > SOCKET_PATH_MAX
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        assert (await g.status(name))["phase"] == "Healthy"
    finally:
        g.down()


def test_a_state_directory_too_deep_for_its_sockets_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120) / "state"
    deep.parent.mkdir()
    g = Gapless(deep)
    r = g.cli("up", "-f", str(g.write(rollout_doc("web", free_port(), "v1", replicas=1))))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "a unix socket path has at most 107): choose a shorter path" in " ".join(r.stderr.split())
    assert g.processes() == []


@given(st.integers(1, 120))
def test_a_state_directory_either_fits_every_socket_or_is_refused(depth: int) -> None:
    """What ``up`` accepts (``longest_socket`` fits) leaves room for every rollout's router socket."""
    state = Path("/s") / ("d" * depth)
    if len(os.fsencode(longest_socket(state))) <= SOCKET_PATH_MAX:
        for n in ("a", "r" * 63, "web-7"):
            assert len(os.fsencode(router_socket(state, n))) <= SOCKET_PATH_MAX
