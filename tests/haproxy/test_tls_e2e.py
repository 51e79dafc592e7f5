"""HTTPS and HTTP/2 through HAProxy end to end: a canary and a certificate change under load, 0 failed requests."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Gapless, api, wait_for
from tests.haproxy.certs import CurlH2Load, HttpsLoad, make_cert, served_subject, trust
from tests.haproxy.test_e2e import at_step, canary, haproxy_doc, haproxy_groups
from tests.ports import free_port

pytestmark = pytest.mark.slow


def tls_doc(name: str, port: int, version: str, cert: Path, key: Path, **kw: Any) -> dict[str, Any]:
    doc = haproxy_doc(name, port, version, **kw)
    doc["spec"]["router"]["tls"] = {"certFile": str(cert), "keyFile": str(key)}
    return doc


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path``'s contents atomically, as a certificate renewal tool does."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def test_https_and_h2_canary_and_certificate_change(g: Gapless, tmp_path: Path) -> None:
    """An HTTPS and an h2 client see 0 failed requests over a canary and a certificate change, which applies without a reload."""
    old_cert, old_key = make_cert(tmp_path, "old", common_name="first")
    new_cert, new_key = make_cert(tmp_path, "new", common_name="second")
    cert, key = tmp_path / "front.crt", tmp_path / "front.key"
    replace_file(cert, old_cert.read_bytes())
    replace_file(key, old_key.read_bytes())
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(old_cert.read_bytes() + new_cert.read_bytes())
    ctx = trust(old_cert, new_cert)
    port = free_port()
    url = f"https://localhost:{port}/"
    steps = [{"setWeight": 30}, {"pause": {}}]
    doc = tls_doc("t", port, "v1", cert, key, strategy=canary(steps))
    code, out, err = await g.acli("up", "-f", str(g.write(doc)))
    assert code == 0, out + err
    pem = g.state_dir / "routers" / "t.haproxy.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    assert await asyncio.to_thread(served_subject, port, ctx) == "first"
    https = HttpsLoad(url, ctx, rps=100)
    h2 = CurlH2Load(url, cafile)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(tls_doc("t", port, "v2", cert, key, strategy=canary(steps))))
    )
    assert code == 0, out + err
    await wait_for(g, "t", at_step(1))
    await asyncio.sleep(3)
    groups = haproxy_groups(g, "t")
    [master] = groups
    info_before = await _worker_pid(g)
    # The renewal: both files replaced; the next pass sends the new bundle through the runtime API.
    replace_file(key, new_key.read_bytes())
    replace_file(cert, new_cert.read_bytes())
    started = time.monotonic()
    while await asyncio.to_thread(served_subject, port, ctx) != "second":
        assert time.monotonic() - started < 10, "the new certificate was not served within 10 s"
        await asyncio.sleep(0.05)
    print(
        f"certificate change: new handshakes get the new certificate after {time.monotonic() - started:.2f} s"
    )
    assert await _worker_pid(g) == info_before, "no reload: the same worker serves"
    assert haproxy_groups(g, "t") == {master}
    await asyncio.sleep(2)
    await api(g, "POST", "/api/v1/rollouts/t/promote", {})
    await wait_for(g, "t", lambda st: st["phase"] == "Healthy", timeout=60)
    await asyncio.sleep(1)
    r1, r2 = await https.stop(), await h2.stop()
    print(
        f"https: {r1.ok} ok, {r1.failed} failed {dict(r1.failures)} {dict(r1.versions)} {dict(r1.protocols)}"
    )
    print(f"h2: {r2.ok} ok, {r2.failed} failed {dict(r2.failures)} {dict(r2.versions)} {dict(r2.protocols)}")
    assert r1.failed == 0, r1.failures
    assert r2.failed == 0, r2.failures
    assert r1.ok > 500
    assert r2.ok > 100
    assert set(r1.protocols) == {"HTTP/1.1"}
    assert set(r2.protocols) == {"2"}, "curl negotiated HTTP/2 through ALPN"
    for r in (r1, r2):
        assert r.versions["v1"] > 0
        assert r.versions["v2"] > 0
    assert pem.read_text().startswith(new_cert.read_text().strip().splitlines()[0])


async def _worker_pid(g: Gapless) -> str:
    from gapless.haproxy.runtime import run_one

    info = await run_one(g.state_dir / "routers" / "t.haproxy.sock", "show info")
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Pid:"))


def test_unusable_certificate_is_refused_and_nothing_starts(g: Gapless, tmp_path: Path) -> None:
    """A missing, invalid or mismatched certificate or key: exit 2 naming the field, no process started."""
    cert, key = make_cert(tmp_path, "a")
    _, other_key = make_cert(tmp_path, "b")
    junk = tmp_path / "junk.crt"
    junk.write_text("hello\n")
    port = free_port()
    cases = [
        (tmp_path / "nowhere.crt", key, "spec.router.tls.certFile", "cannot read"),
        (junk, key, "spec.router.tls.certFile", "no PEM block"),
        (cert, tmp_path / "nowhere.key", "spec.router.tls.keyFile", "cannot read"),
        (cert, other_key, "spec.router.tls.keyFile", "does not belong to the certificate"),
    ]
    for c, k, field, message in cases:
        done = g.cli(
            "up", "-f", str(g.write(tls_doc("bad", port, "v1", c, k, replicas=1), filename="bad.yaml"))
        )
        assert done.returncode == 2, (c, k, done.stdout, done.stderr)
        out = done.stdout + done.stderr
        assert field in out, (field, out)
        assert message in out, (message, out)
        assert not [p for p in g.processes() if p.role in ("instance", "router")]
    doc = tls_doc("bad", port, "v1", cert, key, replicas=1)
    doc["spec"]["router"]["type"] = "builtin"
    del doc["spec"]["router"]["binary"]
    done = g.cli("up", "-f", str(g.write(doc, filename="bad.yaml")))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "spec.router.tls" in done.stdout + done.stderr
    doc = tls_doc("bad", port, "v1", Path("relative.crt"), key, replicas=1)
    done = g.cli("up", "-f", str(g.write(doc, filename="bad.yaml")))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "spec.router.tls.certFile" in done.stdout + done.stderr
    assert "absolute path" in done.stdout + done.stderr
    assert not (g.state_dir / "routers" / "bad.haproxy.json").exists()
