"""TLS at HAProxy's front: the certificate check, the configuration, and the runtime payload (real openssl, real HAProxy)."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.haproxy.config import HaproxyConfig, render
from gapless.haproxy.runtime import run_one, run_payload
from gapless.haproxy.tls import TlsError, TlsFiles, bundle, payload_lines
from tests.haproxy.binary import require_haproxy
from tests.haproxy.certs import make_cert, served_subject, trust


@given(st.text(alphabet=st.sampled_from("ab-\n\r \t"), max_size=200))
def test_payload_lines_have_no_blank_line(text: str) -> None:
    """A runtime payload never holds an empty or blank line (it would end the payload early) nor a CR."""
    out = payload_lines(text)
    assert out.endswith("\n")
    assert "\r" not in out
    lines = out[:-1].split("\n")
    assert all(line.strip() for line in lines) or out == "\n"
    assert payload_lines(out) == out


@given(st.text(alphabet=st.sampled_from("ab-\n\r "), max_size=80))
def test_run_payload_refuses_bad_payloads_before_connecting(text: str) -> None:
    """A payload with a blank line or a CR is refused with ValueError; nothing is sent (no socket exists)."""
    lines = text.rstrip("\n").split("\n")
    bad = not text.strip() or any(not line.strip() or "\r" in line for line in lines)
    if not bad:
        return
    with pytest.raises(ValueError, match="payload"):
        asyncio.run(run_payload(Path("/nonexistent/socket"), "set ssl cert /x.pem", text))


def test_bundle_names_the_bad_file(tmp_path: Path) -> None:
    """Missing, unreadable, not PEM, or a key of another certificate: TlsError naming certFile or keyFile."""
    cert, key = make_cert(tmp_path, "a")
    other_cert, other_key = make_cert(tmp_path, "b")
    text = bundle(TlsFiles(str(cert), str(key)))
    assert "BEGIN CERTIFICATE" in text
    assert "PRIVATE KEY" in text
    assert "\n\n" not in text
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.read_bytes())
    locked.chmod(0)
    cases = [
        (TlsFiles(str(tmp_path / "none.crt"), str(key)), "certFile", "cannot read"),
        (TlsFiles(str(key), str(key)), "certFile", "no PEM block"),
        (TlsFiles(str(junk), str(key)), "certFile", "not a valid PEM certificate"),
        (TlsFiles(str(cert), str(tmp_path / "none.key")), "keyFile", "cannot read"),
        (TlsFiles(str(cert), str(cert)), "keyFile", "no PEM block"),
        (TlsFiles(str(cert), str(other_key)), "keyFile", "does not belong to the certificate"),
        (TlsFiles(str(other_cert), str(key)), "keyFile", "does not belong to the certificate"),
    ]
    if os.geteuid() != 0:  # root reads any file
        cases.append((TlsFiles(str(cert), str(locked)), "keyFile", "cannot read"))
    for files, field, message in cases:
        with pytest.raises(TlsError, match=message) as info:
            bundle(files)
        assert info.value.field == field, (files, info.value)


def test_tls_configuration_is_valid_haproxy(tmp_path: Path) -> None:
    """The TLS front (crt, ALPN h2 and http/1.1, X-Forwarded-Proto https) passes `haproxy -c`."""
    cert, key = make_cert(tmp_path, "a")
    pem = tmp_path / "front.pem"
    pem.write_text(bundle(TlsFiles(str(cert), str(key))))
    text = render(
        HaproxyConfig(
            rollout="web", listen="127.0.0.1:8443", runtime_socket="unix@x.sock", tls_bundle=str(pem)
        )
    )
    assert f"ssl crt {pem} alpn h2,http/1.1" in text
    assert "X-Forwarded-Proto https" in text
    cfg = tmp_path / "h.cfg"
    cfg.write_text(text)
    done = subprocess.run(
        [require_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(ValueError, match="not usable"):
        render(HaproxyConfig(rollout="w", listen="127.0.0.1:1", runtime_socket="s", tls_bundle="rel.pem"))


async def test_certificate_swapped_through_the_runtime_api(tmp_path: Path) -> None:
    """`set ssl cert` + `commit ssl cert` with gapless's payload: the next handshake gets the new certificate."""
    from tests.ports import free_port

    a_cert, a_key = make_cert(tmp_path, "a", common_name="first")
    b_cert, b_key = make_cert(tmp_path, "b", common_name="second")
    pem = tmp_path / "front.pem"
    pem.write_text(bundle(TlsFiles(str(a_cert), str(a_key))))
    port = free_port()
    cfg = tmp_path / "h.cfg"
    cfg.write_text(
        render(
            HaproxyConfig(
                rollout="web",
                listen=f"127.0.0.1:{port}",
                runtime_socket="unix@h.sock",
                tls_bundle=str(pem),
                open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            )
        )
    )
    proc = subprocess.Popen(
        [require_haproxy(), "-W", "-db", "-f", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sock = tmp_path / "h.sock"
        ctx = trust(a_cert, b_cert)
        first = ""
        for _ in range(250):
            try:
                first = await asyncio.to_thread(served_subject, port, ctx)
                break
            except OSError:
                await asyncio.sleep(0.02)
        assert first == "first"
        staged = await run_payload(sock, f"set ssl cert {pem}", bundle(TlsFiles(str(b_cert), str(b_key))))
        assert "Transaction" in staged, staged
        committed = await run_one(sock, f"commit ssl cert {pem}")
        assert "Success" in committed, committed
        assert await asyncio.to_thread(served_subject, port, ctx) == "second"
    finally:
        proc.kill()
        proc.wait()
