"""The read API's logic over Gorse: a user's row (blended, filtered, with fallbacks), similar
items, popular and latest, each item enriched with its title and genres. Caches every Gorse
read it can; knows nothing of HTTP except the Problems it raises for Gorse's failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.blend import interleave, latest_positive, merge_neighbors, page
from gateway.cache import TtlCache
from gateway.problems import Problem
from gorse_cdc.errors import GorseFatalError, GorsePermanentError, GorseRequestError
from gorse_cdc.gorse.client import GorseClient
from gorse_cdc.gorse.models import Feedback, Item

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReadConfig:
    cache_ttl_s: float = 30.0
    fresh_ttl_s: float = 0.5
    item_ttl_s: float = 300.0
    cache_size: int = 10_000
    depth: int = 100
    session_types: frozenset[str] = frozenset({"like", "complete"})
    session_size: int = 10
    popular: str = "most_liked_weekly"
    genres_label: str = "genres"
    recent_ttl_s: float = 60.0
    recent_per_user: int = 200
    deadline_s: float = 3.0  # one Gorse read, its wait for a slot in the client's limit included


def too_slow(deadline_s: float) -> Problem:
    return Problem(
        503,
        "upstream-timeout",
        f"the recommender did not answer within {deadline_s:g} s; retry shortly",
        headers={"Retry-After": "1"},
    )


def upstream_problem(e: GorseRequestError) -> Problem:
    """Gorse's failure as the app should see it."""
    if isinstance(e, GorsePermanentError) and e.status == 404:
        return Problem(404, "not-found", e.detail[:200])
    if isinstance(e, GorseFatalError | GorsePermanentError):
        return Problem(502, "upstream-refused", f"the recommender refused the request ({e.status})")
    retry = getattr(e, "retry_after_s", None)
    return Problem(
        503,
        "upstream-unavailable",
        "the recommender is unavailable; retry shortly",
        headers={"Retry-After": str(int(retry or 1))},
    )


class Reads:
    def __init__(
        self,
        gorse: GorseClient,
        config: ReadConfig,
        on_cache: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_gorse_error: Callable[[GorseRequestError], None] | None = None,
    ) -> None:
        self.gorse = gorse
        self.cfg = config
        self._on_error = on_gorse_error
        self._clock = clock
        c = config

        def cache(name: str, ttl: float) -> TtlCache[Any]:
            return TtlCache(name, ttl, c.cache_size, on_result=on_cache, clock=clock)

        self.recs = cache("recommend", c.cache_ttl_s)
        self.session = cache("session", c.cache_ttl_s)
        self.feedback = cache("feedback", c.fresh_ttl_s)
        self.items = cache("item", c.item_ttl_s)
        self.lists = cache("list", c.cache_ttl_s)
        self._session_off_until = float("-inf")  # Gorse refused session recommendations
        # items acted on through this gateway, before Gorse has them: user -> {item: when}
        self._recent: dict[str, dict[str, float]] = {}

    @property
    def caches(self) -> list[TtlCache[Any]]:
        return [self.recs, self.session, self.feedback, self.items, self.lists]

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One Gorse read within the deadline: a request past it leaves the client's queue (or
        its connection) instead of reaching Gorse after its caller gave up."""
        try:
            async with asyncio.timeout(self.cfg.deadline_s):
                return await make()
        except TimeoutError:
            raise too_slow(self.cfg.deadline_s) from None
        except GorseRequestError as e:
            if self._on_error is not None:
                self._on_error(e)
            raise upstream_problem(e) from None

    def acted(self, user: str, items: list[str]) -> None:
        """Events just accepted: these items leave the user's rows now, not after Gorse."""
        now = self._clock()
        recent = self._recent.pop(user, {})  # re-inserted last: the users are kept in LRU order
        for i in items:
            recent.pop(i, None)
            recent[i] = now  # each user's items in the order acted, the oldest first
        self._prune(recent, now)
        self._recent[user] = recent
        self.feedback.invalidate(user)
        while len(self._recent) > self.cfg.cache_size:
            self._recent.pop(next(iter(self._recent)))

    def _prune(self, recent: dict[str, float], now: float) -> None:
        """Drops the items older than ``recent_ttl_s`` (Gorse has them by then) and the oldest
        past ``recent_per_user``."""
        floor = now - self.cfg.recent_ttl_s
        while recent:
            oldest, at = next(iter(recent.items()))
            if at >= floor and len(recent) <= self.cfg.recent_per_user:
                break
            del recent[oldest]

    def _recently_acted(self, user: str) -> set[str]:
        recent = self._recent.get(user)
        if not recent:
            return set()
        self._prune(recent, self._clock())
        if not recent:
            del self._recent[user]
        return set(recent)

    # ---- rows ---------------------------------------------------------------------------
    async def recommend(self, user: str, n: int, offset: int, category: str | None) -> dict[str, Any]:
        depth = max(self.cfg.depth, n + offset)
        feedback_task = self.feedback.get_or_load(
            user, lambda: self._call(lambda: self.gorse.user_feedback(user))
        )
        cached_task = self.recs.get_or_load(
            (user, category, depth), lambda: self._call(lambda: self.gorse.recommend(user, depth, category))
        )
        if self.recs.fresh((user, category, depth)):  # no Gorse call for it: no task needed
            feedback, cached = await feedback_task, await cached_task
        else:
            feedback, cached = await asyncio.gather(feedback_task, cached_task)
        acted = {f.item_id for f in feedback} | self._recently_acted(user)
        ids: list[str] = []
        source = "personal"
        if acted:  # a user with no feedback yet is new to Gorse: popular, else latest
            fresh = await self._session(user, feedback, depth)
            ids = interleave(fresh, cached, exclude=acted)
        if not ids:
            ids, source = await self._fallback(depth, category, acted)
        return {
            "user": user,
            "source": source,
            "offset": offset,
            "items": await self.enrich(page(ids, offset, n)),
        }

    async def _session(self, user: str, feedback: list[Feedback], depth: int) -> list[str]:
        latest = latest_positive(feedback, self.cfg.session_types, self.cfg.session_size)
        if not latest or self._clock() < self._session_off_until:
            return []
        key = (user, tuple(f.key for f in latest), depth)

        async def compute() -> list[str]:
            fresh = await self.gorse.session_recommend(latest, depth)
            if fresh:
                return fresh
            # the local Gorse 0.5.11 answers an uncategorised session request with nothing even
            # when its item-to-item neighbours exist: sum the latest likes' neighbours here instead
            lists = await asyncio.gather(*(self._neighbors(f.item_id, depth) for f in latest))
            return merge_neighbors(lists, exclude=(f.item_id for f in latest))

        async def compute_in_time() -> list[str]:  # raises TimeoutError to every sharer of the load
            async with asyncio.timeout(self.cfg.deadline_s):
                return await compute()

        try:
            result: list[str] = await self.session.get_or_load(key, compute_in_time)
            return result
        except TimeoutError:  # the cached row still serves
            log.warning("session recommendation slower than %g s; row from the cache", self.cfg.deadline_s)
            return []
        except GorseRequestError as e:  # the cached row still serves
            if self._on_error is not None:
                self._on_error(e)
            if isinstance(e, GorsePermanentError | GorseFatalError):  # e.g. no item-to-item in Gorse
                self._session_off_until = self._clock() + 60.0
                log.warning(
                    "session recommendation refused by Gorse; rows use the cache only for 60 s: %s", e
                )
            else:
                log.warning("session recommendation unavailable: %s", e)
            return []

    async def _neighbors(self, item: str, depth: int) -> list[tuple[str, float]]:
        async def load() -> list[tuple[str, float]]:
            try:
                return await self.gorse.item_neighbor_scores(item, depth)
            except GorsePermanentError as e:
                if e.status == 404:  # an item deleted since it was liked: no neighbours
                    return []
                raise

        result: list[tuple[str, float]] = await self.lists.get_or_load(("neighbors", item, depth), load)
        return result

    async def _fallback(self, depth: int, category: str | None, acted: set[str]) -> tuple[list[str], str]:
        popular = await self.popular_ids(depth, category)
        if popular := [i for i in popular if i not in acted]:
            return popular, "popular"
        latest = await self.latest_ids(depth, category)
        return [i for i in latest if i not in acted], "latest"

    async def popular_ids(self, n: int, category: str | None) -> list[str]:
        name = self.cfg.popular
        return list(
            await self.lists.get_or_load(
                ("popular", category, n),
                lambda: self._call(lambda: self.gorse.non_personalized(name, n, category)),
            )
        )

    async def latest_ids(self, n: int, category: str | None) -> list[str]:
        return list(
            await self.lists.get_or_load(
                ("latest", category, n), lambda: self._call(lambda: self.gorse.latest(n, category))
            )
        )

    async def similar(self, item: str, n: int, offset: int, category: str | None) -> dict[str, Any]:
        if await self._item(item) is None:
            raise Problem(404, "not-found", f"item {item!r} does not exist")
        ids = await self.lists.get_or_load(
            ("similar", item, category, n + offset),
            lambda: self._call(lambda: self.gorse.item_neighbors(item, n + offset, category)),
        )
        return {"item": item, "offset": offset, "items": await self.enrich(page(ids, offset, n))}

    async def listing(self, which: str, n: int, offset: int, category: str | None) -> dict[str, Any]:
        ids = await (self.popular_ids if which == "popular" else self.latest_ids)(n + offset, category)
        return {"source": which, "offset": offset, "items": await self.enrich(page(ids, offset, n))}

    # ---- enrichment ------------------------------------------------------------------------
    async def _item(self, item_id: str) -> Item | None:
        result: Item | None = await self.items.get_or_load(
            item_id, lambda: self._call(lambda: self.gorse.get_item(item_id))
        )
        return result

    async def enrich(self, ids: list[str]) -> list[dict[str, Any]]:
        if all(self.items.fresh(i) for i in ids):  # the usual case: no task per item
            items = [await self._item(i) for i in ids]
        else:
            items = await asyncio.gather(*(self._item(i) for i in ids))
        return [self.describe(it) for it in items if it is not None and not it.is_hidden]

    def describe(self, item: Item) -> dict[str, Any]:
        labels = item.labels if isinstance(item.labels, dict) else {}
        genres = labels.get(self.cfg.genres_label, [])
        return {
            "id": item.item_id,
            "title": item.comment,
            "genres": genres if isinstance(genres, list) else [genres],
            "categories": list(item.categories),
            "timestamp": item.timestamp.isoformat() if item.timestamp else None,
        }
