"""The loopback-only rule: URLs are parsed strictly and every resolved address must be loopback."""

from __future__ import annotations

import time

import pytest

from gapless.loadgen import LoadInputError, resolve_target, run_load
from gapless.loadgen.target import check_loopback, parse_url


@pytest.mark.parametrize(
    ("url", "host", "port", "target", "host_header"),
    [
        ("http://127.0.0.1:8080/", "127.0.0.1", 8080, "/", "127.0.0.1:8080"),
        ("http://localhost", "localhost", 80, "/", "localhost"),
        ("http://localhost:9/a/b?x=1&y=2#frag", "localhost", 9, "/a/b?x=1&y=2", "localhost:9"),
        ("HTTP://[::1]:8000/health", "::1", 8000, "/health", "[::1]:8000"),
    ],
)
def test_parse_url_splits_the_parts_the_client_needs(
    url: str, host: str, port: int, target: str, host_header: str
) -> None:
    """A valid http URL yields host, port, request target and Host header."""
    parsed = parse_url(url)
    assert (parsed.host, parsed.port, parsed.target, parsed.host_header) == (host, port, target, host_header)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://127.0.0.1/", "must start with http://"),
        ("ftp://127.0.0.1/", "must start with http://"),
        ("127.0.0.1:8080", "must start with http://"),
        ("http:///path", "has no host"),
        ("http://127.0.0.1:99999/", "not a valid URL"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http://127.0.0.1/a b", "spaces or control characters"),
        ("http://127.0.0.1/\r\nX-Injected: 1", "spaces or control characters"),
        ("http://127.0.0.1/caf\u00e9", "ASCII"),
    ],
)
def test_parse_url_rejects_what_it_cannot_send_safely(url: str, fragment: str) -> None:
    """Other schemes, missing hosts, bad ports, credentials and header injection are refused."""
    with pytest.raises(LoadInputError, match=fragment) as info:
        parse_url(url)
    assert info.value.option == "url"


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["127.45.6.7"], ["::1"], ["::1", "127.0.0.1"], ["::ffff:127.0.0.1"]],
)
def test_loopback_addresses_pass(addresses: list[str]) -> None:
    """Addresses in 127.0.0.0/8, ::1 and IPv4-mapped loopback are accepted."""
    assert check_loopback("host", addresses) == tuple(addresses)


@pytest.mark.parametrize(
    ("addresses", "fragment"),
    [
        ([], "did not resolve"),
        (["10.1.2.3"], "10.1.2.3"),
        (["127.0.0.1", "93.184.215.14"], "93.184.215.14"),
        (["::1", "2001:db8::1"], "2001:db8::1"),
        (["0.0.0.0"], "use 127.0.0.1"),
        (["::"], "non-loopback"),
        (["192.168.1.10"], "only targets localhost"),
    ],
)
def test_any_non_loopback_address_is_refused(addresses: list[str], fragment: str) -> None:
    """One foreign address among loopback ones, or no address at all, refuses the whole target."""
    with pytest.raises(LoadInputError, match=fragment):
        check_loopback("host", addresses)


async def test_localhost_resolves_to_loopback_addresses() -> None:
    """localhost resolves, and the target keeps the checked addresses to connect to."""
    target = await resolve_target("http://localhost:8080/")
    assert target.addresses
    assert set(target.addresses) <= {"127.0.0.1", "::1"}


@pytest.mark.parametrize(
    "url",
    ["http://10.1.2.3/", "http://example.com/", "http://no-such-host.invalid/", "http://0.0.0.0:8080/"],
)
async def test_run_load_refuses_non_loopback_targets_before_sending(url: str) -> None:
    """An address or a name that is not (or not known to be) loopback fails fast with option "url"."""
    started = time.perf_counter()
    with pytest.raises(LoadInputError) as info:
        await run_load(url, rps=10, duration=1)
    assert info.value.option == "url"
    assert time.perf_counter() - started < 5.5
