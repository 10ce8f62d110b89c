"""A gorse-in-one of its own on a SQL store (a fresh database of the stack's PostgreSQL, or of a
MariaDB of the project's own), and the concurrent write load the deadlock test and the write
bench run against it. Never the stack's own Gorse: that one others use.

The load: ``writers`` writers (shards: each has its own users) PUT feedback batches for
``seconds``. Every batch rates hot items that every writer shares (what makes Gorse 0.5.11's
map-ordered statements deadlock) and the items of the current 200 ms window, which one writer
(the window's "movie shard") creates with POST /api/items at the same moment: a rating may
arrive before its movie or after. What was written is returned, to compare with Gorse's export.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from entrypoints.stack import install
from entrypoints.stack.components import Stack
from entrypoints.stack.mariadb import LocalMariaDB
from entrypoints.stack.processes import http_ok
from gorse_cdc.errors import GorseRequestError
from gorse_cdc.gorse import Feedback, GorseClient, Item
from gorse_cdc.gorse.write_locks import is_deadlock
from gorse_cdc.settings import Settings

DEADLOCK_LINE = re.compile(r"deadlock", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SqlGorse:
    url: str
    log: Path
    store: str

    def deadlocks_logged(self) -> int:
        """Gorse's "internal server error" lines about a store deadlock (40P01 / 1213)."""
        text = self.log.read_text("utf-8", "replace") if self.log.exists() else ""
        return sum(
            1 for line in text.splitlines() if "internal server error" in line and DEADLOCK_LINE.search(line)
        )


@contextmanager
def postgres_database(settings: Settings) -> Iterator[str]:
    """A new database of the stack's PostgreSQL; its Gorse DSN. Dropped afterwards."""
    st, src = settings.stack, settings.source
    db = f"gorse_sql_{uuid.uuid4().hex[:8]}"
    pg = Stack(settings).postgres
    pg.psql(f"CREATE DATABASE {db} OWNER {src.user}")
    try:
        yield (
            f"postgres://{src.user}:{src.password.get_secret_value()}@{st.host}:{st.port('postgres')}/{db}"
            "?sslmode=disable"
        )
    finally:
        pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@contextmanager
def mariadb_database(settings: Settings) -> Iterator[str]:
    """A new database of the project's MariaDB (<stack dir>/mariadb, installed and started when
    needed; stopped afterwards if started here); its Gorse DSN."""
    st = settings.stack
    server = LocalMariaDB(st.dir, st.host, st.port("mariadb"))
    proc = server.start()
    db = f"gorse_sql_{uuid.uuid4().hex[:8]}"
    server.sql(f"CREATE DATABASE {db}")
    try:
        yield server.dsn(db)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS {db}")
        if proc is not None:
            server.stop(proc)


@contextmanager
def gorse_on(settings: Settings, dsn: str, folder: Path) -> Iterator[SqlGorse]:
    """A gorse-in-one whose data and cache stores are ``dsn``, on free loopback ports."""
    http, grpc = free_port(), free_port()
    text = (install.GORSE_MODULE_DIR / "config.toml").read_text("utf-8")
    text = re.sub(r"(?m)^port = \d+", f"port = {grpc}", text)
    text = re.sub(r"(?m)^http_port = \d+", f"http_port = {http}", text)
    text = re.sub(r'(?m)^(http_)?host = "[^"]*"', lambda m: f'{m.group(1) or ""}host = "127.0.0.1"', text)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text)
    key = settings.gorse.api_key.get_secret_value()
    env = {
        **os.environ,
        "GORSE_DATA_STORE": dsn,
        "GORSE_CACHE_STORE": dsn,
        "GORSE_SERVER_API_KEY": key,
        "GORSE_ADMIN_API_KEY": key,
        "GORSE_DASHBOARD_USER_NAME": "gorse-cdc",
        "GORSE_DASHBOARD_PASSWORD": key,
    }
    (folder / "cache").mkdir(exist_ok=True)
    binary = install.ensure_gorse(settings.stack.cache_dir, settings.stack.gorse_version)
    argv = [str(binary), "-c", str(folder / "config.toml"), "--cache-path", str(folder / "cache")]
    log = folder / "gorse.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 90
        while not http_ok(url + "/api/health/ready"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Gorse on {dsn.split(':', 1)[0]} not ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield SqlGorse(url, log, dsn.split(":", 1)[0])
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LoadResult:
    tag: str
    seconds: float = 0.0
    rows: int = 0  # feedback rows written (answered 200)
    calls: int = 0
    deadlocks: int = 0  # deadlock answers the load itself saw (and wrote again)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    feedback: dict[tuple[str, str, str], float] = field(default_factory=dict)  # last value written
    new_items: set[str] = field(default_factory=set)  # created during the load by a "movie shard"

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def concurrent_load(
    client: GorseClient,
    *,
    writers: int,
    seconds: float,
    batch: int = 500,
    users_per_writer: int = 200,
    hot_items: int = 40,
    new_per_window: int = 4,
    tag: str | None = None,
) -> LoadResult:
    """See the module docstring. A deadlock answer is written again (the sink retries too) and
    counted; any other error is counted and the batch dropped from what is expected."""
    result = LoadResult(tag or uuid.uuid4().hex[:6])  # one tag: loads of two clients share keys
    tag = result.tag
    created: set[int] = set()
    end = time.monotonic() + seconds

    def window() -> int:
        return int(time.monotonic() * 5)

    async def written(call: Callable[[], Awaitable[object]]) -> bool:
        for attempt in range(20):
            try:
                await call()
                return True
            except GorseRequestError as e:
                if not is_deadlock(e) or attempt == 19:
                    result.errors[str(e)[:120]] += 1
                    return False
                result.deadlocks += 1
        return False

    async def movie_shard(w: int, win: int) -> None:
        """The window's items, created by one writer while the others rate them."""
        if win % writers != w or win in created:
            return
        created.add(win)
        ids = [f"{tag}-n{win}-{k}" for k in range(new_per_window)]
        items = [Item(i, {"genres": ["Drama"]}, ("Drama",), None, f"Movie {i}") for i in ids]
        if await written(lambda: client.upsert_items(items)):
            result.new_items.update(ids)

    async def writer(w: int) -> None:
        n = 0
        while time.monotonic() < end:
            n += 1
            win = window()
            rows: dict[tuple[str, str, str], Feedback] = {}
            for j in range(batch):
                user = f"{tag}-w{w}-u{(n * 7 + j) % users_per_writer}"
                hot = f"{tag}-h{(n + j * 3) % hot_items}"
                item = f"{tag}-n{win}-{j % new_per_window}" if j % 10 == 0 else hot
                kind = "like" if (n + j) % 3 else "unlike"
                rows[(kind, user, item)] = Feedback(kind, user, item, float(n))
            batch_rows = list(rows.values())
            put = functools.partial(client.put_feedback, batch_rows)
            _, ok = await asyncio.gather(movie_shard(w, win), written(put))
            result.calls += 1
            if ok:
                result.rows += len(rows)
                result.feedback.update({k: f.value for k, f in rows.items()})

    started = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    result.seconds = time.monotonic() - started
    return result
