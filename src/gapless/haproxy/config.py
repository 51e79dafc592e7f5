"""HAProxy's configuration for one rollout, generated from gapless's own (pure).

One process per rollout, as with the built-in router: a master-worker HAProxy with one frontend on the
rollout's listen address and one backend named after the rollout. Servers are named
``<revision>.<instance>`` so that ``show stat`` maps every server to its revision without any other
record. HAProxy's health checks stay off (gapless's probes are the one source of truth: a server is in
the backend exactly while gapless says its instance is ready). The configuration holds the servers in
force when HAProxy starts, so a restarted HAProxy serves the current split at once; from then on every
change goes through the runtime API (``gapless.controller.haproxy``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gapless.haproxy.rules import SLOTS, FrontRules, frontend_lines, slot_backend
from gapless.router.config import Backend, Limits

__all__ = [
    "FRONTEND",
    "LOG_FORMAT",
    "MAX_LINE",
    "MAX_SAMPLING",
    "RING",
    "RING_BYTES",
    "HaproxyConfig",
    "ServerNameError",
    "backend_name",
    "bind_address",
    "parse_server_name",
    "render",
    "server_name",
]

FRONTEND = "gapless"
"""The one frontend's name."""

LOG_FORMAT = "gl2 %[sc0_inc_gpc0] %s %ST %Ta %Tr"
"""The request log's ``log-format``: a version tag, the line's sequence number, the server, the status,
then the timers in ms (``%Ta`` the request's active time, ``%Tr`` the server's time to the response head).

The sequence number is the frontend's one-entry stick table's counter, incremented as the line is built
(at the request's end), so the lines of one worker are numbered 1, 2, 3, ... in about the order they
reach the ring: a number the reader never sees is a line it lost, whether HAProxy could not write it
(the reader was too slow) or the ring overwrote it before it was read (``gapless.haproxy.logs``)."""

MAX_LINE = 512
"""Bytes of one request log line (the ring's ``maxlen``, HAProxy's ``len``); longer ones are malformed."""

RING = "gl"
"""The ring buffer holding the request log, read with ``show events gl -w`` on the runtime socket."""

RING_BYTES = 1 << 20
"""The ring's size: about 25,000 lines, seconds of backlog at any rate one core serves when sampled."""

MAX_SAMPLING = 1_000_000
"""The largest N of "log one request in N"."""

_NAME = re.compile(r"[A-Za-z0-9_:-]+")
_INSTANCE = re.compile(r"[A-Za-z0-9_.:-]+")


class ServerNameError(ValueError):
    """A rollout, revision or instance name that HAProxy cannot carry."""


def backend_name(rollout: str) -> str:
    """The backend of ``rollout`` (HAProxy allows letters, digits, ``-_.:``)."""
    if not _INSTANCE.fullmatch(rollout):
        raise ServerNameError(f"rollout name {rollout!r} is not usable as an HAProxy backend name")
    return rollout


def server_name(backend: Backend) -> str:
    """``<revision>.<instance>``: the revision has no dot, so the first dot separates them."""
    if not _NAME.fullmatch(backend.revision):
        raise ServerNameError(f"revision {backend.revision!r} is not usable in an HAProxy server name")
    if not _INSTANCE.fullmatch(backend.id):
        raise ServerNameError(f"instance id {backend.id!r} is not usable in an HAProxy server name")
    return f"{backend.revision}.{backend.id}"


def parse_server_name(name: str) -> tuple[str, str] | None:
    """(revision, instance id) of a server named by ``server_name``; None for any other name."""
    revision, dot, instance = name.partition(".")
    if not dot or not _NAME.fullmatch(revision) or not _INSTANCE.fullmatch(instance):
        return None
    return revision, instance


def bind_address(listen: str) -> str:
    """HAProxy's spelling of a listen address: ``host:port``, an IPv6 host as ``ipv6@addr:port``."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return f"ipv6@{host[1:-1]}:{port}"
    return f"{host}:{port}"


def _seconds(value: float) -> str:
    """A timeout in milliseconds (HAProxy's unit suffix ``ms``), at least 1 ms."""
    return f"{max(1, math.ceil(value * 1000))}ms"


@dataclass(frozen=True)
class HaproxyConfig:
    """Everything the configuration file is made of."""

    rollout: str
    listen: str
    runtime_socket: str
    """The runtime socket as HAProxy reads it: an absolute path or ``unix@NAME`` relative to its directory."""
    limits: Limits = field(default_factory=Limits)
    servers: Mapping[str, tuple[Backend, int]] = field(default_factory=dict)
    """Server name -> (its backend, its weight)."""
    tls_bundle: str | None = None
    """With TLS at the front: the absolute path of the certificate-and-key PEM (``gapless.haproxy.tls``)."""
    rules: FrontRules = field(default_factory=FrontRules)
    """Header routes and the sticky key (``gapless.haproxy.rules``); none: every request split by weight."""
    map_file: str = ""
    """With ``rules``: the absolute path of the map holding bucket ranges and route targets."""
    slots: Mapping[str, int] = field(default_factory=dict)
    """With ``rules``: revision -> its slot backend."""
    request_log: bool = False
    """Whether the frontend logs one line per sampled request into the ring ``RING`` (``gapless.haproxy.logs``)."""
    ring_bytes: int = RING_BYTES
    """The ring's size in bytes."""
    log_sampling: int = 1
    """Log one request in this many, chosen at random per request (``spec.router.latencySampling``)."""
    open_files: int | None = None
    """HAProxy's hard limit of open files, if known: ``maxconn`` is lowered to fit two per connection."""

    def max_connections(self) -> int:
        """``limits.max_connections``, lowered to ``(open_files - 128) / 2`` as the built-in router does."""
        if self.open_files is None:
            return self.limits.max_connections
        return max(1, min(self.limits.max_connections, (self.open_files - 128) // 2))


def render(cfg: HaproxyConfig) -> str:
    """The configuration file's text; every server appears exactly once, in name order."""
    lim = cfg.limits
    # A request head must fit a buffer, less the space HAProxy reserves for rewriting headers.
    bufsize = max(16384, lim.max_header_bytes + 1024)
    lines = [
        "# Generated by gapless for the rollout's HAProxy data plane; changes go through the runtime API.",
        "global",
        "    master-worker",
        f"    stats socket {cfg.runtime_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 2m",
        f"    maxconn {cfg.max_connections()}",
        f"    tune.bufsize {bufsize}",
        "",
        *_ring_lines(cfg.request_log, cfg.ring_bytes),
        "defaults",
        "    mode http",
        "    option forwardfor",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 5s",
        f"    timeout client {_seconds(lim.idle_timeout)}",
        f"    timeout http-request {_seconds(lim.header_timeout)}",
        f"    timeout http-keep-alive {_seconds(lim.idle_timeout)}",
        f"    timeout server {_seconds(lim.backend_timeout)}",
        "",
        f"frontend {FRONTEND}",
        f"    bind {bind_address(cfg.listen)}{_tls(cfg.tls_bundle)}",
        f"    maxconn {cfg.max_connections()}",
        f"    http-request set-header X-Forwarded-Proto {'http' if cfg.tls_bundle is None else 'https'}",
        *_log_lines(cfg.request_log, cfg.log_sampling),
        *frontend_lines(cfg.rules, cfg.map_file, backend_name(cfg.rollout)),
        f"    default_backend {backend_name(cfg.rollout)}",
        "",
        f"backend {backend_name(cfg.rollout)}",
        "    balance roundrobin",
        *_server_lines(cfg.servers.items()),
        "",
    ]
    if cfg.rules:
        for slot in range(SLOTS):
            members = {
                name: (b, 1) for name, (b, _) in cfg.servers.items() if cfg.slots.get(b.revision) == slot
            }
            lines += [
                f"backend {slot_backend(backend_name(cfg.rollout), slot)}",
                "    balance roundrobin",
                *_server_lines(members.items()),
                "",
            ]
    return "\n".join(lines)


def _ring_lines(request_log: bool, size: int) -> list[str]:
    """The ring the request log goes to: raw lines, kept in memory until the control plane reads them."""
    if not request_log:
        return []
    if size < 4 * MAX_LINE:
        raise ValueError(f"ring size {size} is below {4 * MAX_LINE} bytes")
    return [
        f"ring {RING}",
        "    format raw",
        f"    maxlen {MAX_LINE}",
        f"    size {size}",
        "",
    ]


def _log_lines(request_log: bool, sampling: int = 1) -> list[str]:
    """One raw line per sampled request into the ring, in ``LOG_FORMAT``.

    Sampling is random per request (``rand(N)``, one in N kept): HAProxy's own ``log ... sample``
    keeps every Nth line, which under round-robin can pick the same server every time (two servers,
    N even: only one revision would ever be logged). A kept request is tracked in the frontend's
    one-entry stick table (whose counter numbers the lines); any other is set ``silent``, which costs
    no log line at all: HAProxy checks the level before it builds the line.
    """
    if not request_log:
        return []
    if not 1 <= sampling <= MAX_SAMPLING:
        raise ValueError(f"log sampling {sampling} is not between 1 and {MAX_SAMPLING}")
    lines = [
        f"    log ring@{RING} len {MAX_LINE} format raw local0 info",
        "    option dontlognull",
        f'    log-format "{LOG_FORMAT}"',
        "    stick-table type integer size 1 store gpc0",
    ]
    if sampling > 1:
        lines += [
            f"    http-request track-sc0 int(0) if {{ rand({sampling}) eq 0 }}",
            "    http-request set-log-level silent unless { sc0_tracked }",
        ]
    else:
        lines.append("    http-request track-sc0 int(0)")
    return lines


def _tls(bundle: str | None) -> str:
    """The bind options of TLS at the front: the bundle, and ALPN offering HTTP/2 before HTTP/1.1."""
    if bundle is None:
        return ""
    if not bundle.startswith("/") or any(c.isspace() or c in "#'\"\\" for c in bundle):
        raise ValueError(f"certificate bundle path {bundle!r} is not usable in HAProxy's configuration")
    return f" ssl crt {bundle} alpn h2,http/1.1"


def _server_lines(servers: Iterable[tuple[str, tuple[Backend, int]]]) -> list[str]:
    out = []
    for name, (backend, weight) in sorted(servers):
        if name != server_name(backend):
            raise ServerNameError(
                f"server {name!r} is not named after its backend ({server_name(backend)!r})"
            )
        out.append(f"    server {name} {backend.host}:{backend.port} weight {weight}")
    return out
