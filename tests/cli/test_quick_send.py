"""The quick path sends a command before it imports what reading the answer needs.

Rules: (1) its name quoting is ``urllib.parse.quote(name, safe="")`` and its file names are the control
plane's; (2) the request it writes is a well-formed HTTP/1.1 request (h11 as the oracle) carrying the
rollout name, the token and the body unchanged, for any name and token; (3) against a real control
plane, every answer (success, unknown rollout, a refused command, a wrong token) gives the same line
and exit code on the quick path as on the typer path, which speaks through ``SyncClient``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import h11
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli import quick
from gapless.core.files import API_SOCKET, TOKEN_FILE
from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def test_file_names_are_the_control_planes() -> None:
    assert (quick.API_SOCKET, quick.TOKEN_FILE) == (API_SOCKET, TOKEN_FILE)


@given(NAMES)
def test_quote_is_urllib_quote(name: str) -> None:
    assert quick.quote(name) == quote(name, safe="")


@given(st.text(max_size=20))
def test_quote_takes_any_text_even_lone_surrogates(name: str) -> None:
    quoted = quick.quote(name)
    assert quoted.isascii()
    assert unquote(quoted, errors="surrogateescape") == os.fsdecode(name.encode("utf-8", "surrogateescape"))


@given(
    name=NAMES,
    token=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
    verb=st.sampled_from(["promote", "abort", "undo", "pause", "resume"]),
    body=st.sampled_from(['{"full": true}', '{"full": false}', "{}", '{"toRevision": 12}']),
)
def test_the_request_is_well_formed_http(name: str, token: str, verb: str, body: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        Path(d, TOKEN_FILE).write_text(token + "\n")
        data = quick.request_bytes(d, verb, name, body)
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert request.method == b"POST"
    assert unquote(request.target.decode()) == f"/api/v1/rollouts/{name}/{verb}"
    headers = dict(request.headers)
    assert headers[b"authorization"] == f"Bearer {token}".strip().encode()  # h11 strips trailing space
    assert headers[b"connection"] == b"close"
    payload = server.next_event()
    assert isinstance(payload, h11.Data)
    assert json.loads(payload.data) == json.loads(body)
    assert isinstance(server.next_event(), h11.EndOfMessage)


def test_without_a_token_file_the_request_has_an_empty_token(tmp_path: Path) -> None:
    server = h11.Connection(h11.SERVER)
    server.receive_data(quick.request_bytes(str(tmp_path), "abort", "web", "{}"))
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert dict(request.headers)[b"authorization"] == b"Bearer"  # h11 strips the trailing space


def both(g: Gapless, *argv: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Run ``argv`` through the quick path and through typer against the same control plane."""
    runs = []
    for entry in ("gapless.cli.quick", "gapless.cli.main"):
        code = f"import sys; sys.argv[0] = 'gapless'; from {entry} import main; main()"
        runs.append(
            subprocess.run(
                [sys.executable, "-c", code, *argv, "--state-dir", str(g.state_dir)],
                capture_output=True,
                text=True,
                check=False,
                env=g.env() | {"COLUMNS": "200"},
                timeout=60,
            )
        )
    return runs[0], runs[1]


def test_both_paths_answer_alike_on_a_real_control_plane(g: Gapless) -> None:
    doc = rollout_doc("web", free_port(), "v1", replicas=1)
    up = g.cli("up", "-f", str(g.write(doc)))
    assert up.returncode == 0, up.stderr
    # Refused in the rollout's state (409): a rolling update has nothing to promote or abort.
    for verb in ("promote", "abort"):
        fast, slow = both(g, verb, "web")
        assert fast.returncode == slow.returncode == 1
        assert fast.stderr == slow.stderr
        assert "rolling update" in fast.stderr
    # Unknown rollout (404): a usage error, exit 2.
    fast, slow = both(g, "abort", "nope")
    assert fast.returncode == slow.returncode == 2
    assert fast.stderr == slow.stderr
    assert "not found" in fast.stderr
    # Success, twice: the second pause changes nothing and says so.
    for expected in ("web paused", "web was already paused"):
        fast = both(g, "pause", "web")[0]
        assert fast.returncode == 0, fast.stderr
        assert fast.stderr.strip() == expected
    fast, slow = both(g, "resume", "web")
    assert (fast.returncode, slow.returncode) == (0, 0)
    assert fast.stderr.strip() == "web resumed"
    assert slow.stderr.strip() == "web was already resumed"
    fast, slow = both(g, "undo", "web")
    assert fast.returncode == slow.returncode == 1
    assert fast.stderr == slow.stderr
    assert "no earlier revision" in fast.stderr
    # A wrong token (401): exit 2 on both paths, nothing changed.
    token = g.state_dir / TOKEN_FILE
    real = token.read_text()
    token.write_text("wrong\n")
    try:
        fast, slow = both(g, "pause", "web")
    finally:
        token.write_text(real)
    assert fast.returncode == slow.returncode == 2
    assert fast.stderr == slow.stderr
    assert "token" in fast.stderr


def test_an_answer_that_comes_late_is_waited_for(tmp_path: Path) -> None:
    """The answer is read only after the imports; a control plane slower than them is waited for.

    The peer here is a plain unix socket server standing in for the control plane (a test double at
    the socket), so the delay is exact.
    """
    import socket
    import threading

    path = tmp_path / API_SOCKET
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    body = b'{"name": "web", "revision": 3, "changed": true, "from": 1}'

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            time.sleep(0.5)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )

    t = threading.Thread(target=answer)
    t.start()
    try:
        assert quick.send(str(tmp_path), "undo", "web", "{}") == json.loads(body)
    finally:
        t.join(10)
        server.close()
