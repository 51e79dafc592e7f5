"""Test certificates made with the openssl command (argv, no shell), and clients that count failures."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


def make_cert(directory: Path, name: str, common_name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key: ``NAME.crt``, ``NAME.key``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    argv = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={common_name}",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return cert, key


def trust(*certs: Path) -> ssl.SSLContext:
    """A client context trusting exactly these self-signed certificates."""
    ctx = ssl.create_default_context()
    for c in certs:
        ctx.load_verify_locations(cafile=str(c))
    return ctx


def served_subject(port: int, ctx: ssl.SSLContext) -> str:
    """The common name of the certificate a new TLS handshake on ``127.0.0.1:port`` gets."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        peer = tls.getpeercert() or {}
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


@dataclass
class ClientReport:
    ok: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    protocols: Counter[str] = field(default_factory=Counter)


class HttpsLoad:
    """HTTPS requests at a steady rate over kept-alive HTTP/1.1 connections (httpx) until stopped."""

    def __init__(self, url: str, ctx: ssl.SSLContext, rps: float = 100) -> None:
        self.report = ClientReport()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(url, ctx, rps))

    async def _one(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            r = await client.get(url)
        except httpx.HTTPError as e:
            self.report.failed += 1
            self.report.failures[type(e).__name__] += 1
            return
        if r.status_code != 200:
            self.report.failed += 1
            self.report.failures[str(r.status_code)] += 1
            return
        self.report.ok += 1
        self.report.versions[r.headers.get("x-version", "")] += 1
        self.report.protocols[r.http_version] += 1

    async def _run(self, url: str, ctx: ssl.SSLContext, rps: float) -> None:
        async with httpx.AsyncClient(verify=ctx, timeout=10) as client, asyncio.TaskGroup() as tg:
            while not self._stop.is_set():
                tg.create_task(self._one(client, url))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1 / rps)

    async def stop(self) -> ClientReport:
        self._stop.set()
        await self._task
        return self.report


class CurlH2Load:
    """HTTP/2 requests by curl (nghttp2), 20 per connection, one curl after another until stopped."""

    BATCH = 20

    def __init__(self, url: str, cafile: Path) -> None:
        self.report = ClientReport()
        self._stop = asyncio.Event()
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl not installed")
        out = "%{http_code} %{http_version} %header{x-version}\\n"
        self._argv = [curl, "--http2", "--silent", "--cacert", str(cafile), "--max-time", "10"]
        for _ in range(self.BATCH):
            self._argv += ["--output", "/dev/null", "--write-out", out, url]
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            proc = await asyncio.create_subprocess_exec(
                *self._argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            lines = out.decode().splitlines()
            for line in lines:
                code, version, served = ([*line.split(" "), "", ""])[:3]
                if code == "200":
                    self.report.ok += 1
                    self.report.versions[served] += 1
                    self.report.protocols[version] += 1
                else:
                    self.report.failed += 1
                    self.report.failures[f"status {code}"] += 1
            missing = self.BATCH - len(lines)
            bad_lines = sum(not line.startswith("200 ") for line in lines)
            if missing > 0 or (proc.returncode != 0 and not bad_lines):
                self.report.failed += max(1, missing)
                self.report.failures[f"curl exit {proc.returncode}"] += max(1, missing)

    async def stop(self) -> ClientReport:
        self._stop.set()
        await self._task
        return self.report
