"""Where the ``flags`` verbs look for their flag service, and how they name a key in a request path."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.flags_client import DEFAULT_URL, FlagsError, api_path, candidates


def test_an_explicit_url_is_the_only_place_tried(tmp_path: Path) -> None:
    """--url wins over the environment and the state directory; the variable over the state directory."""
    env = {"GAPLESS_FLAGS_URL": "http://env:1"}
    (tmp_path / "flags.url").write_text("http://written:2\n")
    assert [(e.source, e.url) for e in candidates("http://opt:3/", tmp_path, env)] == [
        ("--url", "http://opt:3")
    ]
    assert [(e.source, e.url) for e in candidates(None, tmp_path, env)] == [
        ("$GAPLESS_FLAGS_URL", "http://env:1")
    ]


def test_without_one_the_control_plane_then_flags_serve_then_the_default(tmp_path: Path) -> None:
    """The control plane's socket first, then the URL `flags serve` wrote, then the default address."""
    (tmp_path / "flags.url").write_text("http://127.0.0.1:9000\n")
    found = candidates(None, tmp_path, {})
    assert [e.socket for e in found] == [tmp_path / "api.sock", None, None]
    assert [e.url for e in found[1:]] == ["http://127.0.0.1:9000", DEFAULT_URL]
    assert found[0].prefix == "/flags"
    assert found[1].prefix == ""


def test_the_default_is_tried_once(tmp_path: Path) -> None:
    """When `flags serve` runs on the default address, that address is not listed twice."""
    (tmp_path / "flags.url").write_text(DEFAULT_URL + "\n")
    assert [e.url for e in candidates(None, tmp_path, {})] == ["", DEFAULT_URL]


@pytest.mark.parametrize("url", ["127.0.0.1:8787", "ftp://h/", "http://", "http://h:99999", "http://h:x"])
def test_a_malformed_url_is_bad_input(url: str, tmp_path: Path) -> None:
    """A URL that is not http(s)://HOST[:PORT] is refused (exit 2) before anything is sent."""
    with pytest.raises(FlagsError) as e:
        candidates(url, tmp_path, {})
    assert e.value.code == 2
    assert "--url" in str(e.value)


def test_a_url_path_is_kept_as_the_prefix(tmp_path: Path) -> None:
    """A service behind a path (the dashboard address's /flags) is reached below it."""
    [endpoint] = candidates("http://127.0.0.1:8600/flags/", tmp_path, {})
    assert endpoint.prefix == "/flags"


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4))
def test_each_part_of_a_path_names_only_itself(parts: list[str]) -> None:
    """Keys are quoted: no part adds a segment, a query or a fragment, and each reads back as given."""
    path = api_path(*parts)
    assert "?" not in path
    assert "#" not in path
    assert [unquote(p) for p in path.removeprefix("/api/v1/").split("/")] == parts
