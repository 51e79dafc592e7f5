"""Reading routing keys out of a request head, and the hash that makes sticky splits stable.

Header routes and sticky splits need a header's or a cookie's value; the router finds it in the
request head it is about to forward, so the per-request parsing cost is paid only when the config has
routes or stickiness. The sticky key is hashed with MurmurHash3 (x86, 32 bit, seed 0), the hash the
config's contract names, into ``BUCKETS`` buckets; a bounded cache keeps the hash of recent keys.
"""

from __future__ import annotations

import mmh3

__all__ = ["BUCKETS", "bucket_of", "cookie_value", "header_value", "murmur3_32"]

BUCKETS = 10_000

_CACHE_LIMIT = 65_536
_buckets: dict[bytes, int] = {}


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``data`` as an unsigned int (the ``mmh3`` C implementation)."""
    return int(mmh3.hash(data, seed, signed=False))


def bucket_of(key: bytes) -> int:
    """The bucket (0 .. BUCKETS-1) of a sticky key."""
    bucket = _buckets.get(key)
    if bucket is None:
        if len(_buckets) >= _CACHE_LIMIT:
            _buckets.clear()
        bucket = _buckets[key] = murmur3_32(key) % BUCKETS
    return bucket


def header_value(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower-case) in a request head, or None."""
    i = lower.find(b"\n" + name + b":")
    if i < 0:
        return None
    start = i + len(name) + 2
    return head[start : head.find(b"\r\n", start)].strip()


def cookie_value(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` (case-sensitive) in the request's Cookie headers, or None."""
    i = lower.find(b"\ncookie:")
    while i >= 0:
        start = i + 8
        line = head[start : head.find(b"\r\n", start)]
        for pair in line.split(b";"):
            key, sep, value = pair.partition(b"=")
            if sep and key.strip() == name:
                return value.strip().strip(b'"')
        i = lower.find(b"\ncookie:", start)
    return None
