"""Percentage bucketing: which slice of a rollout a context falls into, the same in every SDK.

A context's bucket is MurmurHash3 (x86, 32-bit, seed 0, unsigned) of the UTF-8 bytes of
``"{salt}:{stickiness value}"``, modulo ``BUCKETS`` (100,000, so a weight of 1 is 0.001%). A split gives
each variant a range of buckets, cumulative from bucket 0 in the order of its weights: with weights
``[on 10000, off 90000]`` buckets 0-9,999 get ``on``. Raising ``on`` to 25,000 moves the boundary up and
nobody who had ``on`` loses it. The salt (by default the flag key) decorrelates flags, so the first 10%
of one flag is not the first 10% of every flag; two flags with the same salt share their buckets, which
is how a group of flags is rolled out to the same users (Unleash's ``groupId``).

The function is the contract that SDKs in other languages implement; ``docs/flags.md`` publishes test
vectors for it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import mmh3

__all__ = [
    "BUCKETS",
    "GAPLESS",
    "RANDOM",
    "UNLEASH",
    "UNLEASH_VARIANT_SEED",
    "bucket",
    "hash32",
    "hash_input",
    "split_bounds",
    "unleash_percent_bucket",
    "unleash_variant_bucket",
    "variant_index",
]

BUCKETS = 100_000
"""Buckets in a rollout: weights are integers in units of 0.001%."""


def bucket(salt: str, stickiness_value: str) -> int:
    """The bucket (0 .. BUCKETS-1) of a stickiness value under a salt."""
    return int(mmh3.hash(hash_input(salt, stickiness_value), 0, False)) % BUCKETS


def hash_input(salt: str, stickiness_value: str) -> str | bytes:
    """What is hashed: ``salt:value``, as UTF-8.

    Non-ASCII text is encoded here rather than by mmh3, which crashes the interpreter on strings with
    lone surrogates (they can come from ``surrogateescape``-decoded headers or file names);
    ``surrogatepass`` encodes those as their three-byte forms and every valid string as plain UTF-8.
    """
    key = f"{salt}:{stickiness_value}"
    return key if key.isascii() else key.encode("utf-8", "surrogatepass")


def split_bounds(weights: Sequence[int]) -> tuple[int, ...]:
    """Cumulative upper bounds of all ranges but the last; ``weights`` must sum to ``BUCKETS``.

    ``[10000, 30000, 60000]`` gives ``(10000, 40000)``: buckets below 10,000 are the first variant's,
    below 40,000 the second's, the rest the third's.
    """
    if sum(weights) != BUCKETS or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative and sum to {BUCKETS}, not {list(weights)}")
    bounds: list[int] = []
    total = 0
    for w in weights[:-1]:
        total += w
        bounds.append(total)
    return tuple(bounds)


def variant_index(bounds: Sequence[int], bucket_number: int) -> int:
    """The index of the range that holds ``bucket_number`` (a variant with weight 0 never gets one)."""
    return bisect_right(bounds, bucket_number)


# --- Unleash-compatible bucketing -------------------------------------------------------------------
#
# Flags that must give the same answer as Unleash's SDKs (imported from Unleash, or served to them by
# the Unleash client API) bucket as Unleash does, per rollout or split (``"bucketing": "unleash"``):
# a rollout puts a context in ``murmur3("groupId:value", seed 0) % 100`` and is on below the
# percentage (Unleash's ``normalizedValue <= percentage`` with values 1-100); a variant split uses
# seed 86028157 and the sum of its weights as the modulus, with ranges cumulative in variant order.
# gapless's own flags keep ``bucket`` above: 0.001% steps, and their users stay where they are.

UNLEASH = "unleash"
GAPLESS = "gapless"
UNLEASH_VARIANT_SEED = 86028157
"""The seed Unleash's SDKs hash variant stickiness with (strategies use seed 0)."""
RANDOM = "random"
"""A stickiness name that Unleash reads as "a new random value each time"."""


def hash32(text: str, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, unsigned, of ``text`` as UTF-8 (as ``hash_input`` encodes it)."""
    return int(mmh3.hash(text if text.isascii() else text.encode("utf-8", "surrogatepass"), seed, False))


def unleash_percent_bucket(group_id: str, value: str) -> int:
    """Unleash's rollout bucket, 0-99: a rollout of P% takes buckets below P."""
    return hash32(f"{group_id}:{value}") % 100


def unleash_variant_bucket(group_id: str, value: str, total: int) -> int:
    """Unleash's variant bucket, 0 .. total-1, for weights that sum to ``total``."""
    return hash32(f"{group_id}:{value}", UNLEASH_VARIANT_SEED) % total
