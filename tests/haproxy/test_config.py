"""HAProxy's generated configuration: names map back to revisions, every server once, HAProxy accepts it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.haproxy.config import (
    HaproxyConfig,
    ServerNameError,
    bind_address,
    parse_server_name,
    render,
    server_name,
)
from gapless.router.config import Backend, Limits
from tests.haproxy.binary import require_haproxy

revision = st.from_regex(r"[0-9a-f]{10}", fullmatch=True)
instance = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?-[0-9a-f]{6}-[0-9a-f]{6}", fullmatch=True)
backends = st.lists(
    st.builds(Backend, id=instance, port=st.integers(1, 65535), revision=revision),
    max_size=12,
    unique_by=lambda b: b.id,
)


@given(revision=revision, instance=instance)
def test_server_names_map_back_to_revision_and_instance(revision: str, instance: str) -> None:
    """``<revision>.<instance>`` parses back to exactly its revision and instance."""
    name = server_name(Backend(id=instance, port=80, revision=revision))
    assert parse_server_name(name) == (revision, instance)
    assert re.fullmatch(r"[A-Za-z0-9_.:-]+", name)


@pytest.mark.parametrize(
    ("revision", "instance"), [("a.b", "i"), ("a b", "i"), ("r", "i;x"), ("r", "i x"), ("r", "i/x")]
)
def test_names_haproxy_cannot_carry_are_refused(revision: str, instance: str) -> None:
    """A dot in a revision, or a space, ``;`` or ``/`` anywhere, is an error naming the value."""
    with pytest.raises(ServerNameError, match="not usable"):
        server_name(Backend(id=instance, port=80, revision=revision))


def test_names_of_other_servers_are_not_parsed() -> None:
    """Servers gapless did not name have no revision."""
    assert parse_server_name("plain") is None
    assert parse_server_name(".x") is None


@given(backends=backends, weight=st.integers(0, 256))
def test_every_server_appears_exactly_once(backends: list[Backend], weight: int) -> None:
    """The backend lists each server once, with its address and weight, in name order."""
    servers = {server_name(b): (b, weight) for b in backends}
    text = render(HaproxyConfig("web", "127.0.0.1:8080", "/run/x.sock", servers=servers))
    lines = [line.split() for line in text.splitlines() if line.strip().startswith("server ")]
    assert [x[1] for x in lines] == sorted(servers)
    for x in lines:
        b, w = servers[x[1]]
        assert x[2:] == [f"{b.host}:{b.port}", "weight", str(w)]


def test_a_server_not_named_after_its_backend_is_refused() -> None:
    """Configuration and stats must agree on names: a mismatch is an error."""
    b = Backend(id="i", port=80, revision="r")
    with pytest.raises(ServerNameError):
        render(HaproxyConfig("web", "127.0.0.1:8080", "/s", servers={"other": (b, 1)}))


def test_ipv6_listen_address() -> None:
    """An IPv6 listen address in brackets becomes HAProxy's ``ipv6@`` form."""
    assert bind_address("[::1]:8080") == "ipv6@::1:8080"
    assert bind_address("127.0.0.1:80") == "127.0.0.1:80"


@settings(max_examples=10, deadline=None)
@given(backends=backends, header=st.floats(0.001, 86400), idle=st.floats(0.001, 86400))
def test_haproxy_accepts_the_configuration(
    tmp_path_factory: pytest.TempPathFactory, backends: list[Backend], header: float, idle: float
) -> None:
    """``haproxy -c`` finds every generated configuration valid."""
    binary = require_haproxy()
    d: Path = tmp_path_factory.mktemp("cfg")
    servers = {server_name(b): (b, 7) for b in backends}
    limits = Limits(header_timeout=header, idle_timeout=idle)
    text = render(HaproxyConfig("web", "127.0.0.1:18080", str(d / "rt.sock"), limits=limits, servers=servers))
    (d / "h.cfg").write_text(text)
    done = subprocess.run([binary, "-c", "-f", str(d / "h.cfg")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
