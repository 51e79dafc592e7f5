"""Bucketing: the published vectors, the hash as documented, stable growth of rollouts, and fair shares."""

from __future__ import annotations

import math
import struct

import pytest

from gapless.flags.bucketing import BUCKETS, bucket, split_bounds, variant_index

# The same table is published in docs/flags.md; SDKs in other languages check themselves against it.
VECTORS = [
    ("new-checkout", "user-1", 40631),
    ("new-checkout", "user-2", 10789),
    ("new-checkout", "user-42", 60774),
    ("new-checkout", "", 7121),
    ("new-checkout", "alice@example.com", 76218),
    ("pricing-experiment", "user-1", 63445),
    ("pricing-experiment", "12345", 62),
    ("a", "b", 92131),
    ("", "x", 24973),
    ("checkout-group", "user-1", 44463),
    ("flag.with.dots", "Zoë", 16715),
    ("kill-switch", "🚀", 32205),
]


@pytest.mark.parametrize(("salt", "value", "expected"), VECTORS)
def test_published_vectors(salt: str, value: str, expected: int) -> None:
    """Each published (salt, value) pair lands in its published bucket."""
    assert bucket(salt, value) == expected


def _murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit written out from the algorithm, independent of mmh3."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    h = seed
    whole = len(data) // 4 * 4
    for (block,) in struct.iter_unpack("<I", data[:whole]):
        k = rotl((block * c1) & mask, 15) * c2 & mask
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
    tail = data[whole:]
    k = 0
    for i, byte in enumerate(tail):
        k |= byte << (8 * i)
    if tail:
        h ^= rotl((k * c1) & mask, 15) * c2 & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 31, 200])
def test_bucket_is_the_documented_hash(n: int) -> None:
    """bucket() is murmur3_x86_32(utf8(salt + ':' + value), seed 0) % 100,000, for every tail length."""
    value = "é" * (n // 2) + "v" * (n - n // 2)
    expected = _murmur3_x86_32(f"salt:{value}".encode()) % BUCKETS
    assert bucket("salt", value) == expected


def test_raising_a_rollout_keeps_everyone_who_was_in() -> None:
    """Everyone in at 10% is still in at 25%, and the 25% holds 15 points more of the population."""
    users = [f"user-{i}" for i in range(20_000)]

    def enabled(share: int) -> set[str]:
        bounds = split_bounds([share, BUCKETS - share])
        return {u for u in users if variant_index(bounds, bucket("new-checkout", u)) == 0}

    at_10, at_25 = enabled(10_000), enabled(25_000)
    assert at_10 <= at_25
    assert abs(len(at_25 - at_10) / len(users) - 0.15) < 0.01


def test_changing_the_salt_reshuffles() -> None:
    """Two salts put mostly different users in their first 10%."""
    users = [f"user-{i}" for i in range(20_000)]
    a = {u for u in users if bucket("flag-a", u) < 10_000}
    b = {u for u in users if bucket("flag-b", u) < 10_000}
    overlap = len(a & b) / len(a)
    assert 0.05 < overlap < 0.15  # independent: about 10% of a is also in b


@pytest.mark.parametrize("percent", [1, 25, 50])
def test_distribution_over_100000_keys(percent: int) -> None:
    """The share in a rollout is within 4.5 standard deviations of its percentage over 100,000 keys."""
    n, share = 100_000, percent * 1_000
    hits = sum(bucket("distribution", f"key-{i}") < share for i in range(n))
    p = percent / 100
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) < 4.5 * sigma


def test_buckets_are_uniform() -> None:
    """Buckets fall evenly into ten deciles (chi-square with 9 degrees of freedom, p > 0.001)."""
    n = 100_000
    deciles = [0] * 10
    for i in range(n):
        deciles[bucket("uniform", str(i)) * 10 // BUCKETS] += 1
    chi2 = sum((c - n / 10) ** 2 / (n / 10) for c in deciles)
    assert chi2 < 27.88


def test_split_bounds_and_zero_weights() -> None:
    """Ranges are cumulative in weight order; a zero weight owns no bucket."""
    bounds = split_bounds([0, 50_000, 50_000])
    assert bounds == (0, 50_000)
    assert [variant_index(bounds, b) for b in (0, 49_999, 50_000, 99_999)] == [1, 1, 2, 2]
    assert split_bounds([BUCKETS]) == ()
    with pytest.raises(ValueError, match="sum to"):
        split_bounds([50_000, 40_000])


def test_lone_surrogates_are_hashed_not_crashed() -> None:
    """A value with a lone surrogate is hashed as its surrogatepass bytes (mmh3 given such a str crashes)."""
    assert bucket("s", "\udcff") == _murmur3_x86_32("s:\udcff".encode("utf-8", "surrogatepass")) % BUCKETS
    assert bucket("s", "é") == _murmur3_x86_32("s:é".encode()) % BUCKETS
