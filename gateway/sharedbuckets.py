"""Token buckets in shared memory: one table for every worker process of a gateway, so a key's
rate (and an address's failed-authentication budget) holds across the workers exactly as in
one process. The clock is passed in (CLOCK_MONOTONIC is the same in every process of a host).

Made by the server before it forks its workers (the memory is an anonymous file, ``memfd``,
mapped shared and inherited by the fork). A key's slot is found by a 64-bit hash of its id in a
window of ``PROBE`` slots; each take or wait locks that window with a POSIX record lock
(``lockf``), which the kernel releases when its process dies, so a worker killed mid-update
blocks nobody. A window that is full drops its least recently touched bucket: a bucket untouched
for ``burst / rate`` seconds is full again, so dropping it changes nothing, and a dropped busier
bucket starts again full, which only ever allows more (as ``ratelimit.Buckets``' LRU).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator

from gateway.ratelimit import TokenBucket

SLOT = struct.Struct("<Qdddd")  # key hash (0 = empty), rate, burst, tokens, stamp
PROBE = 8


class SharedBuckets:
    def __init__(self, capacity: int = 1 << 17, name: str = "gorse-cdc-buckets") -> None:
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self.capacity = capacity
        self._fd = os.memfd_create(name)  # inherited by forked workers; no file on disk
        size = (capacity + PROBE) * SLOT.size  # windows never wrap
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)  # MAP_SHARED

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _hash(self, key_id: str) -> int:
        h = int.from_bytes(hashlib.blake2b(key_id.encode(), digest_size=8).digest(), "little")
        return h or 1

    @contextlib.contextmanager
    def _window(self, first: int) -> Iterator[None]:
        start, length = first * SLOT.size, PROBE * SLOT.size
        fcntl.lockf(self._fd, fcntl.LOCK_EX, length, start)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, length, start)

    def _find(self, h: int, first: int) -> tuple[int, TokenBucket | None]:
        """(slot, bucket): the key's slot and bucket, else (a free or the stalest slot, None).
        Slots are never emptied, so a key is never stored past its window's first empty slot."""
        stalest, stalest_stamp = first, float("inf")
        for i in range(first, first + PROBE):
            key, rate, burst, tokens, stamp = SLOT.unpack_from(self._map, i * SLOT.size)
            if key == h:
                return i, TokenBucket(rate, burst, tokens, stamp)
            if key == 0:
                return i, None
            if stamp < stalest_stamp:
                stalest, stalest_stamp = i, stamp
        return stalest, None

    def take(self, key_id: str, rate: float, burst: float, now: float) -> float:
        """Take one token from ``key_id``'s bucket: 0.0 when allowed, else the seconds until
        it would be. A key whose rate or burst changed starts again full."""
        h = self._hash(key_id)
        first = h & (self.capacity - 1)
        with self._window(first):
            slot, bucket = self._find(h, first)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = TokenBucket.full(rate, burst, now)
            wait = bucket.take(now)
            b = bucket
            SLOT.pack_into(self._map, slot * SLOT.size, h, b.rate, b.burst, b.tokens, b.stamp)
        return wait

    def wait(self, key_id: str, rate: float, burst: float, now: float) -> float:
        """The seconds until ``key_id`` could take a token (0.0: now); takes nothing."""
        h = self._hash(key_id)
        first = h & (self.capacity - 1)
        with self._window(first):
            _, bucket = self._find(h, first)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            return 0.0
        return bucket.wait(now)

    def __len__(self) -> int:
        return sum(
            1 for i in range(self.capacity + PROBE) if SLOT.unpack_from(self._map, i * SLOT.size)[0] != 0
        )
