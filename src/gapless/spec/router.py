"""``spec.router``: which data plane serves a rollout, and how it defends itself.

``type`` picks the data plane: ``builtin`` (gapless's own router, the default: nothing to install) or
``haproxy`` (HAProxy >= 2.6 driven through its runtime API, ``binary`` naming the executable, else
``haproxy`` on PATH; see docs/haproxy.md). The limits below apply to both where HAProxy has an
equivalent; the ejection settings are the built-in router's alone.

Every field has a default that suits a service on loopback or behind a proxy; the README's "What the
router defends against" explains each. The values are strict: a count is an integer (never ``true``), a
time a finite positive number of seconds, so a typo cannot turn a defence off. The controller turns
this block into the router's ``Limits`` (``gapless.router.config``), which keeps the same defaults.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from gapless.spec.base import SpecModel

__all__ = ["DEFAULT_LATENCY_SAMPLING", "RouterSettings", "RouterTls"]

DEFAULT_LATENCY_SAMPLING = 10
"""HAProxy logs one request in this many for latency unless ``spec.router.latencySampling`` says."""


def _seconds(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number of seconds")  # noqa: TRY004 -- pydantic reports only ValueError
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def _count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")  # noqa: TRY004 -- pydantic reports only ValueError
    return value


def _absolute(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith("/"):
        raise ValueError("must be an absolute path (the control plane reads it, from its own directory)")
    return value


AbsolutePath = Annotated[str, BeforeValidator(_absolute), Field(min_length=1, max_length=4096)]

Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=86400)]
Count = Annotated[int, BeforeValidator(_count), Field(gt=0, le=1_000_000)]


class RouterTls(SpecModel):
    """The front's certificate and key (PEM files); HAProxy then speaks HTTPS with ALPN h2 and http/1.1."""

    cert_file: AbsolutePath
    """The certificate, followed by its chain if any."""
    key_file: AbsolutePath
    """The certificate's private key (not encrypted)."""


class RouterSettings(SpecModel):
    """The router's kind, timeouts and limits; see the README for what each defends against."""

    type: Literal["builtin", "haproxy"] = "builtin"
    """The data plane: gapless's built-in router, or HAProxy driven through its runtime API."""
    binary: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """With ``type: haproxy``: the HAProxy executable (a path or a name on PATH); default ``haproxy``."""
    tls: RouterTls | None = None
    """With ``type: haproxy``: terminate TLS at the front (HTTP/2 and HTTP/1.1); a changed file applies live."""
    latency_sampling: Count = DEFAULT_LATENCY_SAMPLING
    """With ``type: haproxy``: log one request in N, picked at random, for the latency histograms
    (1: every request). Counts always come from HAProxy's stats; a log line per request costs HAProxy
    about a third of its CPU per request, see docs/haproxy.md."""

    header_timeout_seconds: Seconds = 10.0
    """To start a request head after connecting, and to finish it once started (slowloris)."""
    idle_timeout_seconds: Seconds = 60.0
    """A kept-alive client connection waiting for its next request."""
    max_connections: Count = 10_000
    """Client connections at once (lowered to what the open-file limit allows)."""
    max_header_bytes: Annotated[int, BeforeValidator(_count), Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    """Bytes of one request head; a bigger one is answered 431."""
    backend_timeout_seconds: Seconds = 30.0
    """For an instance to start its response; then 504, or a retry elsewhere for an idempotent request."""
    eject_after_failures: Count = 3
    """Timeouts or connection failures in a row that take an instance out of the balancer."""
    ejection_seconds: Seconds = 10.0
    """How long the first ejection lasts; each ejection in a row doubles it (at most 300 s)."""
