"""Executes a WritePlan against Gorse with bounded concurrency, phase by phase (see
consumers.coalesce.WritePlan). Every call is idempotent (upserts, PUT feedback, deletes), so a
plan that failed half-way is simply executed again.

Genre edits: when an UpsertItem changes the item's liked-labels source values (or an item is
deleted), the users who liked it are refreshed too. Those users' own shards may write them at
the same time on another worker: see consumers.sink.liked for the race and its backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from consumers.coalesce import WritePlan
from consumers.sink.item_cache import ItemLabelCache
from consumers.sink.liked import LikedLabelsWriter
from gorse_cdc.errors import GorsePermanentError, PermanentRecordError
from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.client import chunks
from gorse_cdc.mapping import Mapper

T = TypeVar("T")
UNKNOWN = ("<not known to this worker>",)  # never equal to an item's label values


async def run_all(calls: Iterable[Callable[[], Awaitable[object]]], limit: int) -> None:
    """Run every call with at most ``limit`` at once. On failure the others are cancelled and
    the most telling error is raised: a permanent one before a retriable one."""
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with sem:
            await call()

    try:
        async with asyncio.TaskGroup() as tg:
            for call in calls:
                tg.create_task(one(call))
    except* PermanentRecordError as group:
        raise group.exceptions[0] from None
    except* Exception as group:
        raise group.exceptions[0] from None


async def _ignore_404(call: Awaitable[object]) -> None:
    try:
        await call
    except GorsePermanentError as e:
        if e.status != 404:
            raise


class GorseSink:
    def __init__(
        self,
        client: GorseClient,
        mapper: Mapper,
        *,
        concurrency: int = 8,
        cache: ItemLabelCache | None = None,
        demographics_ttl_s: float = 60.0,
    ) -> None:
        self.client = client
        self.mapper = mapper
        self.concurrency = concurrency
        self.cache = cache or ItemLabelCache(client, mapper, concurrency=concurrency)
        self.liked = LikedLabelsWriter(client, mapper, self.cache, concurrency, ttl_s=demographics_ttl_s)
        self._batch = client.batch_size
        self._owed: set[str] = set()  # items whose likers' refresh a failed plan still owes

    def _batches(self, rows: Sequence[T]) -> list[Sequence[T]]:
        return list(chunks(rows, self._batch))

    async def _likers(self, item_ids: Iterable[str]) -> set[str]:
        ftype = self.mapper.liked_feedback_type
        ids = list(item_ids)
        if ftype is None or not ids:
            return set()
        users: set[str] = set()

        async def fetch(item_id: str) -> None:
            users.update(f.user_id for f in await self.client.item_feedback(item_id, ftype))

        await run_all([lambda i=i: fetch(i) for i in ids], self.concurrency)  # type: ignore[misc]
        return users

    async def write(self, plan: WritePlan) -> None:
        c, limit = self.client, self.concurrency
        refresh: set[str] = set()
        # 1. entity deletes (Gorse also drops their feedback)
        if plan.delete_items:
            refresh |= await self._likers(plan.delete_items)
        async with self.liked.locks.hold(plan.delete_users):  # no refresh may interleave
            await run_all(
                [lambda u=u: _ignore_404(c.delete_user(u)) for u in plan.delete_users]
                + [lambda i=i: _ignore_404(c.delete_item(i)) for i in plan.delete_items],
                limit,
            )
        for i in plan.delete_items:
            self.cache.invalidate(i)
        for u in plan.delete_users:
            self.liked.forget(u)
        # 2. items; note which may have changed the values liked labels are built from. Only
        # what this worker itself wrote (and cached) counts as known: an item it does not know
        # (a cold cache after a restart) may have changed, so its likers are refreshed. The
        # cache holds the new values as soon as Gorse does (refreshes must read them); a plan
        # that fails before its refreshes are written owes them to its retry (``_owed``).
        items = list(plan.upsert_items.values())
        if items:
            before = self.cache.known(plan.upsert_items)
            await run_all([lambda b=b: c.upsert_items(b) for b in self._batches(items)], limit)  # type: ignore[misc]
            changed = []
            for item in items:
                values = tuple(self.mapper.item_label_values(item.labels))
                if item.item_id in self._owed or before.get(item.item_id, UNKNOWN) != values:
                    changed.append(item.item_id)
                    self._owed.add(item.item_id)
                self.cache.put(item.item_id, values)
            refresh |= await self._likers(changed)
        # 3. feedback (PUT: idempotent)
        feedback = list(plan.put_feedback.values())
        await run_all([lambda b=b: c.put_feedback(b) for b in self._batches(feedback)], limit)  # type: ignore[misc]
        # 4. stale types after a threshold crossing, deleted ratings
        await run_all(
            [lambda k=k: c.delete_feedback(k[1], k[2], k[0]) for k in plan.stale_feedback]
            + [lambda k=k: c.delete_feedback(k[0], k[1]) for k in plan.delete_feedback],
            limit,
        )
        if plan.delete_feedback:
            await self._drop_orphan_items({i for _, i in plan.delete_feedback})
        # 5. users: demographics + recomputed liked labels; users refreshed because of an item
        # (their own shard may be elsewhere) are only patched, never created
        await self._write_users(sorted(plan.liked_users), plan)
        others = sorted(refresh - plan.liked_users)
        if others and self.mapper.liked_feedback_type is not None:
            await run_all(
                [lambda g=g: self.liked.write(g, {}, patch_only=True) for g in self._batches(others)],  # type: ignore[misc]
                max(1, self.concurrency // 4),
            )
        self._owed.difference_update(plan.upsert_items)  # every refresh is written

    async def _drop_orphan_items(self, item_ids: set[str]) -> None:
        """Delete items that exist only because Gorse auto-inserted them for feedback that is
        gone now: blank (no labels, comment, categories or timestamp: a source movie always
        has a title) and with no feedback left. This happens when a movie's delete (on the
        movie's shard) is applied before an older rating of it (on the user's shard): the PUT
        re-creates the item, the cascaded rating delete then leaves it behind. Narrow race,
        documented: a rating PUT for the same blank item by another shard between the check
        and the delete would be dropped with it (the nightly reconcile restores it)."""

        async def check(item_id: str) -> None:
            item = await self.client.get_item(item_id)
            if item is None or item.labels or item.comment or item.categories or item.timestamp:
                return
            if await self.client.item_feedback(item_id):
                return
            await _ignore_404(self.client.delete_item(item_id))
            self.cache.invalidate(item_id)

        await run_all([lambda i=i: check(i) for i in sorted(item_ids)], self.concurrency)  # type: ignore[misc]

    async def _write_users(self, user_ids: list[str], plan: WritePlan) -> None:
        if self.mapper.liked_feedback_type is None:
            users = list(plan.upsert_users.values())
            await run_all(
                [lambda b=b: self.client.upsert_users(b) for b in self._batches(users)],  # type: ignore[misc]
                self.concurrency,
            )
            return
        groups = self._batches(user_ids)
        await run_all(
            [lambda g=g: self.liked.write(g, plan.upsert_users) for g in groups],  # type: ignore[misc]
            max(1, self.concurrency // 4),
        )
