"""Benchmark: local flag evaluation, per evaluation, for three flags (not a test).

Flags (the same targeting in every implementation):

  static   a boolean flag on for everyone, no rules
  rules    three rules, each serving on: plan in [pro, enterprise]; in segment "internal" (email ends
           with @acme.com); appVersion semver >= 2.1.0; otherwise off
  split    a 10% rollout on the user id

Implementations, each evaluating locally with no server, over the same 100,000 prebuilt contexts
(random plans, emails and app versions; a quarter of them match a rule):

  evaluate      gapless.flags.evaluate: CompiledRuleset.evaluate (the engine alone)
  FlagClient    gapless.flags.sdk: FlagClient.is_enabled (the engine plus evaluation counting)
  OpenFeature   openfeature-sdk's client over gapless.flags.openfeature.GaplessProvider
  Unleash       UnleashClient.is_enabled, bootstrapped with the equivalent features, when installed

Throughput is evaluations per second over ``--evaluations`` calls in a tight loop. Latency is measured
per call with ``perf_counter_ns`` over ``--samples`` calls, minus the timer's own cost (the median of
back-to-back readings), and reported as P50 / P99. "on" is the share of evaluations that were on, so
the rows can be checked against each other.

    python bench/flags.py [--evaluations 300000] [--samples 100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from gapless.flags.evaluate import compile_ruleset
from gapless.flags.openfeature import GaplessProvider
from gapless.flags.sdk import FlagClient

FLAGS = ["static", "rules", "split"]
BOOLEAN = [{"key": "on", "value": True}, {"key": "off", "value": False}]


def gapless_ruleset() -> dict[str, Any]:
    def flag(rules: list[dict[str, Any]], default: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "boolean",
            "variants": BOOLEAN,
            "offVariant": "off",
            "enabled": True,
            "rules": rules,
            "defaultRollout": default,
        }

    return {
        "formatVersion": 1,
        "revision": 1,
        "segments": {
            "internal": {
                "conditions": [{"attribute": "email", "operator": "endsWith", "values": ["@acme.com"]}]
            }
        },
        "flags": {
            "static": flag([], {"variant": "on"}),
            "rules": flag(
                [
                    {
                        "conditions": [
                            {"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]}
                        ],
                        "variant": "on",
                    },
                    {"conditions": [{"operator": "inSegment", "values": ["internal"]}], "variant": "on"},
                    {
                        "conditions": [
                            {"attribute": "appVersion", "operator": "semverGte", "value": "2.1.0"}
                        ],
                        "variant": "on",
                    },
                ],
                {"variant": "off"},
            ),
            "split": flag(
                [],
                {
                    "split": {
                        "weights": [
                            {"variant": "on", "weight": 10_000},
                            {"variant": "off", "weight": 90_000},
                        ],
                        "stickiness": "userId",
                    }
                },
            ),
        },
    }


def unleash_features() -> dict[str, Any]:
    """The same three flags in Unleash's client API format."""
    return {
        "version": 2,
        "segments": [
            {
                "id": 1,
                "constraints": [
                    {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@acme.com"]}
                ],
            }
        ],
        "features": [
            {"name": "static", "enabled": True, "strategies": [{"name": "default", "parameters": {}}]},
            {
                "name": "rules",
                "enabled": True,
                "strategies": [
                    {
                        "name": "default",
                        "parameters": {},
                        "constraints": [
                            {"contextName": "plan", "operator": "IN", "values": ["pro", "enterprise"]}
                        ],
                    },
                    {"name": "default", "parameters": {}, "segments": [1]},
                    {
                        "name": "default",
                        "parameters": {},
                        "constraints": [
                            {
                                "contextName": "appVersion",
                                "operator": "SEMVER_LT",
                                "value": "2.1.0",
                                "inverted": True,
                            }
                        ],
                    },
                ],
            },
            {
                "name": "split",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {"rollout": "10", "stickiness": "userId", "groupId": "split"},
                    }
                ],
            },
        ],
    }


def contexts(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data, not secrets
    out = []
    for i in range(n):
        plan = rng.choices(["free", "starter", "pro", "enterprise"], weights=[70, 18, 9, 3])[0]
        domain = "acme.com" if rng.random() < 0.05 else "example.com"
        version = f"{rng.choice([1, 2])}.{rng.randrange(4)}.{rng.randrange(10)}"
        out.append(
            {
                "userId": f"user-{i}",
                "targetingKey": f"user-{i}",
                "plan": plan,
                "email": f"u{i}@{domain}",
                "appVersion": version,
            }
        )
    return out


Evaluate = Callable[[str, Any], bool]


@dataclass
class Row:
    implementation: str
    flag: str
    per_second: float
    p50_us: float
    p99_us: float
    on_share: float


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    readings = []
    for _ in range(100_000):
        a = clock()
        b = clock()
        readings.append(b - a)
    return statistics.median(readings)


def measure(
    name: str, flag: str, evaluate: Evaluate, ctxs: list[Any], evaluations: int, samples: int, overhead: float
) -> Row:
    n = len(ctxs)
    for i in range(min(n, 10_000)):  # warm caches (semver parses, the regex DFA) as a long-running app has
        evaluate(flag, ctxs[i])
    on = 0
    start = time.perf_counter()
    for i in range(evaluations):
        on += evaluate(flag, ctxs[i % n])
    elapsed = time.perf_counter() - start
    clock = time.perf_counter_ns
    latencies = []
    for i in range(samples):
        ctx = ctxs[i % n]
        t0 = clock()
        evaluate(flag, ctx)
        latencies.append(clock() - t0 - overhead)
    latencies.sort()
    return Row(
        name,
        flag,
        evaluations / elapsed,
        max(latencies[len(latencies) // 2], 0) / 1000,
        max(latencies[int(len(latencies) * 0.99)], 0) / 1000,
        on / evaluations,
    )


def gapless_implementations(ctxs: list[dict[str, Any]]) -> list[tuple[str, Evaluate, list[Any]]]:
    rs = compile_ruleset(gapless_ruleset(), strict=True)

    def engine(flag: str, ctx: Any) -> bool:
        return bool(rs.evaluate(flag, ctx, False).value)

    client = FlagClient(bootstrap=gapless_ruleset())
    api.set_provider_and_wait(GaplessProvider(client), domain="bench")
    of_client = api.get_client(domain="bench")
    of_contexts = [
        EvaluationContext(c["targetingKey"], {k: v for k, v in c.items() if k != "targetingKey"})
        for c in ctxs
    ]

    def through_openfeature(flag: str, ctx: Any) -> bool:
        return of_client.get_boolean_value(flag, False, ctx)

    return [
        ("gapless evaluate", engine, ctxs),
        ("gapless FlagClient", client.is_enabled, ctxs),
        ("OpenFeature+gapless", through_openfeature, of_contexts),
    ]


def unleash_implementation(ctxs: list[dict[str, Any]]) -> tuple[str, Evaluate, list[Any]] | str:
    """UnleashClient bootstrapped offline, or why it cannot be."""
    try:
        from UnleashClient import UnleashClient  # type: ignore[import-not-found]
        from UnleashClient.cache import FileCache  # type: ignore[import-not-found]
    except ImportError:
        return "UnleashClient is not installed: no Unleash row (pip install UnleashClient to compare)"
    try:
        cache = FileCache("gapless-bench", directory=tempfile.mkdtemp(prefix="unleash-bench-"))
        cache.bootstrap_from_dict(unleash_features())
        client = UnleashClient(
            url="http://127.0.0.1:9",
            app_name="gapless-bench",
            cache=cache,
            disable_metrics=True,
            disable_registration=True,
        )
        client.initialize_client(fetch_toggles=False)
    except Exception as e:  # an UnleashClient version with another offline API
        return f"UnleashClient is installed but could not be set up offline: {type(e).__name__}: {e}"
    unleash_contexts = [
        {"userId": c["userId"], "properties": {k: c[k] for k in ("plan", "email", "appVersion")}}
        for c in ctxs
    ]

    def evaluate(flag: str, ctx: Any) -> bool:
        return bool(client.is_enabled(flag, ctx))

    return ("UnleashClient", evaluate, unleash_contexts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--evaluations", type=int, default=300_000)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--contexts", type=int, default=100_000)
    args = parser.parse_args()

    ctxs = contexts(args.contexts)
    implementations = gapless_implementations(ctxs)
    unleash = unleash_implementation(ctxs)
    note = unleash if isinstance(unleash, str) else None
    if not isinstance(unleash, str):
        implementations.append(unleash)
    overhead = timer_overhead_ns()

    rows = [
        measure(name, flag, evaluate, impl_ctxs, args.evaluations, args.samples, overhead)
        for name, evaluate, impl_ctxs in implementations
        for flag in FLAGS
    ]
    api.clear_providers()
    print(f"{args.contexts:,} contexts; timer overhead {overhead:.0f} ns subtracted from latencies")
    print(f"{'implementation':<22} {'flag':<7} {'evals/s':>12} {'P50 us':>8} {'P99 us':>8} {'on':>7}")
    for r in rows:
        print(
            f"{r.implementation:<22} {r.flag:<7} {r.per_second:>12,.0f} {r.p50_us:>8.2f} {r.p99_us:>8.2f} {r.on_share:>7.2%}"
        )
    if note:
        print(note)


if __name__ == "__main__":
    main()
