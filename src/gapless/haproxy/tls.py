"""The front's certificate and key for HAProxy: checked before anything starts, joined into one PEM.

HAProxy reads a certificate and its key from one PEM file (``crt``), and its runtime API replaces that
file's contents in memory (``set ssl cert`` then ``commit ssl cert``): new handshakes use the new
certificate, connections already open keep theirs, nothing reloads. So gapless keeps one bundle per
router in its state directory under a fixed name and sends changed contents through the runtime API.

The files are checked with OpenSSL through Python's ``ssl`` module, the same library HAProxy uses: the
certificate must parse, the key must parse and belong to the certificate. Blank lines are dropped from
the bundle because the runtime API ends a multi-line payload at the first empty line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsError", "TlsFiles", "bundle", "payload_lines"]

MAX_FILE_BYTES = 1024 * 1024
"""A certificate chain or key larger than this is refused (HAProxy's runtime payload is bounded too)."""


class TlsError(ValueError):
    """A certificate or key file gapless cannot use; ``field`` names it (``certFile`` or ``keyFile``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TlsFiles:
    """Where the front's certificate (chain) and private key are, PEM."""

    cert_file: str
    key_file: str


def _read(path: str, field: str, marker: str) -> str:
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise TlsError(field, f"cannot read {path}: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise TlsError(field, f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise TlsError(field, f"{path} is not a PEM file (not ASCII text)") from e
    if marker not in text:
        raise TlsError(field, f"{path} holds no PEM block with {marker!r}")
    return text


def bundle(files: TlsFiles) -> str:
    """The certificate and key of ``files`` as one PEM text, after OpenSSL accepted them as a pair."""
    cert = _read(files.cert_file, "certFile", "-----BEGIN CERTIFICATE-----")
    key = _read(files.key_file, "keyFile", "PRIVATE KEY-----")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_verify_locations(cadata=cert)
    except (ssl.SSLError, ValueError) as e:
        raise TlsError("certFile", f"{files.cert_file} is not a valid PEM certificate: {e}") from e
    try:
        ctx.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as e:
        reason = (
            "does not belong to the certificate" if "MISMATCH" in str(e) else "is not a usable private key"
        )
        raise TlsError("keyFile", f"{files.key_file} {reason} ({e})") from e
    except OSError as e:
        raise TlsError("keyFile", f"cannot read {files.key_file}: {e.strerror or e}") from e
    return payload_lines(cert.rstrip("\n") + "\n" + key.rstrip("\n") + "\n")


def payload_lines(text: str) -> str:
    """``text`` without blank lines and carriage returns, ending in one newline (a runtime payload)."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    return "\n".join(line for line in lines if line.strip()) + "\n"
