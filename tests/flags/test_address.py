"""Flag service addresses (``http(s)://`` URLs and ``unix:PATH[:BASE]`` sockets) and ``HttpTransport.from_env``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.flags_client import Endpoint, FlagsError, candidates
from gapless.flags.address import FlagServiceAddress, parse_address, unix_address
from gapless.flags.transport import HttpTransport


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        (
            "unix:/srv/a/.gapless/api.sock:/flags",
            FlagServiceAddress("http://gapless/flags", "/srv/a/.gapless/api.sock", "/flags"),
        ),
        ("unix:/run/flags.sock", FlagServiceAddress("http://gapless", "/run/flags.sock", "")),
        ("unix:/run/flags.sock:/", FlagServiceAddress("http://gapless", "/run/flags.sock", "")),
        ("unix:rel/api.sock:/a/b/", FlagServiceAddress("http://gapless/a/b", "rel/api.sock", "/a/b")),
        ("http://127.0.0.1:8787/", FlagServiceAddress("http://127.0.0.1:8787", None, "")),
        ("https://flags.example/base", FlagServiceAddress("https://flags.example/base", None, "/base")),
    ],
)
def test_addresses_parse_into_a_url_and_a_socket(address: str, parsed: FlagServiceAddress) -> None:
    """A socket address gives the socket and the mount path; a URL is kept, without its trailing slash."""
    assert parse_address(address) == parsed


@pytest.mark.parametrize(
    "address",
    [
        "unix:",
        "unix::/flags",
        "unix:/a:b.sock:/flags",
        "unix:/a.sock:/fl ags",
        "ftp://x",
        "http://",
        "127.0.0.1:8787",
        "http://h:99999",
    ],
)
def test_malformed_addresses_are_refused_naming_the_source(address: str) -> None:
    """Each is a ValueError that names where the address came from."""
    with pytest.raises(ValueError, match=r"^\$GAPLESS_FLAGS_URL "):
        parse_address(address, "$GAPLESS_FLAGS_URL")


@given(
    st.lists(st.text("abcxyz0123-_.", min_size=1, max_size=8), min_size=1, max_size=4),
    st.lists(st.text("abcxyz0123-_.", min_size=1, max_size=8), max_size=3),
)
def test_a_written_socket_address_parses_back(parts: list[str], base_parts: list[str]) -> None:
    """``unix_address`` and ``parse_address`` agree for any socket path and mount path without ':'."""
    sock = "/" + "/".join(parts)
    base = "".join("/" + p for p in base_parts)
    parsed = parse_address(unix_address(sock, base))
    assert (parsed.socket, parsed.base, parsed.url) == (sock, base, f"http://gapless{base}")


def test_unix_address_refuses_a_socket_path_with_a_colon() -> None:
    """A path with ':' cannot be written unambiguously: the control plane then tells instances nothing."""
    with pytest.raises(ValueError, match="cannot contain ':'"):
        unix_address("/srv/a:b/api.sock", "/flags")


def test_the_flags_verbs_take_a_socket_address_too(tmp_path: Path) -> None:
    """``$GAPLESS_FLAGS_URL=unix:...`` names the socket and mount path; a bad one is exit 2 naming it."""
    env = {"GAPLESS_FLAGS_URL": "unix:/srv/x/api.sock:/flags"}
    [endpoint] = candidates(None, tmp_path, env)
    assert endpoint == Endpoint("$GAPLESS_FLAGS_URL", socket=Path("/srv/x/api.sock"), base="/flags")
    assert endpoint.prefix == "/flags"
    [endpoint] = candidates("unix:/run/f.sock", tmp_path, {})
    assert (endpoint.socket, endpoint.prefix) == (Path("/run/f.sock"), "")
    with pytest.raises(FlagsError) as e:
        candidates(None, tmp_path, {"GAPLESS_FLAGS_URL": "unix:"})
    assert e.value.code == 2
    assert str(e.value).startswith("$GAPLESS_FLAGS_URL 'unix:'")


def _token_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_from_env_reads_the_address_and_the_token_file(tmp_path: Path) -> None:
    """The transport goes to the socket of ``$GAPLESS_FLAGS_URL`` with the token of the named file."""
    token = _token_file(tmp_path / "t", "gfl_abc_secret\n")
    t = HttpTransport.from_env(
        {"GAPLESS_FLAGS_URL": "unix:/s/api.sock:/flags", "GAPLESS_FLAGS_SDK_TOKEN_FILE": str(token)}
    )
    assert t is not None
    assert (t.url, t.socket) == ("http://gapless/flags", "/s/api.sock")
    assert t._headers == {"Authorization": "Bearer gfl_abc_secret"}
    t = HttpTransport.from_env({"GAPLESS_FLAGS_URL": "http://h:1", "GAPLESS_FLAGS_SDK_TOKEN": "gfl_a_b"})
    assert t is not None
    assert (t.url, t.socket, t._headers["Authorization"]) == ("http://h:1", None, "Bearer gfl_a_b")
    assert HttpTransport.from_env({}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GAPLESS_FLAGS_URL": "unix:/s.sock"}, r"no SDK token is: set \$GAPLESS_FLAGS_SDK_TOKEN_FILE"),
        (
            {"GAPLESS_FLAGS_URL": "gopher://x", "GAPLESS_FLAGS_SDK_TOKEN": "t"},
            r"^\$GAPLESS_FLAGS_URL 'gopher://x'",
        ),
        (
            {"GAPLESS_FLAGS_URL": "unix:/s.sock", "GAPLESS_FLAGS_SDK_TOKEN_FILE": "/nonexistent/token"},
            r"^\$GAPLESS_FLAGS_SDK_TOKEN_FILE '/nonexistent/token': cannot read the SDK token",
        ),
    ],
)
def test_from_env_refuses_an_unusable_configuration_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    """No token, a bad URL, a token file that is not there: ValueError naming the variable."""
    with pytest.raises(ValueError, match=message):
        HttpTransport.from_env(env)


def test_from_env_refuses_an_empty_token_file_and_warns_of_one_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty file is an error; a token file readable by others works but is logged."""
    env = {
        "GAPLESS_FLAGS_URL": "unix:/s.sock",
        "GAPLESS_FLAGS_SDK_TOKEN_FILE": str(_token_file(tmp_path / "e", "")),
    }
    with pytest.raises(ValueError, match="the file is empty"):
        HttpTransport.from_env(env)
    env["GAPLESS_FLAGS_SDK_TOKEN_FILE"] = str(_token_file(tmp_path / "o", "gfl_a_b", 0o644))
    with caplog.at_level(logging.WARNING, logger="gapless.flags.transport"):
        assert HttpTransport.from_env(env) is not None
    assert "readable by others (mode 644)" in caplog.text
