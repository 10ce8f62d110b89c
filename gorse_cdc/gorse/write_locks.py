"""Concurrent Gorse writes without deadlocks on a SQL store (PostgreSQL, MySQL/MariaDB).

What deadlocks in Gorse v0.5.11 (read in its code, seen in PostgreSQL's log):
- ``PUT /api/feedback`` (server/rest.go ``insertFeedback``) stamps every user and item of the
  batch in the cache store: ``CacheClient.Set`` (storage/cache/sql.go ``Set``) is one multi-row
  ``INSERT INTO values ... ON CONFLICT (name) DO UPDATE`` whose rows are the batch's users, then
  its items, each in Go map order (``mapset.ToSlice()``). DO UPDATE locks every existing row until
  the statement commits, so two batches sharing two items (or users) lock them in opposite
  orders: 40P01 on PostgreSQL, 1213 on MySQL. All 19 deadlocks of 16 writers over 40 shared
  items in 4 s were this statement, on rows that existed already.
- With ``auto_insert_user``/``auto_insert_item`` the data store's ``BatchInsertFeedback``
  (storage/data/sql.go) first inserts the batch's users, then its items, again in map order, as
  ``INSERT ... ON CONFLICT DO NOTHING``. On PostgreSQL that waits only on keys another statement
  has just inserted (an existing, committed row is skipped without a lock); on MySQL gorm turns
  DO NOTHING into ``ON DUPLICATE KEY UPDATE item_id = item_id``, which X-locks existing rows too.
- ``POST /api/items`` and ``POST /api/users`` upsert in request order, then stamp the same cache
  rows in request order: they deadlock against a feedback batch that shares two of their keys.
- Every statement runs on its own (gorm ``SkipDefaultTransaction``): locks live one statement.

So a write that shares at most nothing with the writes in flight never waits in a cycle. This
module is the in-process lock discipline that makes the writes of one client pairwise disjoint:
- items are split into ``partitions`` (crc32 of the id); a feedback or item write holds the lock
  of ONE partition at a time, so concurrent writes never share an item;
- a feedback or user write holds the locks of all its users, taken at once (no hold-and-wait),
  always before a partition lock; a partition holder never waits for a user lock: no cycle here
  either.
- feedback rows of several writes waiting for the same partition go out as one call
  (``MergedWrites``): fewer, larger calls, still disjoint from every other call in flight.
Nothing is dropped or set back: auto-insert stays on (a rating whose movie is not yet in Gorse
creates it blank, as before, and the movie's upsert fills it in).

Across processes nothing is shared: two processes writing the same partition at the same moment
can still meet a deadlock. Those answers (500 "...deadlock detected (40P01)" / "Error 1213") are
retried here with jittered backoff and counted (``deadlocks``), as a last resort.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from gorse_cdc.errors import GorseRequestError

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def is_deadlock(e: GorseRequestError) -> bool:
    """Gorse answers a store deadlock with 500 and the driver's message: lib/pq ``pq: deadlock
    detected (40P01)``, go-sql-driver/mysql ``Error 1213 (40001): Deadlock found ...``."""
    text = e.detail.lower()
    return e.status == 500 and ("deadlock" in text or "40p01" in text or "error 1213" in text)


def partition_of(item_id: str, partitions: int) -> int:
    """The item's partition: the same in every process (crc32, not Python's salted hash)."""
    return zlib.crc32(item_id.encode("utf-8")) % partitions


class KeySetLock:
    """Locks on sets of keys, each set taken whole or not at all (so a holder never waits while
    holding part of what it needs)."""

    def __init__(self) -> None:
        self._held: set[Hashable] = set()
        self._changed = asyncio.Condition()
        self.on_release: list[Callable[[], None]] = []  # told whenever keys are released

    def try_take(self, key: Hashable) -> bool:
        """Take ``key`` now if it is free (no waiting: for callers that dispatch, not wait)."""
        if key in self._held:
            return False
        self._held.add(key)
        return True

    def untake(self, key: Hashable) -> None:
        """Give back a key just taken with ``try_take`` and not used (nobody saw it held)."""
        self._held.discard(key)

    def _released(self) -> None:
        self._changed.notify_all()
        for listener in self.on_release:
            listener()

    def held(self) -> frozenset[Hashable]:
        return frozenset(self._held)

    @asynccontextmanager
    async def hold(self, keys: Iterable[Hashable]) -> AsyncIterator[None]:
        wanted = set(keys)
        async with self._changed:
            await self._changed.wait_for(lambda: self._held.isdisjoint(wanted))
            self._held |= wanted
        try:
            yield
        finally:
            async with self._changed:
                self._held -= wanted
                self._released()

    async def take_any(self, candidates: Iterable[K]) -> K:
        """Wait until one of ``candidates`` is free, take it and return it (release it with
        ``release``): a caller with several partitions to write takes whichever is free first."""
        options = list(candidates)
        if not options:
            raise ValueError("no candidates")
        async with self._changed:
            await self._changed.wait_for(lambda: any(c not in self._held for c in options))
            chosen = next(c for c in options if c not in self._held)
            self._held.add(chosen)
            return chosen

    async def release(self, key: Hashable) -> None:
        async with self._changed:
            self._held.discard(key)
            self._released()


class WriteLocks:
    """The lock discipline of one client's writes (see the module docstring)."""

    def __init__(
        self,
        partitions: int,
        *,
        deadlock_retries: int = 5,
        backoff_s: float = 0.05,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.users = KeySetLock()
        self.items = KeySetLock()  # keys: partition numbers
        self.deadlock_retries = deadlock_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.deadlocks = 0  # deadlock answers seen (each one retried or raised)

    def split(self, rows: Iterable[T], item_of: Callable[[T], str]) -> dict[int, list[T]]:
        """Rows by their item's partition, in the rows' order."""
        parts: dict[int, list[T]] = {}
        for row in rows:
            parts.setdefault(partition_of(item_of(row), self.partitions), []).append(row)
        return parts

    async def each_partition(
        self, parts: dict[int, list[T]], write: Callable[[list[T]], Awaitable[int]]
    ) -> int:
        """``write`` every partition's rows, holding that partition's lock (one at a time, the
        first free one first)."""
        left = dict(parts)
        done = 0
        while left:
            p = await self.items.take_any(sorted(left))
            try:
                done += await self.retrying(lambda p=p: write(left[p]))  # type: ignore[misc]
            finally:
                await self.items.release(p)
            del left[p]
        return done

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """The last resort: a deadlock answer is retried after a jittered, growing pause (every
        write here is idempotent: upserts and PUT feedback)."""
        attempt = 0
        while True:
            try:
                return await call()
            except GorseRequestError as e:
                if not is_deadlock(e):
                    raise
                self.deadlocks += 1
                attempt += 1
                log.warning(
                    "Gorse store deadlock (attempt %d of %d): %s",
                    attempt,
                    self.deadlock_retries + 1,
                    e.detail[:120],
                    extra={"event": "gorse_deadlock"},
                )
                if attempt > self.deadlock_retries:
                    raise
                await self._sleep(self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random()))


@dataclass(eq=False)
class _Pending:
    owner: int  # the write (one put_feedback call) these rows belong to
    rows: list[Any]
    done: asyncio.Future[int]


class MergedWrites:
    """Feedback writes that wait for the same partition go out as ONE call (group commit): the
    waiting writes' rows of that partition, up to ``max_rows()``. Each write still has at most
    one call in flight (its users are in one call at a time), and a partition at most one, so the
    calls in flight share no user and no item: as with ``each_partition``, with fewer, larger
    calls when many writers wait (one writer's call overhead was what bounded the rate)."""

    def __init__(
        self, locks: WriteLocks, send: Callable[[list[Any]], Awaitable[int]], max_rows: Callable[[], int]
    ) -> None:
        self.locks = locks
        self._send = send
        self._max_rows = max_rows
        self._queues: dict[int, list[_Pending]] = {}
        self._flying: set[int] = set()  # owners with a call in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        locks.items.on_release.append(self._dispatch)

    async def write(self, parts: dict[int, list[Any]]) -> int:
        """Write every partition's rows (the caller holds the rows' users); returns rows written.
        Raises the first failure once none of its rows is queued or in flight any more."""
        loop = asyncio.get_running_loop()
        owner = object()
        mine = [_Pending(id(owner), rows, loop.create_future()) for rows in parts.values()]
        for p, pending in zip(parts, mine, strict=True):
            self._queues.setdefault(p, []).append(pending)
        self._dispatch()
        try:
            results = await asyncio.gather(*(asyncio.shield(m.done) for m in mine), return_exceptions=True)
        except asyncio.CancelledError:
            for q in self._queues.values():  # not sent yet: never sent (the users' locks go now)
                q[:] = [m for m in q if m.owner != id(owner)]
            for m in mine:
                if not m.done.done():
                    m.done.cancel()
            raise
        written = 0
        for r in results:
            if isinstance(r, BaseException):
                raise r
            written += r
        return written

    def _dispatch(self) -> None:
        for p, queue in self._queues.items():
            queue[:] = [m for m in queue if not m.done.done()]
            if not queue or not self.locks.items.try_take(p):
                continue
            take: list[_Pending] = []
            rows = 0
            for m in queue:
                if m.owner in self._flying or (take and rows + len(m.rows) > self._max_rows()):
                    continue
                take.append(m)
                rows += len(m.rows)
                self._flying.add(m.owner)
            if not take:
                self.locks.items.untake(p)
                continue
            queue[:] = [m for m in queue if m not in take]
            task = asyncio.ensure_future(self._call(p, take))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, partition: int, take: list[_Pending]) -> None:
        rows = [r for m in take for r in m.rows]
        try:
            self.calls += 1
            await self.locks.retrying(lambda: self._send(rows))
        except asyncio.CancelledError:
            for m in take:
                m.done.cancel()
            raise
        except Exception as e:  # handed to every write waiting on this call
            for m in take:
                if not m.done.done():
                    m.done.set_exception(e)
        else:
            for m in take:
                if not m.done.done():
                    m.done.set_result(len(m.rows))
        finally:
            for m in take:
                self._flying.discard(m.owner)
            await self.locks.items.release(partition)  # dispatches the next calls


def user_batches(rows: Iterable[T], size: int, user_of: Callable[[T], str]) -> list[list[T]]:
    """Batches of about ``size`` rows that keep each user's rows together (a user with more rows
    than ``size`` fills batches of its own), so a plan's batches share no user and the write
    locks let them run side by side."""
    by_user: dict[str, list[T]] = {}
    for row in rows:
        by_user.setdefault(user_of(row), []).append(row)
    out: list[list[T]] = []
    current: list[T] = []
    for user in sorted(by_user):
        mine = by_user[user]
        if current and len(current) + len(mine) > size:
            out.append(current)
            current = []
        while len(mine) > size:
            out.append(mine[:size])
            mine = mine[size:]
        current.extend(mine)
    if current:
        out.append(current)
    return out
