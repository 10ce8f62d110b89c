"""Executes a WritePlan against Gorse with bounded concurrency, phase by phase (see
consumers.coalesce.WritePlan). Every call is idempotent (upserts, PUT feedback, deletes), so a
plan that failed half-way is simply executed again.

Genre edits: when an UpsertItem changes the item's liked-labels source values (or an item is
deleted), the users who liked it are refreshed too: through refresh records on their own
shards when a publisher is wired (gorse_cdc.refresh_records: one writer per user), else (one process,
tests) written here directly.

The re-tell: a user who likes an edited item within the item-cache TTL of the edit, on a
worker that cached the item's old values, is not among the likers told at the edit and
computes their labels from the old values. So every edit is told a second time, once every
cache entry older than the edit has expired (``retell_due``, run by the live consumer every
second): the likers of that moment, with the new values. (Kept in memory: a worker that dies
inside that window leaves it to the nightly reconcile.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from consumers.coalesce import WritePlan
from consumers.sink import stale
from consumers.sink.erasures import ErasureLog
from consumers.sink.item_cache import ItemLabelCache
from consumers.sink.liked import LikedLabelsWriter
from gorse_cdc.errors import GorsePermanentError, PermanentRecordError
from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.client import chunks
from gorse_cdc.gorse.models import Feedback, Item
from gorse_cdc.gorse.write_locks import user_batches
from gorse_cdc.mapping import Mapper
from gorse_cdc.mapping.ops import FanOutLikers
from gorse_cdc.refresh_records import RefreshPublisher, Values

T = TypeVar("T")
log = logging.getLogger(__name__)
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
        publisher: RefreshPublisher | None = None,
        retell_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        erasures: ErasureLog | None = None,
        on_refused_events: Callable[[int], None] | None = None,
        remember_likes: bool = False,
        fan_out_records: bool = False,
        fan_out_per_plan: int = 1000,
        tell_owners: Callable[[Iterable[str]], Awaitable[None]] | None = None,
        remembered_users: int = 200_000,
        remembered_rows: int = 1_000_000,
    ) -> None:
        # a writer beside the live consumer that holds no lease (an archive replay or re-drive
        # run --beside-live): after each plan it tells the owners of the users it wrote
        # (reread refresh records), so what they remember of them is read again
        self.tell_owners = tell_owners
        # genre edits tell their likers through fan-out records (gorse_cdc.refresh_records), at most
        # fan_out_per_plan per plan; only with a publisher, and items partitioned by their id
        self.fan_out_records = fan_out_records and publisher is not None
        self.fan_out_per_plan = fan_out_per_plan
        self.fanned_out = 0  # likers told through fan-out records
        self.erasures = erasures
        self._on_refused = on_refused_events
        self.refused_events = 0  # events of erased users, never written
        self.publisher = publisher
        self.retell_after_s = retell_after_s
        self.retell_items_per_tick = 100
        self._clock = clock
        # item -> (when, its new values, the likers told already): only users who liked it since
        # are told again, so a bulk load (every item new to this worker) is not told twice
        self._retell: dict[str, tuple[float, Values, frozenset[str]]] = {}
        self.refreshed: set[str] = set()  # likers written here (no publisher)
        self.client = client
        self.mapper = mapper
        self.concurrency = concurrency
        self.cache = cache if cache is not None else ItemLabelCache(client, mapper, concurrency=concurrency)
        self.liked = LikedLabelsWriter(
            client,
            mapper,
            self.cache,
            concurrency,
            ttl_s=demographics_ttl_s,
            remember_likes=remember_likes,
            demographics_cache=remembered_users,
            likes_rows=remembered_rows,
            # a full load of more users keeps every one known empty until their ratings come
            empty_max=max(500_000, remembered_users),
        )
        self._batch = client.batch_size
        self._owed: set[str] = set()  # items whose likers' refresh a failed plan still owes
        self._future: dict[str, datetime] = {}  # user -> the latest future timestamp written
        self.phase_s: dict[str, float] = {}  # phase -> seconds spent in it, summed over plans

    def _batches(self, rows: Sequence[T]) -> list[Sequence[T]]:
        return list(chunks(rows, self._batch))

    async def _likers(self, item_values: dict[str, Values]) -> dict[str, dict[str, Values]]:
        """user -> {item they liked: its new label values} for the given items. One GET per
        item: Gorse 0.5's GET /api/item/{id}/feedback/{type} has no paging (it takes no cursor
        or n), so the plan that tells them is what is bounded (``_fan_out``)."""
        ftype = self.mapper.liked_feedback_type
        if ftype is None or not item_values:
            return {}
        users: dict[str, dict[str, Values]] = {}

        async def fetch(item_id: str) -> None:
            for f in await self.client.item_feedback(item_id, ftype):
                users.setdefault(f.user_id, {})[item_id] = item_values[item_id]

        await run_all([lambda i=i: fetch(i) for i in sorted(item_values)], self.concurrency)  # type: ignore[misc]
        return users

    async def write(self, plan: WritePlan) -> None:
        c, limit = self.client, self.concurrency
        for user in plan.reread_users:  # written behind this worker's back: read them again
            self.liked.forget(user)
        lap = self._laps()
        # 1. entity deletes (Gorse also drops their feedback)
        refresh = await self._likers(dict.fromkeys(plan.delete_items))
        if self.fan_out_records and refresh:  # promised before Gorse forgets who they are
            await self._promise(_listed(refresh))
            refresh = {}
        if self.erasures is not None and plan.delete_users:
            await self.erasures.record(plan.delete_users)  # before Gorse forgets them
        if self.erasures is not None and plan.delete_items:
            await self.erasures.record_items(plan.delete_items)  # before: see _drop_orphan_items
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
        lap("1 deletes")
        # 2. items; note which may have changed the values liked labels are built from. Only
        # what this worker itself wrote (and cached) counts as known: an item it does not know
        # (a cold cache after a restart) may have changed, so its likers are refreshed. The
        # cache holds the new values as soon as Gorse does (refreshes must read them); a plan
        # that fails before its refreshes are written owes them to its retry (``_owed``).
        items = list(plan.upsert_items.values())
        if items and self.fan_out_records:
            await self._write_items_promising(items)
        elif items:
            before = self.cache.known(plan.upsert_items)
            await run_all([lambda b=b: c.upsert_items(b) for b in self._batches(items)], limit)  # type: ignore[misc]
            changed: dict[str, Values] = {}
            for item in items:
                values = tuple(self.mapper.item_label_values(item.labels))
                if item.item_id in self._owed or before.get(item.item_id, UNKNOWN) != values:
                    changed[item.item_id] = values
                    self._owed.add(item.item_id)
                self.cache.put(item.item_id, values)
            likers = await self._likers(changed)
            for user, liked in likers.items():
                refresh.setdefault(user, {}).update(liked)
            if self.publisher is not None:
                due = self._clock() + self.retell_after_s
                told: dict[str, set[str]] = {}
                for user, liked in likers.items():
                    for i in liked:
                        told.setdefault(i, set()).add(user)
                self._retell.update({i: (due, v, frozenset(told.get(i, ()))) for i, v in changed.items()})
        for item_id in plan.item_values:  # edited on another shard: read them fresh from Gorse
            self.cache.invalidate(item_id)
        lap("2 items")
        # 3. feedback (PUT: idempotent); events of erased users are refused
        events = await self._events_allowed(list(plan.put_events.values()))
        feedback = [*plan.put_feedback.values(), *events]  # distinct (type, user, item)
        batches = user_batches(feedback, self._batch, lambda f: f.user_id)  # no user in two: run side by side
        await run_all([lambda b=b: c.put_feedback(b) for b in batches], limit)  # type: ignore[misc]
        # every user of the plan's events, refused ones included: an earlier attempt of this
        # plan may have written their events before they were erased, then failed
        await self._erase_again({f.user_id for f in plan.put_events.values()})
        lap("3 feedback")
        # 4. stale types after a threshold crossing, deleted ratings. With remembered feedback,
        # only the types a user holds are deleted (read once when not remembered); else users
        # with many are read first, the others deleted blindly
        now = datetime.now(UTC)
        remembered = self.liked.remember_likes and self.mapper.liked_feedback_type is not None
        future = self._future_users(plan, now)
        at = 1 if remembered else None
        blind, checked = stale.split(plan.stale_feedback, plan.put_feedback, now, at=at)
        if future:  # Gorse hides feedback timestamped later than now from its reads
            blind += [k for u in sorted(future & checked.keys()) for k in checked.pop(u)]
        if remembered:  # many users new to this worker (a full load): one export, not a GET each
            await self.liked.read_many(sorted(checked.keys() | plan.liked_users))
        found: list[stale.StaleKey] = []

        async def check(user: str, keys: list[stale.StaleKey]) -> None:
            if remembered:
                held = await self.liked.held(user)
                found.extend(k for k in keys if k[2] in held.get(k[0], ()))
            else:
                found.extend(await stale.existing(c, user, keys))

        await run_all([lambda u=u, k=k: check(u, k) for u, k in checked.items()], limit)  # type: ignore[misc]
        await run_all(
            [lambda k=k: c.delete_feedback(k[1], k[2], k[0]) for k in blind + found]
            + [lambda k=k: c.delete_feedback(k[0], k[1]) for k in plan.delete_feedback],
            limit,
        )
        orphans = {i for _, i in plan.delete_feedback} | plan.orphan_checks
        if orphans:
            await self._drop_orphan_items(orphans - set(plan.delete_items))
        lap("4 stale, deleted")
        # 5. users: demographics + recomputed liked labels; users refreshed because of an item
        # (their own shard may be elsewhere) are only patched, never created
        self._note_likes(plan)
        if remembered:  # the items their labels need, many cold (a full load): one export
            await self.cache.read_many(self.liked.liked_known(plan.liked_users))
        await run_all(  # the plan's own users beside its items' likers (disjoint: see _refresh_likers)
            [
                lambda: self._write_users(sorted(plan.liked_users), plan),
                lambda: self._tell_likers(refresh, plan),
            ],
            2,
        )
        lap("5 users, likers")
        self._owed.difference_update(plan.upsert_items)  # every refresh is written or published
        if self.tell_owners is not None:
            await self.tell_owners(written_users(plan))

    async def _tell_likers(self, refresh: dict[str, dict[str, Values]], plan: WritePlan) -> None:
        await self._refresh_likers(refresh, plan)
        await self._fan_out(plan.fan_out)

    def _laps(self) -> Callable[[str], None]:
        """Adds the time since the previous lap to ``phase_s[name]`` (where a plan's time goes;
        the freshness bench prints it)."""
        last = [time.monotonic()]

        def lap(name: str) -> None:
            now = time.monotonic()
            self.phase_s[name] = self.phase_s.get(name, 0.0) + now - last[0]
            last[0] = now

        return lap

    def _note_likes(self, plan: WritePlan) -> None:
        """Keep the remembered feedback of this worker's users as this plan left it in Gorse."""
        if self.mapper.liked_feedback_type is None:
            return
        put = [(f.feedback_type, u, i) for (u, i), f in plan.put_feedback.items()]
        removed: list[tuple[str | None, str, str]] = [(None, u, i) for u, i in plan.delete_feedback]
        removed += plan.stale_feedback
        self.liked.changed(put, removed, plan.delete_items)

    def _future_users(self, plan: WritePlan, now: datetime) -> set[str]:
        """Users written feedback timestamped later than now, by this plan or an earlier one
        whose timestamp has not come yet: Gorse's reads hide it, so no read (or memory made of
        one) can say such a user holds nothing of a type. Their stale keys are deleted blindly
        until then."""
        for f in plan.put_feedback.values():
            if f.timestamp is not None and stale.later(f, now):
                ts = stale.aware(f.timestamp)
                self._future[f.user_id] = max(ts, self._future.get(f.user_id, ts))
        for user in [u for u, ts in self._future.items() if ts <= now]:
            del self._future[user]
            self.liked.forget(user)  # what it remembers may lack what was hidden: read again
        return set(self._future)

    async def _events_allowed(self, events: list[Feedback]) -> list[Feedback]:
        """The events whose user is not in the erasure log (see consumers.sink.erasures)."""
        if self.erasures is None or not events:
            return events
        erased = await self.erasures.erased({f.user_id for f in events})
        if not erased:
            return events
        allowed = [f for f in events if f.user_id not in erased]
        refused = len(events) - len(allowed)
        self.refused_events += refused
        if self._on_refused is not None:
            self._on_refused(refused)
        log.warning(  # no ids: they are an erased person's
            "refused %d events of %d erased users (never written, not dead-lettered)",
            refused,
            len(erased),
            extra={"event": "events_of_erased_users"},
        )
        return allowed

    async def _erase_again(self, users: set[str]) -> None:
        """A user logged as erased while their events were written is deleted again: this
        attempt's or an earlier attempt's of the same plan (which may have written the events,
        then failed before this delete), so the delete follows from the log, not from the one
        attempt that saw the race."""
        if self.erasures is None or not users:
            return
        late = sorted(await self.erasures.erased(users))
        if late:
            deletes = [lambda u=u: _ignore_404(self.client.delete_user(u)) for u in late]
            await run_all(deletes, self.concurrency)
            log.warning(
                "deleted %d users again: erased while their events were written",
                len(late),
                extra={"event": "erased_again"},
            )

    def shards_taken(self) -> None:
        """This worker now writes other users: forget what may be older than what their
        previous owner knew (remembered demographics, cached item values)."""
        self.liked.forget()
        self.cache.clear()

    async def retell_due(self) -> int:
        """Tell the likers of items edited ``retell_after_s`` ago again; returns how many. At
        most ``retell_items_per_tick`` items a call, the longest due first: a full load makes
        every item due at once, and reading all their likers every second (an item whose
        likers exceed a tick's budget stays due) was a storm of GETs (93k in a 1M-rating load)."""
        now = self._clock()
        ready = sorted((entry[0], i) for i, entry in self._retell.items() if entry[0] <= now)
        due = {i: self._retell[i] for _, i in ready[: self.retell_items_per_tick]}
        if not due or self.publisher is None:
            return 0
        likers = await self._likers({i: v for i, (_, v, _) in due.items()})
        new: dict[str, dict[str, Values]] = {}
        for user, liked in likers.items():
            for i, v in liked.items():
                if user not in due[i][2]:
                    new.setdefault(user, {})[i] = v
        left: dict[str, set[str]] = {}  # bounded like a plan's fan-out: the rest at the next tick
        for user in sorted(new)[self.fan_out_per_plan :]:
            for i in new.pop(user):
                left.setdefault(i, set()).add(user)
        if new:
            await self.publisher.publish(new)
        for i, (when, v, told) in due.items():
            if self._retell.get(i, (0.0, None, frozenset()))[0] > now:
                continue  # edited again meanwhile: its new entry stands
            if i in left:
                self._retell[i] = (when, v, told | {u for u, liked in new.items() if i in liked})
            else:
                del self._retell[i]
        return len(new)

    async def run_retells(
        self,
        interval_s: float = 1.0,
        max_interval_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """The live consumer's background task. A failure (Gorse or Kinesis down: the entries
        stay due) doubles the wait before the next try, up to ``max_interval_s``, and is logged
        once per outage, with the count and the last error when the retells work again (a
        warning a second for a whole outage told the operator nothing new)."""
        wait, failures = interval_s, 0
        while True:
            await sleep(wait)
            try:
                await self.retell_due()
            except Exception as e:
                failures += 1
                if failures == 1:
                    log.warning(
                        "re-telling likers of edited items failed; retrying with backoff up to %.0f s: %s",
                        max_interval_s,
                        e,
                        extra={"event": "retell_failing"},
                    )
                wait = min(wait * 2, max_interval_s)
                continue
            if failures:
                log.warning(
                    "re-telling likers of edited items works again after %d failed tries",
                    failures,
                    extra={"event": "retell_recovered"},
                )
            wait, failures = interval_s, 0

    async def _write_items_promising(self, items: list[Item]) -> None:
        """Phase 2 with fan-out records: an item whose label values differ from what Gorse
        holds (the cache, else a GET: a cold cache reads Gorse, so a reload of unchanged rows
        tells nobody) gets a fan-out record on its own shard *before* it is written. A worker
        that dies after the write finds Gorse equal on its retry, and the promise already on
        the stream; one that dies before it finds them different and promises again."""
        new = {i.item_id: tuple(self.mapper.item_label_values(i.labels)) for i in items}
        before = await self.cache.values(sorted(new))
        changed = sorted(i for i, v in new.items() if before.get(i) != v)
        await self._promise([FanOutLikers(i) for i in changed])
        await run_all(
            [lambda b=b: self.client.upsert_items(b) for b in self._batches(items)],  # type: ignore[misc]
            self.concurrency,
        )
        for item_id, values in new.items():
            self.cache.put(item_id, values)

    async def _promise(self, requests: list[FanOutLikers]) -> None:
        if requests and self.publisher is not None:
            await self.publisher.fan_out(requests)

    async def _fan_out(self, requests: Sequence[FanOutLikers]) -> None:
        """Keep this plan's fan-out promises: at most ``fan_out_per_plan`` likers are told
        (refresh records on their shards); the rest goes back on the stream as continuation
        records, put before this plan returns (so before its records are checkpointed). Without
        a publisher (a replay) they are left: the replay tells the likers of what it writes."""
        like = self.mapper.liked_feedback_type
        if not requests or self.publisher is None or like is None:
            return
        budget = self.fan_out_per_plan
        values = await self.cache.values(sorted({r.item_id for r in requests}))
        refresh: dict[str, dict[str, Values]] = {}
        told: dict[str, list[str]] = {}
        rest: list[FanOutLikers] = []
        for req in _merged(requests):
            if budget <= 0:
                rest.append(req)
                continue
            if req.users is not None:
                users = list(req.users)
            else:
                users = sorted({f.user_id for f in await self.client.item_feedback(req.item_id, like)})
            users = [u for u in users if u > req.after]
            now, later = users[:budget], users[budget:]
            budget -= len(now)
            for u in now:
                refresh.setdefault(u, {})[req.item_id] = values.get(req.item_id)
            told[req.item_id] = now
            if later:
                listed = tuple(later) if req.users is not None else None
                rest.append(FanOutLikers(req.item_id, now[-1] if now else req.after, listed))
        await self.publisher.publish(refresh)
        await self._promise(rest)
        self.fanned_out += len(refresh)
        due = self._clock() + self.retell_after_s
        for item_id, users in told.items():
            prior = self._retell.get(item_id, (0.0, None, frozenset()))[2]
            self._retell[item_id] = (due, values.get(item_id), prior | frozenset(users))

    async def _refresh_likers(self, refresh: dict[str, dict[str, Values]], plan: WritePlan) -> None:
        if not refresh or self.mapper.liked_feedback_type is None:
            return
        if self.publisher is not None:
            await self.publisher.publish(refresh)
            return
        others = sorted(set(refresh) - plan.liked_users)  # no publisher: written here
        self.refreshed.update(others)
        await run_all(
            [lambda g=g: self.liked.write(g, {}, patch_only=True) for g in self._batches(others)],  # type: ignore[misc]
            max(1, self.concurrency // 4),
        )

    async def _drop_orphan_items(self, item_ids: set[str]) -> None:
        """Delete items that exist only because Gorse auto-inserted them for feedback that is
        gone now: blank (no labels, comment, categories or timestamp: a source movie always
        has a title) and with no feedback left. This happens when a movie's delete (on the
        movie's shard) is applied before an older rating of it (on the user's shard): the PUT
        re-creates the item, the cascaded rating delete then leaves it behind. Narrow race,
        documented: a rating PUT for the same blank item by another shard between the check
        and the delete would be dropped with it (the nightly reconcile restores it).

        It follows from state, not from the attempt that created the blank: every plan that
        removes feedback checks the items it removes it from (``delete_feedback``, and
        ``orphan_checks``: the ratings a user's delete takes with it), so a worker killed
        between the feedback delete and the item delete leaves the check to the retry of the
        same records, however they coalesce then. With the erasure log, only items logged as
        deleted are read (a blank exists only for an item deleted before a rating of it)."""
        if self.erasures is not None and item_ids:
            item_ids = await self.erasures.deleted_items(item_ids)

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


def written_users(plan: WritePlan) -> set[str]:
    """Every user whose row or feedback the plan writes."""
    users = set(plan.delete_users) | plan.upsert_users.keys() | plan.liked_users
    users |= {u for u, _ in plan.put_feedback} | {u for u, _ in plan.delete_feedback}
    users |= {u for _, u, _ in plan.stale_feedback}
    return users


def _listed(refresh: dict[str, dict[str, Values]]) -> list[FanOutLikers]:
    """Fan-out requests listing the likers of each item (deleted items: Gorse forgets them)."""
    by_item: dict[str, set[str]] = {}
    for user, liked in refresh.items():
        for item_id in liked:
            by_item.setdefault(item_id, set()).add(user)
    return [FanOutLikers(i, users=tuple(sorted(us))) for i, us in sorted(by_item.items())]


def _merged(requests: Iterable[FanOutLikers]) -> list[FanOutLikers]:
    """One request per item and kind: read from Gorse after the lowest ``after``; listed users
    united (each after its own ``after``)."""
    read: dict[str, str] = {}
    listed: dict[str, set[str]] = {}
    for r in requests:
        if r.users is None:
            read[r.item_id] = min(read.get(r.item_id, r.after), r.after)
        else:
            listed.setdefault(r.item_id, set()).update(u for u in r.users if u > r.after)
    return [FanOutLikers(i, a) for i, a in sorted(read.items())] + [
        FanOutLikers(i, users=tuple(sorted(us))) for i, us in sorted(listed.items())
    ]
