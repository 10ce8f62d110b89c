"""Async Gorse client: one aiohttp session, pooled, with timeouts and typed errors.

- Feedback is written with PUT (overwrite), never POST: Gorse 0.5 adds Value on conflict for
  POST, so a replayed POST would inflate it. PUT makes every write idempotent.
- Retriable: connection errors, timeouts, 429, 5xx (including SQLite's "database is locked").
  Permanent: every other 4xx, with Gorse's message. The status -> error mapping is the one
  table gorse_cdc.retry.STATUS_CLASS.
- Entities are validated (IDs, labels) when they are built, so bad input is refused before
  any request is sent.
- The API key travels only in the X-API-Key header; it is never in a repr, a log line or an
  exception message.
- Several servers (a cluster's gorse-servers): API calls go round-robin, one connection pool per
  server; a server that cannot be reached (nothing was sent) gives its request to the next and
  sits out a few seconds (gorse_cdc.gorse.servers). The bulk and dashboard routes go to the
  master (base_url). Errors are classified as with one server.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson

from gorse_cdc.errors import GorseFatalError, GorsePermanentError, GorseRequestError, GorseRetriableError
from gorse_cdc.gorse.limiter import AdaptiveLimit
from gorse_cdc.gorse.models import Feedback, Item, User, validate_id
from gorse_cdc.gorse.servers import ServerRing
from gorse_cdc.gorse.write_locks import MergedWrites, WriteLocks
from gorse_cdc.retry import ErrorClass, status_class

log = logging.getLogger(__name__)
T = TypeVar("T")
LatencyObserver = Callable[[str, float], None]  # (call: "DELETE /api/user/{id}", seconds)

# the literal segments of the Gorse routes this client calls; any other segment is an id
_ROUTE_WORDS = frozenset(
    [
        "api",
        "user",
        "users",
        "item",
        "items",
        "feedback",
        "health",
        "ready",
        "recommend",
        "session",
        "neighbors",
        "latest",
        "popular",
        "non-personalized",
        "dashboard",
        "bulk",
        "like",
        "unlike",
    ]
)


def route_of(path: str) -> str:
    """The route template of a request path (bounded, for metrics): ids become ``{id}``."""
    parts = path.split("?", 1)[0].split("/")
    return "/".join(p if p in _ROUTE_WORDS or not p else "{id}" for p in parts)


def _seg(kind: str, value: str) -> str:
    return quote(validate_id(kind, value), safe="")


# routes that name no entity: a 404 there is never about one record
COLLECTION_ROUTES = frozenset(
    {"/api/users", "/api/items", "/api/feedback", "/api/health/ready", "/api/health/live", "/api/bulk"}
)


def status_error(
    method: str, path: str, status: int, message: str, retry_after: str | None = None
) -> GorseRequestError:
    """The typed error for an HTTP error status, by gorse_cdc.retry.STATUS_CLASS. A 404 from a
    collection route (no entity in the path) means the URL or the routing is wrong: fatal."""
    cls = status_class(status)
    if status == 404 and path.split("?", 1)[0].rstrip("/") in COLLECTION_ROUTES:
        cls = ErrorClass.FATAL
    if cls is ErrorClass.RETRIABLE:
        after = float(retry_after) if retry_after and retry_after.isdigit() else None
        return GorseRetriableError(method, path, status, message, after)
    if cls is ErrorClass.FATAL:
        return GorseFatalError(method, path, status, message)
    return GorsePermanentError(method, path, status, message)


# served by the master only (gorse-in-one, or the cluster's gorse-master), never by a gorse-server
MASTER_ROUTES = ("/api/bulk/", "/api/dump", "/api/restore", "/api/purge", "/api/dashboard/")


def chunks(rows: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class GorseClient:
    """Talks to Gorse: the API on ``servers`` round-robin (default: ``base_url``), the bulk
    endpoints on ``base_url`` (gorse-in-one, or the cluster's master)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        batch_size: int = 500,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 16,
        verify_tls: bool = True,
        observe_latency: LatencyObserver | None = None,
        feedback_writers: int | None = None,
        adaptive: bool = False,
        slow_call_s: float = 1.0,
        servers: Sequence[str] = (),
        write_partitions: int | None = None,
    ) -> None:
        # requests in flight adapt to Gorse's answers (gorse_cdc.gorse.limiter); None: fixed
        self.limit = AdaptiveLimit(max_connections, slow_s=slow_call_s) if adaptive else None
        self._base = base_url.rstrip("/")
        self.servers = ServerRing(servers or [self._base])
        self.served: collections.Counter[str] = collections.Counter()  # answers per server URL
        # feedback PUTs in flight at once (None: as many as callers); see GorseSettings
        self._feedback_writers = asyncio.Semaphore(feedback_writers) if feedback_writers else None
        # concurrent writes share no user and no item (None: no discipline); see write_locks
        self.write_locks = WriteLocks(write_partitions) if write_partitions else None
        # feedback rows waiting for one partition go out in one call (write_locks.MergedWrites)
        self._merged = (
            MergedWrites(self.write_locks, self._put_rows, lambda: self.batch_size)
            if self.write_locks
            else None
        )
        self._api_key = api_key
        self.batch_size = batch_size
        # sock_connect, not connect: waiting for a pooled connection is back-pressure, not an
        # unreachable server (32 callers on 16 connections timed out at 5 s while Gorse answered)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._max_connections = max_connections
        self._verify_tls = verify_tls
        self._observe = observe_latency
        self._sessions: dict[str, aiohttp.ClientSession] = {}  # one pool per server

    def __repr__(self) -> str:  # never the key
        servers = "" if self.servers.urls == [self._base] else f", servers={self.servers.urls!r}"
        return f"GorseClient({self._base!r}{servers}, api_key={'***' if self._api_key else None})"

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> GorseClient:
        g = settings.gorse
        return cls(
            settings.gorse_url,
            g.api_key.get_secret_value() or None,
            batch_size=g.batch_size,
            timeout_s=g.timeout_s,
            connect_timeout_s=g.connect_timeout_s,
            max_connections=g.max_connections,
            verify_tls=g.verify_tls,
            feedback_writers=g.feedback_writers,
            adaptive=g.adaptive_concurrency,
            slow_call_s=g.slow_call_s,
            servers=settings.gorse_urls,
            write_partitions=g.write_partitions,
            **kwargs,
        )

    async def __aenter__(self) -> GorseClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_session(self, base: str | None = None) -> aiohttp.ClientSession:
        base = base or self._base
        session = self._sessions.get(base)
        if session is None or session.closed:
            headers = {"Content-Type": "application/json"}
            if self._api_key:
                headers["X-API-Key"] = self._api_key
            session = self._sessions[base] = aiohttp.ClientSession(
                headers=headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._verify_tls),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    # ---- transport -----------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        data = orjson.dumps(body) if body is not None else None
        bases = [self._base] if path.startswith(MASTER_ROUTES) else self.servers.order()
        if self.limit is not None:
            await self.limit.acquire()  # waits here, where no timeout runs, not inside Gorse
        started, failed = time.perf_counter(), True
        try:
            status, payload, retry_after = await self._send(bases, method, path, data, params)
            failed = status >= 500 or status == 429
        except asyncio.CancelledError:
            failed = False  # the caller gave up (a deadline, a client gone): not Gorse's failure
            raise
        finally:
            if self.limit is not None:
                self.limit.release(time.perf_counter() - started, failed=failed)
            if self._observe is not None:
                self._observe(f"{method} {route_of(path)}", time.perf_counter() - started)
        if status >= 400:
            message = payload.decode("utf-8", "replace").strip()[:500]
            raise status_error(method, path, status, message, retry_after)
        if raw:
            return payload
        return orjson.loads(payload) if payload else None

    async def _send(
        self, bases: list[str], method: str, path: str, data: bytes | None, params: dict[str, str] | None
    ) -> tuple[int, bytes, str | None]:
        """One request to the first server that can be reached: a connection refused (nothing
        sent) passes it to the next; any other failure raises GorseRetriableError."""
        for i, base in enumerate(bases):
            try:
                session = self._ensure_session(base)
                async with session.request(method, base + path, data=data, params=params) as resp:
                    payload = await resp.read()
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
            except aiohttp.ClientConnectorError as e:
                if self.servers.unreachable(base):  # once per outage, not at each retry
                    log.warning(
                        "Gorse server %s unreachable (%s): its calls go to the others, and it is "
                        "tried again every %.0f s",
                        base,
                        e,
                        self.servers.cool_off_s,
                    )
                if i + 1 < len(bases):
                    continue
                raise GorseRetriableError(method, path, None, f"{type(e).__name__}: {e}") from None
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                self.servers.unreachable(base)  # the next request tries another server first
                raise GorseRetriableError(method, path, None, f"{type(e).__name__}: {e}") from None
            if self.servers.reachable(base):
                log.warning("Gorse server %s answers again", base)
            self.served[base] += 1
            return status, payload, retry_after
        raise AssertionError("no Gorse server to send to")  # ServerRing never gives none

    # ---- health --------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """GET /api/health/ready; raises GorseRetriableError when not ready."""
        result: dict[str, Any] = await self._request("GET", "/api/health/ready")
        return result

    # ---- writes (batched and chunked) -----------------------------------------------
    async def _chunked(self, method: str, path: str, rows: Sequence[dict[str, Any]]) -> int:
        affected = 0
        for chunk in chunks(rows, self.batch_size):
            result = await self._request(method, path, body=list(chunk))
            affected += int((result or {}).get("RowAffected", 0))
        return affected

    async def upsert_users(self, users: Sequence[User]) -> int:
        locks = self.write_locks
        if locks is None:
            return await self._chunked("POST", "/api/users", [u.to_json() for u in users])
        rows = [u.to_json() for u in sorted(users, key=lambda u: u.user_id)]  # stable: first wins
        async with locks.users.hold(u.user_id for u in users):
            return await locks.retrying(lambda: self._chunked("POST", "/api/users", rows))

    async def upsert_items(self, items: Sequence[Item]) -> int:
        locks = self.write_locks
        if locks is None:
            return await self._chunked("POST", "/api/items", [i.to_json() for i in items])
        parts = locks.split(sorted(items, key=lambda i: i.item_id), lambda i: i.item_id)
        return await locks.each_partition(
            parts, lambda part: self._chunked("POST", "/api/items", [i.to_json() for i in part])
        )

    async def put_feedback(self, feedback: Sequence[Feedback]) -> int:
        """Overwrite feedback rows (idempotent). Never POST: see the module docstring."""
        if self._feedback_writers is None:
            return await self._put_feedback(feedback)
        async with self._feedback_writers:
            return await self._put_feedback(feedback)

    async def _put_feedback(self, feedback: Sequence[Feedback]) -> int:
        locks = self.write_locks
        if locks is None:
            return await self._chunked("PUT", "/api/feedback", [f.to_json() for f in feedback])
        ordered = sorted(feedback, key=lambda f: (f.user_id, f.item_id, f.feedback_type))  # stable
        parts = locks.split(ordered, lambda f: f.item_id)
        async with locks.users.hold(f.user_id for f in feedback):
            if self._merged is not None:
                return await self._merged.write(parts)
            return await locks.each_partition(parts, self._put_rows)

    async def _put_rows(self, rows: Sequence[Feedback]) -> int:
        return await self._chunked("PUT", "/api/feedback", [f.to_json() for f in rows])

    async def patch_user(self, user_id: str, *, labels: Any = None, comment: str | None = None) -> None:
        body = {"Labels": labels, "Comment": comment}
        await self._request("PATCH", f"/api/user/{_seg('UserId', user_id)}", body=body)

    async def patch_item(self, item_id: str, patch: dict[str, Any]) -> None:
        await self._request("PATCH", f"/api/item/{_seg('ItemId', item_id)}", body=patch)

    async def delete_user(self, user_id: str) -> None:
        """Deletes the user and, in Gorse, all of the user's feedback."""
        path = f"/api/user/{_seg('UserId', user_id)}"
        if self.write_locks is None:
            await self._request("DELETE", path)
            return
        async with self.write_locks.users.hold([user_id]):  # not beside a write of the user's
            await self._request("DELETE", path)

    async def delete_item(self, item_id: str) -> None:
        path = f"/api/item/{_seg('ItemId', item_id)}"
        if self.write_locks is None:
            await self._request("DELETE", path)
            return
        parts = self.write_locks.split([item_id], str)
        await self.write_locks.each_partition(parts, lambda _: self._delete_counted(path))

    async def _delete_counted(self, path: str) -> int:
        await self._request("DELETE", path)
        return 0

    async def delete_feedback(self, user_id: str, item_id: str, feedback_type: str | None = None) -> int:
        """Delete one typed row, or every type for (user, item) when feedback_type is None."""
        u, i = _seg("UserId", user_id), _seg("ItemId", item_id)
        path = f"/api/feedback/{u}/{i}"
        if feedback_type is not None:
            path = f"/api/feedback/{_seg('FeedbackType', feedback_type)}/{u}/{i}"
        result = await self._request("DELETE", path)
        return int((result or {}).get("RowAffected", 0))

    # ---- reads -------------------------------------------------------------------------
    async def get_user(self, user_id: str) -> User | None:
        try:
            return User.from_json(await self._request("GET", f"/api/user/{_seg('UserId', user_id)}"))
        except GorsePermanentError as e:
            if e.status == 404:
                return None
            raise

    async def get_item(self, item_id: str) -> Item | None:
        try:
            return Item.from_json(await self._request("GET", f"/api/item/{_seg('ItemId', item_id)}"))
        except GorsePermanentError as e:
            if e.status == 404:
                return None
            raise

    async def user_feedback(self, user_id: str, feedback_type: str | None = None) -> list[Feedback]:
        path = f"/api/user/{_seg('UserId', user_id)}/feedback"
        if feedback_type is not None:
            path += f"/{_seg('FeedbackType', feedback_type)}"
        rows = await self._request("GET", path)
        return [Feedback.from_json(r) for r in rows or []]

    async def item_feedback(self, item_id: str, feedback_type: str | None = None) -> list[Feedback]:
        path = f"/api/item/{_seg('ItemId', item_id)}/feedback/"
        if feedback_type is not None:
            path = f"/api/item/{_seg('ItemId', item_id)}/feedback/{_seg('FeedbackType', feedback_type)}"
        rows = await self._request("GET", path)
        return [Feedback.from_json(r) for r in rows or []]

    # ---- recommendations (the gateway's reads) -------------------------------------------
    async def recommend(self, user_id: str, n: int, category: str | None = None) -> list[str]:
        """The user's cached recommendations (item ids, best first); [] for an unknown user."""
        path = f"/api/recommend/{_seg('UserId', user_id)}"
        if category:
            path += f"/{_seg('Category', category)}"
        return [str(i) for i in await self._request("GET", path, params={"n": str(n)}) or []]

    async def session_recommend(self, feedback: Sequence[Feedback], n: int) -> list[str]:
        """Recommendations computed on request from a list of feedback (the latest actions)."""
        body = [f.to_json() for f in feedback]
        rows = await self._request("POST", "/api/session/recommend", body=body, params={"n": str(n)})
        return [str(r["Id"]) for r in rows or []]

    async def _scored(self, path: str, n: int) -> list[str]:
        return [str(r["Id"]) for r in await self._request("GET", path, params={"n": str(n)}) or []]

    async def latest(self, n: int, category: str | None = None) -> list[str]:
        return await self._scored("/api/latest" + (f"/{_seg('Category', category)}" if category else ""), n)

    async def non_personalized(self, name: str, n: int, category: str | None = None) -> list[str]:
        path = f"/api/non-personalized/{_seg('Name', name)}"
        return await self._scored(path + (f"/{_seg('Category', category)}" if category else ""), n)

    async def item_neighbor_scores(self, item_id: str, n: int) -> list[tuple[str, float]]:
        """The item's neighbours with their similarity scores, best first."""
        rows = await self._request(
            "GET", f"/api/item/{_seg('ItemId', item_id)}/neighbors/", params={"n": str(n)}
        )
        return [(str(r["Id"]), float(r.get("Score") or 0.0)) for r in rows or []]

    async def item_neighbors(self, item_id: str, n: int, category: str | None = None) -> list[str]:
        path = f"/api/item/{_seg('ItemId', item_id)}/neighbors/"
        return await self._scored(path + (_seg("Category", category) if category else ""), n)

    async def _paginate(self, path: str, key: str, page_size: int) -> AsyncIterator[dict[str, Any]]:
        cursor = ""
        while True:
            page = await self._request("GET", path, params={"n": str(page_size), "cursor": cursor})
            for row in page.get(key) or []:
                yield row
            cursor = page.get("Cursor") or ""
            if not cursor:
                return

    async def iter_users(self, page_size: int = 1000) -> AsyncIterator[User]:
        async for row in self._paginate("/api/users", "Users", page_size):
            yield User.from_json(row)

    async def iter_items(self, page_size: int = 1000) -> AsyncIterator[Item]:
        async for row in self._paginate("/api/items", "Items", page_size):
            yield Item.from_json(row)

    async def iter_feedback(self, page_size: int = 1000) -> AsyncIterator[Feedback]:
        async for row in self._paginate("/api/feedback", "Feedback", page_size):
            yield Feedback.from_json(row)

    # ---- master bulk export (JSONL) ------------------------------------------------------
    async def _export(self, what: str) -> list[dict[str, Any]]:
        payload: bytes = await self._request("GET", f"/api/bulk/{what}", raw=True)
        return [orjson.loads(line) for line in payload.splitlines() if line.strip()]

    async def export_lines(self, what: str, chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the master's JSONL export of ``users|items|feedback`` line by line (memory
        bounded by one chunk, not by the export's size)."""
        path = f"/api/bulk/{what}"
        session = self._ensure_session(self._base)
        try:
            async with session.get(self._base + path, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    message = (await resp.read()).decode("utf-8", "replace").strip()[:500]
                    raise status_error("GET", path, resp.status, message, resp.headers.get("Retry-After"))
                rest = b""
                async for chunk in resp.content.iter_chunked(chunk_bytes):
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        if line.strip():
                            yield line
                if rest.strip():
                    yield rest
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise GorseRetriableError("GET", path, None, f"{type(e).__name__}: {e}") from None

    async def export_users(self) -> list[User]:
        return [User.from_json(d) for d in await self._export("users")]

    async def export_items(self) -> list[Item]:
        return [Item.from_json(d) for d in await self._export("items")]

    async def export_feedback(self) -> list[Feedback]:
        return [Feedback.from_json(d) for d in await self._export("feedback")]
