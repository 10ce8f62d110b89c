"""The read API's logic over Gorse: a user's row (Gorse's, filtered, with fallbacks), similar
items, popular and latest, each item enriched with its title and genres. Caches every Gorse
read it can; knows nothing of HTTP except the Problems it raises for Gorse's failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
    positive_types: frozenset[str] = frozenset({"like", "complete"})  # a user with one: personal
    popular: str = "most_liked_weekly"
    genres_label: str = "genres"
    recent_ttl_s: float = 60.0
    recent_per_user: int = 200
    deadline_s: float = 3.0  # one Gorse read, its wait for a slot in the client's limit included


def page(items: Sequence[str], offset: int, n: int) -> list[str]:
    return list(items[offset : offset + n])


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


class ActionLog(Protocol):
    """What the users just acted on, shared by the workers of one gateway
    (gateway.sharedacts.SharedActions): appended in order, read from a cursor."""

    def append(self, user: str, items: list[str], when: float) -> None: ...

    def since(self, cursor: int) -> tuple[int, list[tuple[str, str, float]]]:
        """(new cursor, the (user, item, when) entries after ``cursor``; the oldest may be
        skipped when the reader is far behind)."""
        ...


class Reads:
    """``shared``: the actions log of the gateway's workers; events accepted by any worker then
    leave the rows read on every worker (the clock must be the same in every process)."""

    def __init__(
        self,
        gorse: GorseClient,
        config: ReadConfig,
        on_cache: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_gorse_error: Callable[[GorseRequestError], None] | None = None,
        shared: ActionLog | None = None,
    ) -> None:
        self.gorse = gorse
        self.cfg = config
        self._on_error = on_gorse_error
        self._clock = clock
        self.shared = shared
        self._cursor = 0
        c = config

        def cache(name: str, ttl: float) -> TtlCache[Any]:
            return TtlCache(name, ttl, c.cache_size, on_result=on_cache, clock=clock)

        self.recs = cache("recommend", c.cache_ttl_s)
        self.feedback = cache("feedback", c.fresh_ttl_s)
        self.items = cache("item", c.item_ttl_s)
        self.lists = cache("list", c.cache_ttl_s)
        # items acted on through this gateway, before Gorse has them: user -> {item: when}
        self._recent: dict[str, dict[str, float]] = {}

    @property
    def caches(self) -> list[TtlCache[Any]]:
        return [self.recs, self.feedback, self.items, self.lists]

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
        """Events just accepted: these items leave the user's rows now, not after Gorse (on
        every worker, through ``shared``)."""
        now = self._clock()
        self._remember(user, items, now)
        if self.shared is not None:
            self.shared.append(user, items, now)

    def _remember(self, user: str, items: list[str], when: float) -> None:
        recent = self._recent.pop(user, {})  # re-inserted last: the users are kept in LRU order
        for i in items:
            recent.pop(i, None)
            recent[i] = when  # each user's items in the order acted, the oldest first
        self._prune(recent, self._clock())
        if recent:
            self._recent[user] = recent
        self.feedback.invalidate(user)
        while len(self._recent) > self.cfg.cache_size:
            self._recent.pop(next(iter(self._recent)))

    def _catch_up(self) -> None:
        """What the other workers accepted since the last read (this one's own entries too,
        which changes nothing)."""
        if self.shared is None:
            return
        self._cursor, entries = self.shared.since(self._cursor)
        for user, item, when in entries:
            self._remember(user, [item], when)

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
        self._catch_up()  # before the feedback: a user who acted on another worker is re-read
        feedback: list[Feedback] = await self.feedback.get_or_load(
            user, lambda: self._call(lambda: self.gorse.user_feedback(user))
        )
        acted = {f.item_id for f in feedback} | self._recently_acted(user)
        ids: list[str] = []
        source = "personal"
        if any(f.feedback_type in self.cfg.positive_types for f in feedback):
            ids = [i for i in await self._personal(user, feedback, depth, category) if i not in acted]
        if not ids:  # no like yet (new, unknown, or only plays): popular, else latest
            ids, source = await self._fallback(depth, category, acted)
        return {
            "user": user,
            "source": source,
            "offset": offset,
            "items": await self.enrich(page(ids, offset, n)),
        }

    async def _personal(
        self, user: str, feedback: list[Feedback], depth: int, category: str | None
    ) -> list[str]:
        """Gorse's own list (its recommenders run per request on the user's latest likes:
        docker/gorse/config.toml [recommend.ranker]), cached per state of the user's feedback:
        a new like (seen within ``fresh_ttl_s``) is a new key, so it shapes the next row."""
        state = hash(tuple(sorted((f.key, f.timestamp.isoformat() if f.timestamp else "") for f in feedback)))
        result: list[str] = await self.recs.get_or_load(
            (user, category, depth, state),
            lambda: self._call(lambda: self.gorse.recommend(user, depth, category)),
        )
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
