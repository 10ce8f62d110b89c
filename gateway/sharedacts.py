"""The items users just acted on through any worker of one gateway, in shared memory: a ring of
the last ``capacity`` (user, item, when) entries that every worker appends to and reads from,
so a row read on any worker leaves out what was just posted on another, before Gorse has it.

Made by the server before it forks its workers (an anonymous ``memfd`` mapped shared, as
``SharedBuckets``); the head is locked with a POSIX record lock (released by the kernel if its
holder dies). A worker that falls more than ``capacity`` entries behind skips the oldest: those
items leave its rows once Gorse has them (the consumer's path), as before this ring.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import Iterator

HEAD = struct.Struct("<Q")  # entries ever appended
ENTRY = struct.Struct("<dBB128s128s")  # when, user length, item length, user, item
ID_BYTES = 128


class SharedActions:
    def __init__(self, capacity: int = 16_384, name: str = "gorse-cdc-acted") -> None:
        self.capacity = capacity
        self._fd = os.memfd_create(name)
        size = HEAD.size + capacity * ENTRY.size
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    @contextlib.contextmanager
    def _head(self) -> Iterator[int]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, HEAD.size, 0)
        try:
            yield HEAD.unpack_from(self._map, 0)[0]
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, HEAD.size, 0)

    def append(self, user: str, items: list[str], when: float) -> None:
        """Remembers that ``user`` acted on ``items`` at ``when`` (ids over 128 bytes are left
        to this worker's own memory)."""
        u = user.encode()
        fit = [i.encode() for i in items]
        fit = [i for i in fit if len(i) <= ID_BYTES]
        if len(u) > ID_BYTES or not fit:
            return
        with self._head() as count:
            for i in fit:
                at = HEAD.size + (count % self.capacity) * ENTRY.size
                ENTRY.pack_into(self._map, at, when, len(u), len(i), u, i)
                count += 1
            HEAD.pack_into(self._map, 0, count)

    def since(self, cursor: int) -> tuple[int, list[tuple[str, str, float]]]:
        """(new cursor, the entries appended after ``cursor``; at most the last ``capacity``)."""
        if HEAD.unpack_from(self._map, 0)[0] == cursor:  # nothing new: no lock taken
            return cursor, []
        with self._head() as count:
            out = []
            for n in range(max(cursor, count - self.capacity), count):
                at = HEAD.size + (n % self.capacity) * ENTRY.size
                when, ulen, ilen, u, i = ENTRY.unpack_from(self._map, at)
                out.append((u[:ulen].decode(), i[:ilen].decode(), when))
        return count, out
