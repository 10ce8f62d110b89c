"""The users' derived liked labels, kept up to date incrementally.

After a user's feedback changes are applied, the user's liked labels are recomputed from
Gorse (the user's feedback of the liked type + the items' label values from the cache) and
the user is written back with its demographic labels preserved (from the stream's upsert in
the same batch, else read from Gorse). In one process, writes of one user are serialised by
a per-user lock (a shard task and an item-driven refresh can touch the same user). Across
processes the ratings of one user are on one shard (one writer), but a movie's genre edit
refreshes the users who liked it from the movie's shard: a concurrent write of the same user
by its own shard on another worker can race with it (the later writer wins, possibly with an
older item label from its cache, for at most the cache TTL). The nightly reconcile recomputes
liked labels exactly and is the backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import orjson

from consumers.sink.bulk_export import BulkExport
from consumers.sink.item_cache import ItemLabelCache
from gorse_cdc.gorse import GorseClient, User
from gorse_cdc.mapping import Mapper

# one read of Gorse's whole feedback export instead of a GET per user, when a plan needs this
# many users read and the last export was at most ROWS_PER_USER rows per such user (a full
# load: thousands of users new to the worker, Gorse still small)
BULK_READ_AT = 200
ROWS_PER_USER = 25


class KeyedLocks:
    """asyncio locks per key, created on demand and dropped when unused (bounded by use)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        ordered = sorted(set(keys))  # a global order: no deadlock between overlapping sets
        registered: list[str] = []
        acquired: list[asyncio.Lock] = []
        try:
            for k in ordered:
                lock, n = self._locks.get(k) or (asyncio.Lock(), 0)
                self._locks[k] = (lock, n + 1)
                registered.append(k)
                await lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in reversed(acquired):
                lock.release()
            for k in registered:
                lock, n = self._locks[k]
                if n <= 1:
                    del self._locks[k]
                else:
                    self._locks[k] = (lock, n - 1)


def _rows(held: dict[str, set[str]]) -> int:
    """Feedback rows in one user's memory."""
    return sum(len(items) for items in held.values())


class LikedLabelsWriter:
    """``demographics_cache``: users whose shard this worker holds are written only by it, so
    their demographic labels are remembered (bounded LRU, ~300 bytes a user: a full load's
    ratings follow every user's row, and a smaller LRU than the catalogue evicts each user
    before their ratings come: a GET per user) instead of read back from Gorse.
    ``forget`` must be called whenever the set of held shards changes. Entries expire after
    ``ttl_s``, so a repair written by another writer (the reconcile, a re-drive, a replay) is
    read back within that time instead of being overwritten with remembered demographics.

    ``remember_likes``: for the same reason the feedback such a user holds of the mapping's own
    types (like and unlike, not events) is remembered once read (one GET of the user's feedback;
    bounded LRU ``likes_cache``, same TTL) and kept current from the plans this worker writes
    (``changed``). Recomputing their labels then reads nothing from Gorse but the items'
    values (one GET of the user's likes per user per batch was 40 % of the consumer's Gorse
    time), and a re-rate's stale-type delete is sent only when the memory holds that type
    (``held``: one blind DELETE per re-rate was the largest per-change call). Exact because
    every other writer of feedback tells the user's shard (reread refresh records, which
    ``forget`` the user) or takes its lease (``forget`` everything).

    The memory is bounded by feedback rows (``likes_rows``, item ids shared) and by users
    (``likes_cache``); a user known to hold nothing costs an id in a set (``_empty``), not a
    memory: a live stream that adds users (8 % of the activity's changes) outgrew a 10k-user
    LRU in minutes, and every evicted user was read again at their next change."""

    def __init__(
        self,
        client: GorseClient,
        mapper: Mapper,
        cache: ItemLabelCache,
        concurrency: int = 8,
        demographics_cache: int = 200_000,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        likes_cache: int = 100_000,
        remember_likes: bool = False,
        empty_max: int = 500_000,
        likes_rows: int = 1_000_000,
    ) -> None:
        self.remember_likes = remember_likes
        # user -> ({type: items of that type the user holds in Gorse}, when read); own types only
        self._held: OrderedDict[str, tuple[dict[str, set[str]], float]] = OrderedDict()
        # users evicted from that LRU while they held nothing: a few bytes each instead of a
        # memory (a full load touches every user before their ratings); two generations, so an
        # entry is trusted for ttl_s / 2 to ttl_s; at most empty_max users
        self._empty: set[str] = set()
        self._empty_old: set[str] = set()
        self._empty_since = clock()
        self._empty_max = empty_max
        self._likes_max = likes_cache
        self._rows_max = likes_rows
        self._rows = 0  # feedback rows in _held
        self._types = tuple(mapper.spec.feedback_types)
        self.likes_read = 0  # GETs of a user's feedback (the others came from memory)
        self.likes_remembered = 0
        self._export = BulkExport(client, "feedback", at=BULK_READ_AT, rows_per_key=ROWS_PER_USER)
        self._client = client
        self._mapper = mapper
        self._cache = cache
        self._sem = asyncio.Semaphore(concurrency)
        self.locks = KeyedLocks()
        # user -> (the row as JSON: ~300 bytes, a fraction of a User; a full load keeps them all)
        self._demo: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._demo_max = demographics_cache
        self._ttl = ttl_s
        self._clock = clock

    def forget(self, user_id: str | None = None) -> None:
        if user_id is None:
            self._demo.clear()
            self._held.clear()
            self._rows = 0
            self._empty.clear()
            self._empty_old.clear()
        else:
            self._demo.pop(user_id, None)
            self._drop(user_id)
            self._empty.discard(user_id)
            self._empty_old.discard(user_id)

    def _drop(self, user_id: str) -> None:
        hit = self._held.pop(user_id, None)
        if hit is not None:
            self._rows -= _rows(hit[0])

    def changed(
        self,
        put: Iterable[tuple[str, str, str]],
        removed: Iterable[tuple[str | None, str, str]],
        deleted_items: Iterable[str] = (),
    ) -> None:
        """What a plan wrote (before its users are written): (type, user, item) put, and
        (type, user, item) deleted (type None: every type, a deleted rating); deleted items
        (Gorse dropped their feedback). Only remembered users change; idempotent (a retried
        plan)."""
        for ftype, user, item in put:
            if ftype not in self._types:
                continue
            if (hit := self._held.get(user)) is not None:
                items = hit[0].setdefault(ftype, set())
                if item not in items:
                    items.add(sys.intern(item))
                    self._rows += 1
            elif self._known_empty(user):  # held nothing: now exactly this
                held = self._nothing()
                held[ftype].add(sys.intern(item))
                self._store_held(user, held)
            # else not remembered: read when next needed
        for maybe_type, user, item in removed:
            if (hit := self._held.get(user)) is not None:
                for t in self._types if maybe_type is None else (maybe_type,):
                    if item in (items := hit[0].get(t, set())):
                        items.discard(item)
                        self._rows -= 1
        gone = set(deleted_items)
        if gone:
            for held, _ in self._held.values():
                for items in held.values():
                    before = len(items)
                    items.difference_update(gone)
                    self._rows -= before - len(items)
        self._trim()

    def _nothing(self) -> dict[str, set[str]]:
        return {t: set() for t in self._types}

    def _fresh(self, user_id: str) -> bool:
        hit = self._held.get(user_id)
        if hit is not None:
            return self._clock() - hit[1] <= self._ttl
        return self._known_empty(user_id)

    def _known_empty(self, user_id: str) -> bool:
        now = self._clock()
        if now - self._empty_since > self._ttl / 2:  # a new generation; the oldest is dropped
            self._empty_old, self._empty, self._empty_since = self._empty, set(), now
        return user_id in self._empty or user_id in self._empty_old

    def _store_held(self, user_id: str, held: dict[str, set[str]]) -> None:
        """Remember what ``user_id`` holds as of now; holding nothing, only the id."""
        self._drop(user_id)
        self._empty_old.discard(user_id)
        if not any(held.values()) and len(self._empty) < self._empty_max:
            self._known_empty(user_id)  # rotates the generations first when due
            self._empty.add(user_id)
            return
        self._empty.discard(user_id)
        self._held[user_id] = (held, self._clock())  # item ids interned by the callers: shared
        self._rows += _rows(held)
        self._trim()

    def _trim(self) -> None:
        """Evict the least recently used until within both bounds (the last one stays)."""
        now = self._clock()
        while len(self._held) > 1 and (len(self._held) > self._likes_max or self._rows > self._rows_max):
            gone = next(iter(self._held))
            was, stamp = self._held[gone]
            self._drop(gone)
            if now - stamp <= self._ttl and not any(was.values()) and len(self._empty) < self._empty_max:
                self._empty.add(gone)

    async def read_many(self, user_ids: Iterable[str]) -> None:
        """Remember many own users at once from one read of Gorse's feedback export (the
        master's JSONL, streamed) instead of a GET each: taken when at least ``BULK_READ_AT``
        of them are not remembered and the last export held at most ``ROWS_PER_USER`` rows per
        such user, so a full load into a small Gorse reads it a few times, not once per user.
        Exact for the same reason as a GET: only this worker writes these users' feedback, and
        it writes none of them meanwhile. Any failure (a master that refuses the export) leaves
        the GETs to ``held``, and is not tried again."""
        if not self.remember_likes:
            return
        wanted = [u for u in dict.fromkeys(user_ids) if not self._fresh(u)][: self._likes_max]
        if not self._export.worth(len(wanted)):
            return
        held: dict[str, dict[str, set[str]]] = {u: self._nothing() for u in wanted}

        def row(r: dict[str, Any]) -> None:
            mine = held.get(r.get("UserId"))  # type: ignore[arg-type]
            if mine is not None and r.get("FeedbackType") in mine:
                mine[r["FeedbackType"]].add(sys.intern(r["ItemId"]))

        if await self._export.read(row):
            for user_id, h in held.items():
                self._store_held(user_id, h)

    def liked_known(self, user_ids: Iterable[str]) -> set[str]:
        """The items the remembered ones of ``user_ids`` like (no I/O): what their labels need."""
        like = self._mapper.liked_feedback_type or ""
        out: set[str] = set()
        for u in user_ids:
            if (hit := self._held.get(u)) is not None:
                out |= hit[0].get(like, set())
        return out

    async def held(self, user_id: str) -> dict[str, set[str]]:
        """What the own user ``user_id`` holds in Gorse, type -> items, of the mapping's own
        types: remembered, else read (one GET) and remembered. Only with ``remember_likes``."""
        if (hit := self._held.get(user_id)) is not None:
            if self._clock() - hit[1] <= self._ttl:
                self.likes_remembered += 1
                self._held.move_to_end(user_id)
                return hit[0]
            self._drop(user_id)
        if self._known_empty(user_id):
            self.likes_remembered += 1
            self._store_held(user_id, self._nothing())
            return self._nothing()
        async with self._sem:  # one type: the typed GET; more: one GET of all, events left out
            typed: str | None = self._types[0] if len(self._types) == 1 else None
            feedback = await self._client.user_feedback(user_id, typed)
        self.likes_read += 1
        held = self._nothing()
        for f in feedback:
            if f.feedback_type in held:
                held[f.feedback_type].add(sys.intern(f.item_id))
        self._store_held(user_id, held)
        return held

    async def _liked_items(self, user_id: str, own: bool) -> set[str]:
        ftype = self._mapper.liked_feedback_type
        if own and self.remember_likes:
            return set((await self.held(user_id)).get(ftype or "", set()))
        async with self._sem:
            feedback = await self._client.user_feedback(user_id, ftype)
        self.likes_read += 1
        return {f.item_id for f in feedback}

    def _remember(self, user: User) -> None:
        # as str: orjson's bytes keep their ~4 KB buffer (389 MiB for 100k rows, vs 30 as str)
        self._demo[user.user_id] = (orjson.dumps(user.to_json()).decode(), self._clock())
        self._demo.move_to_end(user.user_id)
        while len(self._demo) > self._demo_max:
            self._demo.popitem(last=False)

    async def _liked(self, user_id: str, own: bool) -> list[str]:
        if self._mapper.liked_feedback_type is None:
            return []
        values = await self._cache.values(sorted(await self._liked_items(user_id, own)))
        return sorted({v for vs in values.values() if vs is not None for v in vs})

    def _remembered(self, user_id: str) -> User | None:
        hit = self._demo.get(user_id)
        if hit is None:
            return None
        if self._clock() - hit[1] > self._ttl:
            del self._demo[user_id]
            return None
        return User.from_json(orjson.loads(hit[0]))

    async def _user(self, user_id: str, demographics: Mapping[str, User], own: bool) -> User | None:
        user = demographics.get(user_id) or (self._remembered(user_id) if own else None)
        if user is None:
            async with self._sem:
                user = await self._client.get_user(user_id)
        if user is None:
            return None
        if own:
            self._remember(user)
        return self._mapper.with_liked(user, await self._liked(user_id, own))

    async def write(
        self, user_ids: Iterable[str], demographics: Mapping[str, User], *, patch_only: bool = False
    ) -> int:
        """Write ``user_ids`` with recomputed liked labels; users unknown to Gorse and not in
        ``demographics`` are skipped. ``patch_only``: update existing users only (PATCH never
        creates, so a refresh racing a GDPR DeleteUser on another worker cannot resurrect the
        user). Returns the number of users written."""
        ids = sorted(set(user_ids))
        if not ids:
            return 0
        async with self.locks.hold(ids):
            users = await asyncio.gather(*(self._user(u, demographics, not patch_only) for u in ids))
            found = [u for u in users if u is not None]
            if found and patch_only:
                await asyncio.gather(*(self._patch(u) for u in found))
            elif found:
                await self._client.upsert_users(found)
        return len(found)

    async def _patch(self, user: User) -> None:
        async with self._sem:
            await self._client.patch_user(user.user_id, labels=user.labels)
