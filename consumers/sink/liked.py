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
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from consumers.sink.item_cache import ItemLabelCache
from gorse_cdc.gorse import GorseClient, User
from gorse_cdc.mapping import Mapper


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


class LikedLabelsWriter:
    """``demographics_cache``: users whose shard this worker holds are written only by it, so
    their demographic labels are remembered (bounded LRU) instead of read back from Gorse.
    ``forget`` must be called whenever the set of held shards changes. Entries expire after
    ``ttl_s``, so a repair written by another writer (the reconcile, a re-drive, a replay) is
    read back within that time instead of being overwritten with remembered demographics.

    ``remember_likes`` (off by default): for the same reason the items such a user likes can be
    remembered once read (bounded LRU ``likes_cache``, same TTL) and kept current from the plans
    this worker writes (``changed``), so recomputing their labels reads nothing from Gorse but
    the items' values (one GET of the user's likes per user per batch was 40 % of the
    consumer's Gorse time). It is exact only while nothing else writes feedback: the nightly
    reconcile's repairs do, and a label computed from a memory that missed them is written and
    stays wrong (seen once in test_reconcile_safety). Safe once every other feedback writer
    tells the user's shard (a refresh record), which is not built."""

    def __init__(
        self,
        client: GorseClient,
        mapper: Mapper,
        cache: ItemLabelCache,
        concurrency: int = 8,
        demographics_cache: int = 50_000,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        likes_cache: int = 10_000,
        remember_likes: bool = False,
    ) -> None:
        self.remember_likes = remember_likes
        self._likes: OrderedDict[str, tuple[set[str], float]] = OrderedDict()
        self._likes_max = likes_cache
        self.likes_read = 0  # GETs of a user's likes (the others came from memory)
        self.likes_remembered = 0
        self._client = client
        self._mapper = mapper
        self._cache = cache
        self._sem = asyncio.Semaphore(concurrency)
        self.locks = KeyedLocks()
        self._demo: OrderedDict[str, tuple[User, float]] = OrderedDict()
        self._demo_max = demographics_cache
        self._ttl = ttl_s
        self._clock = clock

    def forget(self, user_id: str | None = None) -> None:
        if user_id is None:
            self._demo.clear()
            self._likes.clear()
        else:
            self._demo.pop(user_id, None)
            self._likes.pop(user_id, None)

    def changed(
        self,
        liked: Iterable[tuple[str, str]],
        unliked: Iterable[tuple[str, str]],
        deleted_items: Iterable[str] = (),
    ) -> None:
        """What a plan wrote (before its users are written): (user, item) pairs now liked, and
        pairs no longer liked (another type put, the rating deleted); deleted items (Gorse
        dropped their feedback). Only remembered users change; idempotent (a retried plan)."""
        for user, item in liked:
            if (hit := self._likes.get(user)) is not None:
                hit[0].add(item)
        for user, item in unliked:
            if (hit := self._likes.get(user)) is not None:
                hit[0].discard(item)
        gone = set(deleted_items)
        if gone:
            for items, _ in self._likes.values():
                items.difference_update(gone)

    async def _liked_items(self, user_id: str, own: bool) -> set[str]:
        own = own and self.remember_likes
        if own and (hit := self._likes.get(user_id)) is not None:
            if self._clock() - hit[1] <= self._ttl:
                self.likes_remembered += 1
                self._likes.move_to_end(user_id)
                return hit[0]
            del self._likes[user_id]
        ftype = self._mapper.liked_feedback_type
        async with self._sem:
            feedback = await self._client.user_feedback(user_id, ftype)
        self.likes_read += 1
        items = {f.item_id for f in feedback}
        if own:
            self._likes[user_id] = (items, self._clock())
            while len(self._likes) > self._likes_max:
                self._likes.popitem(last=False)
        return items

    def _remember(self, user: User) -> None:
        self._demo[user.user_id] = (user, self._clock())
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
        return hit[0]

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
