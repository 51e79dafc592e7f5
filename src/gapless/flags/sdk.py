"""The flag SDK that applications import: local evaluation of the last known ruleset.

``FlagClient`` holds one compiled ruleset (``gapless.flags.evaluate``) and evaluates against it in the
calling thread: no network call, no lock (an evaluation is counted by one ``next()`` on the counter of
its flag and variant), no exception. ``is_enabled`` on a boolean flag runs one function generated for
that flag (``CompiledRuleset.boolean_function``) that evaluates, counts and returns the bool.
A new ruleset is compiled outside any lock and swapped in whole, so a thread sees either the old
ruleset or the new one, never a mixture; a ruleset older than the current one is ignored, so a poll
that races a streamed change cannot undo it.

Where rulesets come from:

- ``bootstrap=`` (a dict, compiled by the constructor) or ``bootstrap_file=`` (read by ``start()``): what
  to serve before, or without, any service;
- ``cache_file=``: the last ruleset applied, written atomically (temporary file, fsync, ``os.replace``,
  fsync of the directory) after each update and read by ``start()``, so a restarted application serves
  what it served before even while the service is down. Of bootstrap and cache, the higher revision wins;
- a ``Transport`` (streaming with a polling fallback, from the flag service) calls ``update()``.

The module depends on the standard library and the evaluator only (an import-linter contract keeps it
so), so an application pulls in none of the control plane. The constructor does no I/O; ``start()``
reads files and starts the transport. Fork-safe: in a child (gunicorn ``--preload``) the locks and
counters are new and the transport is told to restart, while the ruleset, immutable, is shared.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gapless.flags.evaluate import (
    BooleanRun,
    CompiledRuleset,
    ErrorCode,
    Evaluation,
    Reason,
    RulesetError,
    compile_ruleset,
)

__all__ = ["ClientStatistics", "Evaluation", "FlagClient", "RulesetError", "Transport"]

log = logging.getLogger("gapless.flags")

MAX_COUNTED_KEYS = 10_000
"""Distinct (flag, variant) pairs counted; evaluations of further pairs are only counted as dropped
(keys come from the application's code, so this bounds a bug such as a key built per user)."""


class Transport(Protocol):
    """How rulesets reach a client; the flag service's streaming/polling transport implements it.

    ``start(client)`` begins delivery and returns promptly (its work runs in its own thread): it calls
    ``client.update(ruleset)`` for every ruleset it receives, may read ``client.revision`` (to resume a
    stream or as an ETag), and sends ``client.drain_counts()`` to the service in batches. ``close()``
    stops it. ``after_fork()`` runs in a forked child, where the parent's threads do not exist, so a
    transport restarts its work there.
    """

    def start(self, client: FlagClient) -> None: ...

    def close(self) -> None: ...

    def after_fork(self) -> None: ...


@dataclass(frozen=True)
class ClientStatistics:
    """What a client has done, for logs and health checks."""

    revision: int | None
    flags: int
    problems: list[tuple[str, str]]
    """Flags of the current ruleset that did not compile (they evaluate to the default)."""
    updates_applied: int
    updates_ignored: int
    """Rulesets not newer than the current one."""
    cache_write_errors: int
    counts_dropped: int


class _Counts:
    """Evaluations per (flag, variant); the variant is None for errors.

    Each pair counted has its own ``itertools.count``, created on the pair's first evaluation (or, for
    ``is_enabled``, for every variant of its flag when it first asks for the flag), and an evaluation is
    one ``next()`` on it: a C call that, under the GIL, no other thread interleaves with, so concurrent
    evaluations lose no count, and nobody takes a lock or builds a key.
    ``drain`` reads each counter with a ``next()`` of its own (which it remembers to discount) and
    reports what grew since its previous read, so no increment is lost or counted twice. The lock
    orders only registrations and drains. ``MAX_COUNTED_KEYS`` bounds the pairs; evaluations of
    further pairs are counted as dropped.
    """

    __slots__ = ("_dropped", "_dropped_read", "_lock", "_pairs", "_read", "slots")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # registration and drains only
        self.slots: dict[str, dict[str | None, Iterator[int]]] = {}
        """flag key -> variant -> counter; evaluations read it without a lock and call ``next()``."""
        self._read: dict[tuple[str, str | None], int] = {}  # per pair: next() values used so far
        self._pairs = 0
        self._dropped = itertools.count()
        self._dropped_read = 0

    def add(self, key: str, variant: str | None) -> None:
        """Count one evaluation (the fast path, inlined by ``FlagClient``, is ``next(slots[key][variant])``)."""
        per_flag = self.slots.get(key)
        counter = None if per_flag is None else per_flag.get(variant)
        if counter is None:
            counter = self._register(key, variant)
            if counter is None:
                next(self._dropped)
                return
        next(counter)

    def _register(self, key: str, variant: str | None) -> Iterator[int] | None:
        if self._pairs >= MAX_COUNTED_KEYS:  # read without the lock: a full table stays full
            return None
        with self._lock:
            per_flag = self.slots.get(key)
            if per_flag is None:
                per_flag = self.slots[key] = {}
            counter = per_flag.get(variant)  # another thread may have registered the pair meanwhile
            if counter is None:
                if self._pairs >= MAX_COUNTED_KEYS:
                    return None
                counter = per_flag[variant] = itertools.count()
                self._pairs += 1
            return counter

    def prepare(self, key: str, variants: tuple[str | None, ...]) -> dict[str | None, Iterator[int]] | None:
        """The counters of flag ``key``, with one for each of ``variants`` (for ``is_enabled``'s generated
        function, which binds them); None when they would not fit in ``MAX_COUNTED_KEYS``."""
        with self._lock:
            per_flag = self.slots.get(key)
            missing = [v for v in variants if per_flag is None or v not in per_flag]
            if self._pairs + len(missing) > MAX_COUNTED_KEYS:
                return None
            if per_flag is None:
                per_flag = self.slots[key] = {}
            for v in missing:
                per_flag[v] = itertools.count()
            self._pairs += len(missing)
            return per_flag

    def drain(self) -> dict[tuple[str, str | None], int]:
        out: dict[tuple[str, str | None], int] = {}
        with self._lock:
            read = self._read
            for key, per_flag in self.slots.items():
                for variant, counter in per_flag.items():
                    pair = (key, variant)
                    now = next(counter)  # the evaluations so far, plus this read and the earlier ones
                    grown = now - read.get(pair, 0)
                    read[pair] = now + 1
                    if grown:
                        out[pair] = grown
        return out

    @property
    def dropped(self) -> int:
        with self._lock:
            n = next(self._dropped) - self._dropped_read
            self._dropped_read += 1
            return n


class _Live(dict[str, BooleanRun]):
    """The ruleset in use and, for each boolean flag that ``is_enabled`` has asked for, its function from
    ``CompiledRuleset.boolean_function``, bound to this client's counters. One object, swapped whole
    with the ruleset, so an evaluation never mixes a function of one ruleset with another ruleset."""

    __slots__ = ("ruleset",)

    def __init__(self, ruleset: CompiledRuleset | None) -> None:
        super().__init__()
        self.ruleset = ruleset


def _not_ready(default: Any) -> Evaluation:
    return Evaluation(
        default,
        None,
        Reason.ERROR,
        ErrorCode.PROVIDER_NOT_READY,
        "no ruleset yet: no bootstrap, cache or update",
    )


class FlagClient:
    """Feature flags evaluated locally; thread-safe, asyncio-friendly (nothing blocks) and fork-safe."""

    def __init__(
        self,
        *,
        bootstrap: Mapping[str, Any] | None = None,
        bootstrap_file: str | os.PathLike[str] | None = None,
        cache_file: str | os.PathLike[str] | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Compile ``bootstrap`` now (a ``RulesetError`` is a mistake in the program); touch no file.

        ``clock`` (seconds since the epoch) supplies ``currentTime`` to date conditions on it.
        """
        if bootstrap is not None and bootstrap_file is not None:
            raise ValueError("give bootstrap or bootstrap_file, not both")
        self._live = _Live(compile_ruleset(bootstrap) if bootstrap is not None else None)
        self._bootstrap_file = Path(bootstrap_file) if bootstrap_file is not None else None
        self._cache_file = Path(cache_file) if cache_file is not None else None
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()  # orders updates and cache writes; evaluation never takes it
        self._counts = _Counts()
        self._slots = self._counts.slots
        self._started = False
        self._applied = 0
        self._ignored = 0
        self._cache_errors = 0
        me = weakref.ref(self)

        def after_fork_in_child() -> None:
            client = me()
            if client is not None:
                client._after_fork_in_child()

        os.register_at_fork(after_in_child=after_fork_in_child)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FlagClient:
        """Load the bootstrap file and the cache file (the higher revision wins), then start the transport.

        A bootstrap file that cannot be read or compiled raises (``OSError``, ``ValueError``); a cache
        file that cannot is logged and ignored, since the service will send a fresh ruleset. Calling
        ``start`` again does nothing.
        """
        with self._lock:
            if self._started:
                return self
            candidates = [self._ruleset]
            if self._bootstrap_file is not None:
                candidates.append(compile_ruleset(_read_json(self._bootstrap_file)))
            if self._cache_file is not None:
                candidates.append(self._load_cache(self._cache_file))
            found = [c for c in candidates if c is not None]
            if found:
                self._ruleset = max(found, key=lambda c: c.revision)
                _log_problems(self._ruleset)
            self._started = True
        if self._transport is not None:
            self._transport.start(self)
        return self

    def close(self) -> None:
        """Stop the transport; the client keeps evaluating its last ruleset."""
        if self._transport is not None:
            self._transport.close()

    def __enter__(self) -> FlagClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- evaluation --------------------------------------------------------------------------------

    def evaluate(self, key: str, context: Mapping[str, Any] | None = None, default: Any = None) -> Evaluation:
        """Value, variant and reason of flag ``key`` for ``context``; the default on any error. Never raises."""
        rs = self._live.ruleset
        ev = _not_ready(default) if rs is None else rs.evaluate(key, context, default, clock=self._clock)
        if type(key) is str:
            try:
                next(self._slots[key][ev.variant])
            except KeyError:  # the first evaluation of this (flag, variant)
                self._counts.add(key, ev.variant)
        return ev

    def is_enabled(self, key: str, context: Mapping[str, Any] | None = None, default: bool = False) -> bool:
        """Whether boolean flag ``key`` is on for ``context``; ``default`` on any error."""
        # The call applications make most: a boolean flag asked for before is one generated function
        # that evaluates, counts and returns the bool (CompiledRuleset.boolean_function).
        if type(key) is str:
            run = self._live.get(key)
            if run is not None:
                return run(context, default, self._clock)  # type: ignore[no-any-return]
        return self._is_enabled_first(key, context, default)

    def _is_enabled_first(self, key: str, context: Mapping[str, Any] | None, default: bool) -> bool:
        """``is_enabled`` for a flag not asked for before in this ruleset: its function, made and kept
        when the flag is a boolean flag of the ruleset (and its counters fit), else ``evaluate``."""
        live = self._live
        rs = live.ruleset
        if rs is not None and type(key) is str and rs.kind(key) == "boolean":
            counters = self._counts.prepare(key, (*rs.variants(key), None))
            try:
                run = None if counters is None else rs.boolean_function(key, counters)
            except Exception:  # not expected (it generates code); evaluate() serves instead, never raising
                log.exception("could not prepare flag %r for is_enabled", key)
                run = None
            if run is not None:
                live[key] = run  # another thread may do the same meanwhile: same counters, same answers
                return run(context, default, self._clock)  # type: ignore[no-any-return]
        ev = self.evaluate(key, context, default)
        value = ev.value
        return value if type(value) is bool else default

    def variant(
        self, key: str, context: Mapping[str, Any] | None = None, default: str | None = None
    ) -> str | None:
        """The name of the variant flag ``key`` serves to ``context`` (any kind); ``default`` on any error."""
        ev = self.evaluate(key, context, None)
        return default if ev.variant is None else ev.variant

    # --- updates -----------------------------------------------------------------------------------

    def update(self, ruleset: Mapping[str, Any]) -> bool:
        """Apply a newer ruleset; False (and nothing changes) when its revision is not newer.

        Raises ``RulesetError`` for a ruleset that cannot be used at all; flags that do not compile are
        logged and evaluate to the default with PARSE_ERROR. Writes the cache file, which blocks for an
        fsync: call it from a thread, not from an event loop.
        """
        compiled = compile_ruleset(ruleset)
        with self._lock:
            current = self._ruleset
            if current is not None and compiled.revision <= current.revision:
                self._ignored += 1
                return False
            self._ruleset = compiled
            self._applied += 1
            if self._cache_file is not None:
                self._write_cache(self._cache_file, ruleset)
        _log_problems(compiled)
        return True

    @property
    def _ruleset(self) -> CompiledRuleset | None:
        return self._live.ruleset

    @_ruleset.setter
    def _ruleset(self, ruleset: CompiledRuleset | None) -> None:
        self._live = _Live(ruleset)

    @property
    def started(self) -> bool:
        """Whether ``start()`` has run."""
        return self._started

    @property
    def revision(self) -> int | None:
        """The revision of the ruleset in use, or None before there is one."""
        rs = self._ruleset
        return None if rs is None else rs.revision

    @property
    def ruleset(self) -> CompiledRuleset | None:
        return self._ruleset

    def drain_counts(self) -> dict[tuple[str, str | None], int]:
        """Evaluations per (flag key, variant) since the last drain, and reset them (variant None: errors)."""
        return self._counts.drain()

    def statistics(self) -> ClientStatistics:
        rs = self._ruleset
        return ClientStatistics(
            revision=None if rs is None else rs.revision,
            flags=0 if rs is None else len(rs.keys()),
            problems=[] if rs is None else list(rs.problems),
            updates_applied=self._applied,
            updates_ignored=self._ignored,
            cache_write_errors=self._cache_errors,
            counts_dropped=self._counts.dropped,
        )

    # --- internals ---------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held these at the fork; the child's copies would stay
        # locked forever. The parent reports its own counts, so the child starts from zero.
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._slots = self._counts.slots
        self._live = _Live(self._live.ruleset)  # its functions count into the parent's counters
        if self._transport is not None and self._started:
            self._transport.after_fork()

    def _load_cache(self, path: Path) -> CompiledRuleset | None:
        try:
            return compile_ruleset(_read_json(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # RulesetError and JSONDecodeError are ValueErrors
            log.warning("ignoring flag cache %s: %s", path, e)
            return None

    def _write_cache(self, path: Path, ruleset: Mapping[str, Any]) -> None:
        try:
            _write_atomically(path, json.dumps(ruleset, separators=(",", ":")).encode())
        except (OSError, TypeError, ValueError) as e:
            self._cache_errors += 1
            log.warning("could not write flag cache %s: %s", path, e)


def _read_json(path: Path) -> Any:
    with path.open("rb") as f:
        return json.load(f)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one, whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power loss
    finally:
        os.close(dir_fd)


def _log_problems(ruleset: CompiledRuleset) -> None:
    for path, message in ruleset.problems:
        log.warning("flag ruleset revision %d: %s: %s", ruleset.revision, path, message)
