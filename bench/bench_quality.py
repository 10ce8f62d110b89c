"""How good are the recommendations the pipeline serves? Precision@10, Recall@10 and NDCG@10 of
Gorse's own list, the gateway's row, Popular and Latest, beside offline anchors trained on the
same data by a well-kept library (implicit's ALS and BPR: what a data scientist gets from the
same split in a notebook), then how the row reacts while the held-out likes stream in.

Steps (progress is printed for each):
  1. data: the real MovieLens 100K (--movielens DIR: u.user, u.item, u.genre, u.data) or, by
     default, the synthetic generator sized like it (943 users, 1,682 movies, 100,000 ratings;
     it has latent taste: a per-user genre affinity, a per-movie quality and a per-user bias
     decide the rating, while WHICH movies a user rates is drawn by popularity alone).
  2. split by time (rating times first shifted so the newest is an hour old, as a live
     platform's history: Gorse's Popular counts the last 7 days of likes; --original-times
     keeps them): each user's last --holdout (10 %) of ratings held out; relevant = held-out
     likes (rating >= 4). Lists never count what the user rated in training: Gorse and the
     gateway drop those themselves; Popular and Latest are read deep and the user's seen items
     skipped (what an app shows).
  3. the training part goes through the real pipeline: its own PostgreSQL database in the
     stack's cluster -> `gorse-cdc dms run` (own slot, stream, S3 prefix) -> the consumer (own
     lease table) -> the bench's OWN Gorse (same build, same docker/gorse/config.toml unless
     --gorse-config, own ports and stores; --topology): the shared stack's Gorse is never touched.
  4. fit: the bench's Gorse is restarted once Gorse holds every training rating (its master
     fits at start, then every fit_period); the bench polls the master's task list
     (/api/dashboard/tasks) until "Collect Garbage in Cache" (the step after the users' lists
     are written) has finished.
  5. a real `gorse-cdc gateway serve` (own key table and events stream) on that Gorse; every
     user's row read through it, Gorse's GET /api/recommend/{user}?n=10, Popular
     (GET /api/non-personalized/<gateway.popular_recommender>) and Latest (GET /api/latest).
  6. streaming: the held-out likes are committed to PostgreSQL at --stream-rate per second in
     time order (each user's in turn) for --stream-seconds; for each, the user's row is read
     before the commit and again --settle seconds after Gorse holds the like: is the user's NEXT
     held-out like in the row, and how many of their remaining held-out likes does it show?

Prints the quality table and the reaction table; draws --png (matplotlib: pip install -e
'.[bench]', which also brings implicit).

    python bench/bench_quality.py                      # synthetic: 7.5 min here (load 14-22)
    python bench/bench_quality.py --movielens ~/ml-100k --png bench/quality.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it (its own threads)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import boto3
import numpy as np
import psycopg

from bench.quality_metrics import (
    LIKE,
    Rating,
    Scores,
    Split,
    evaluate,
    next_like_probes,
    rolling_rate,
    time_split,
    top_unseen,
)
from consumers.metrics import Metrics
from consumers.wiring import open_consumer
from entrypoints.stack import install
from entrypoints.stack.components import Part, Stack
from entrypoints.stack.processes import tcp_open
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from producers.dms.slot import drop_slot
from producers.movielens import parse_genres, parse_items, parse_ratings, parse_users
from producers.synthetic_model import GeneratorConfig, World
from tests.integration.gateway.conftest import Gateway, free_port

ROOT = Path(__file__).resolve().parents[1]
EPOCH_2000 = datetime(2000, 1, 1)
K = 10


# ---- data ------------------------------------------------------------------------------------
@dataclass
class Data:
    users: list[tuple[Any, ...]]
    movies: list[tuple[Any, ...]]
    ratings: list[Rating]
    source: str


def synthetic(users: int, movies: int, ratings: int, seed: int) -> Data:
    world = World(GeneratorConfig(users=users, movies=movies, ratings=ratings, seed=seed))
    out: list[Rating] = []
    for c in world.rating_chunks():
        secs = c.rated_at_us / 1e6
        out += [
            Rating(int(u), int(m), int(r), float(t))
            for u, m, r, t in zip(c.user_ids, c.movie_ids, c.ratings, secs, strict=True)
        ]
    src = f"synthetic (seed {seed}): {users:,} users, {movies:,} movies, {len(out):,} ratings"
    return Data(list(world.user_rows()), list(world.movie_rows()), out, src)


def movielens(d: Path) -> Data:
    genres = parse_genres(d / "u.genre")
    movies = [(m.movie_id, m.title, m.release_date, m.genres) for m in parse_items(d / "u.item", genres)]
    ratings = [
        Rating(u, m, r, (when - EPOCH_2000).total_seconds()) for u, m, r, when in parse_ratings(d / "u.data")
    ]
    users = list(parse_users(d / "u.user"))
    return Data(
        users, movies, ratings, f"MovieLens 100K ({d}): {len(users):,} users, {len(ratings):,} ratings"
    )


def shifted_to_now(ratings: list[Rating]) -> tuple[list[Rating], float]:
    """Every rating moved by one offset so that the newest is an hour old: the data replayed as
    a platform's recent history (Gorse's Popular counts the last 7 days of likes by the
    feedback's own timestamp). Order and gaps are kept."""
    now = (datetime.now(UTC).replace(tzinfo=None) - EPOCH_2000).total_seconds()
    offset = now - 3600 - max(r.at for r in ratings)
    return [Rating(r.user, r.movie, r.rating, r.at + offset) for r in ratings], offset


def rated_at(r: Rating) -> datetime:
    return EPOCH_2000 + timedelta(seconds=r.at)


# ---- offline anchors -----------------------------------------------------------------------
ALS_GRID = [
    {"factors": f, "regularization": reg, "alpha": a}
    for f in (8, 32, 100)
    for reg in (0.01, 1.0, 10.0)
    for a in (1.0, 10.0)
]
BPR_GRID = [{"factors": f, "learning_rate": lr} for f in (16, 64) for lr in (0.01, 0.05)]


def _fit_lists(name: str, params: dict[str, float], split: Split, seed: int) -> dict[int, list[int]]:
    """One implicit model fitted on ``split.train``'s likes (binary), the first K unseen items for
    every user with a held-out rating."""
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    from scipy.sparse import csr_matrix

    users = sorted({r.user for r in split.train} | {r.user for r in split.test})
    movies = sorted({r.movie for r in split.train})
    ui = {u: i for i, u in enumerate(users)}
    mi = {m: i for i, m in enumerate(movies)}

    def matrix(rows: list[Rating]) -> Any:
        m = csr_matrix(
            (np.ones(len(rows), dtype=np.float32), ([ui[r.user] for r in rows], [mi[r.movie] for r in rows])),
            shape=(len(users), len(movies)),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    liked, seen = matrix([r for r in split.train if r.rating >= LIKE]), matrix(split.train)
    kw = {k: (int(v) if k == "factors" else v) for k, v in params.items()}
    model: Any
    if name == "ALS":
        model = AlternatingLeastSquares(**kw, iterations=15, random_state=seed)
    else:
        model = BayesianPersonalizedRanking(**kw, regularization=0.01, iterations=100, random_state=seed)
    model.fit(liked, show_progress=False)
    wanted = sorted({r.user for r in split.test})
    idx = np.array([ui[u] for u in wanted])
    ids, _ = model.recommend(idx, seen[idx], N=K, filter_already_liked_items=True)
    return {u: [movies[j] for j in row if j >= 0] for u, row in zip(wanted, ids, strict=True)}


def offline_lists(split: Split, seed: int, tune: bool) -> dict[str, dict[int, list[int]]]:
    """implicit's ALS and BPR on the training likes (binary), each with the hyperparameters that
    did best (NDCG@10) on a validation split made the same way INSIDE the training part (what a
    data scientist does in a notebook; the held-out part is never looked at), refitted on the
    whole training part; and the training likes' counts (the textbook popularity baseline). Each
    list is minus the user's training items."""
    out: dict[str, dict[int, list[int]]] = {}
    try:
        import implicit  # noqa: F401
    except ImportError:
        print("  no offline anchor: pip install -e '.[bench]' for implicit")
    else:
        inner = time_split(split.train, 0.1)
        inner_rel = inner.relevant()
        for name, grid in (("ALS", ALS_GRID), ("BPR", BPR_GRID)):
            t = time.monotonic()
            best = grid[0]
            if tune:
                scored = [
                    (evaluate(_fit_lists(name, p, inner, seed), inner_rel, K).ndcg, i)
                    for i, p in enumerate(grid)
                ]
                best = grid[max(scored)[1]]
            out[f"implicit {name}"] = _fit_lists(name, best, split, seed)
            shown = ", ".join(f"{k}={v:g}" for k, v in best.items())
            how = f"best of {len(grid)} on validation" if tune else "untuned"
            print(f"  implicit {name} ({shown}; {how}): {time.monotonic() - t:.0f} s")
    counts = Counter(r.movie for r in split.train if r.rating >= LIKE)
    ranked = [m for m, _ in counts.most_common()]
    seen_by = split.seen()
    wanted = sorted({r.user for r in split.test})
    out["popular (offline: training likes)"] = {
        u: top_unseen(ranked, seen_by.get(u, set()), K) for u in wanted
    }
    return out


# ---- the bench's own Gorse -------------------------------------------------------------------
class BenchGorse(Stack):
    """The stack's Gorse part (entrypoints.stack: its topology, single or cluster) on a private
    folder, ports and store databases, with a chosen config file."""

    def __init__(self, settings: Settings, config: Path, shared: Settings) -> None:
        super().__init__(settings)
        self.config = config
        # a cluster's store databases live in the shared stack's PostgreSQL
        self.postgres = Stack(shared).postgres
        self.gorse.postgres = self.postgres

    def start_gorse(self) -> Part:
        original = install.GORSE_MODULE_DIR
        tmp = Path(tempfile.mkdtemp(prefix="bench-quality-config-"))
        shutil.copy(self.config, tmp / "config.toml")
        install.GORSE_MODULE_DIR = tmp  # the stack renders its ports into a copy of <dir>/config.toml
        try:
            return super().start_gorse()
        finally:
            install.GORSE_MODULE_DIR = original
            shutil.rmtree(tmp, ignore_errors=True)

    def stop_gorse(self) -> None:
        self.gorse.stop()

    def drop_stores(self) -> None:
        """PostgreSQL store databases of a cluster (SQLite files stay in the logs folder)."""
        if self.settings.stack.gorse_store_kind == "postgres":
            for db in self.gorse.databases:
                self.postgres.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def free_offset(base: Settings) -> int:
    """A port offset at which every Gorse port of either topology is free."""
    st = base.stack
    for _ in range(200):
        off = random.randrange(3000, 9000, 7)
        ports = (st.gorse_http_port, st.gorse_grpc_port, st.gorse_worker_port, *st.gorse_server_ports)
        at = [p + off + st.port_offset for p in ports]  # the stack's offset applies on top
        if all(1024 < p < 65000 and not tcp_open("127.0.0.1", p) for p in at):
            return off
    raise SystemExit("no free ports for the bench's Gorse")


def private(base: Settings, tag: str, gorse: Settings) -> Settings:
    """The pipeline's settings on the bench's own names, talking to the bench's Gorse (its
    master for bulk calls and the task list, its servers for the API in a cluster)."""
    return base.model_copy(
        update={
            "kinesis": base.kinesis.model_copy(update={"stream_name": f"quality-{tag}", "shard_count": 2}),
            "s3": base.s3.model_copy(update={"prefix": f"quality-{tag}"}),
            "source": base.source.model_copy(
                update={"slot_name": f"quality_{tag}", "database": f"quality_{tag}"}
            ),
            # a generous failover time: on a busy shared machine a late renewal must not stop
            # the shard (the bench's consumer is alone on its stream)
            "leases": base.leases.model_copy(
                update={"table": f"quality-leases-{tag}", "failover_ms": 60_000}
            ),
            "consumer": base.consumer.model_copy(update={"metrics_port": 0}),
            "gorse": base.gorse.model_copy(update={"url": gorse.gorse_url, "urls": gorse.gorse_urls}),
        }
    )


def child_env(s: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "GORSE_CDC_KINESIS__STREAM_NAME": s.kinesis.stream_name,
        "GORSE_CDC_KINESIS__SHARD_COUNT": str(s.kinesis.shard_count),
        "GORSE_CDC_S3__PREFIX": s.s3.prefix,
        "GORSE_CDC_SOURCE__SLOT_NAME": s.source.slot_name,
        "GORSE_CDC_SOURCE__DATABASE": s.source.database,
        "GORSE_CDC_LEASES__TABLE": s.leases.table,
        "GORSE_CDC_GORSE__URL": s.gorse_url,
        "GORSE_CDC_GORSE__URLS": json.dumps(s.gorse_urls),
    }


def create_database(base: Settings, s: Settings) -> None:
    pg = Stack(base).postgres
    db, user = s.source.database, s.source.user
    pg.psql(f"CREATE DATABASE {db} OWNER {user}")
    schema = (ROOT / "entrypoints" / "stack" / "schema.sql").read_text("utf-8")
    pg.psql(f"SET ROLE {user}; {schema}", db=db)


def drop_database(base: Settings, s: Settings) -> None:
    Stack(base).postgres.psql(f"DROP DATABASE IF EXISTS {s.source.database} WITH (FORCE)")


def load_source(s: Settings, data: Data, train: Sequence[Rating]) -> None:
    with psycopg.connect(s.source_dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (user_id, age, gender, occupation, zip) FROM STDIN") as cp:
            for row in data.users:
                cp.write_row(row)
        with cur.copy("COPY movies (movie_id, title, release_date, genres) FROM STDIN") as cp:
            for row in data.movies:
                cp.write_row(row)
        with cur.copy("COPY ratings (user_id, movie_id, rating, rated_at) FROM STDIN") as cp:
            for r in train:
                cp.write_row((r.user, r.movie, r.rating, rated_at(r)))


def applied(metrics: Metrics, table: str) -> float:
    """Records of ``table`` the consumer has applied to Gorse so far."""
    return sum(
        smp.value
        for m in metrics.records_applied.collect()
        for smp in m.samples
        if smp.name.endswith("_total") and smp.labels.get("table") == table
    )


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


async def gorse_tasks(s: Settings, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    headers = {"X-API-Key": s.gorse.api_key.get_secret_value()}
    async with http.get(f"{s.gorse_url}/api/dashboard/tasks", headers=headers) as r:
        if r.status != 200:
            return []
        body = await r.json()
    return list(body) if isinstance(body, list) else []


async def wait_fitted(s: Settings, since: datetime, timeout_s: float) -> float:
    """Until the master's loop that began after ``since`` has written the users' lists (its
    "Collect Garbage in Cache" step finished); prints the running steps meanwhile."""
    t0 = time.monotonic()
    last = ""
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - t0 < timeout_s:
            tasks = await gorse_tasks(s, http)
            for t in tasks:
                if t.get("Name") == "Collect Garbage in Cache" and t.get("Status") in ("Complete", "Failed"):
                    finished = datetime.fromisoformat(str(t.get("FinishTime")).replace("Z", "+00:00"))
                    if finished > since:
                        return time.monotonic() - t0
            running = [
                f"{t['Name']} {t.get('Count', 0)}/{t.get('Total', 0)}"
                for t in tasks
                if t.get("Status") == "Running"
            ]
            line = ", ".join(running) or "waiting"
            if line != last:
                print(f"  {time.monotonic() - t0:6.0f} s  {line}", flush=True)
                last = line
            await asyncio.sleep(2)
    raise SystemExit(f"Gorse did not finish its fit in {timeout_s:.0f} s (--fit-timeout)")


# ---- reading lists ---------------------------------------------------------------------------
@dataclass
class Lists:
    gw_key: str
    gw: Gateway
    g: GorseClient
    http: aiohttp.ClientSession
    sources: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # gateway answers other than 200 (retried)

    async def gateway_row(self, user: int) -> list[int]:
        """The row through the gateway; 503s (Gorse slower than the gateway's 3 s deadline on a
        busy machine) are retried for up to ~30 s, then raise."""
        url = f"{self.gw.url}/v1/users/{user}/recommendations?n={K}"
        for attempt in range(8):
            async with self.http.get(url, headers={"X-API-Key": self.gw_key}, ssl=self.gw.ssl()) as r:
                if r.status == 200:
                    body = await r.json()
                    self.sources[body.get("source", "?")] += 1
                    return [int(i["id"]) for i in body["items"]]
                self.refused += 1
                if r.status not in (429, 503) or attempt == 7:
                    raise RuntimeError(f"gateway {r.status}: {await r.text()}")
            await asyncio.sleep(0.5 * (attempt + 1))
        return []

    async def gorse_row(self, user: int) -> list[int]:
        return [int(i) for i in await self.g.recommend(str(user), K)]


async def gather_limited(n: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


# ---- streaming the held-out likes --------------------------------------------------------------
@dataclass
class Reaction:
    # (seconds since the stream began, hit) per probe: the user's next held-out like in the row
    before: dict[str, list[tuple[float, bool]]] = field(default_factory=lambda: defaultdict(list))
    after: dict[str, list[tuple[float, bool]]] = field(default_factory=lambda: defaultdict(list))
    # precision@10 of the row against the user's not-yet-streamed held-out likes
    p_before: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    p_after: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    changed: dict[str, int] = field(default_factory=Counter)
    to_gorse: list[float] = field(default_factory=list)  # commit -> like readable in Gorse, s
    streamed: int = 0
    lost: int = 0
    unreadable: int = 0  # probes skipped: a row could not be read


class Pacer:
    """A steady rate: the n-th caller goes at t0 + n / rate; none after ``until``."""

    def __init__(self, rate: float, until: float) -> None:
        self.interval, self.until = 1.0 / rate, until
        self.next = time.monotonic()

    async def wait(self) -> bool:
        at = self.next
        if at > self.until:
            return False
        self.next += self.interval
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        return True


async def stream_likes(
    s: Settings, lists: Lists, split: Split, rate: float, seconds: float, settle: float
) -> Reaction:
    likes: dict[int, list[Rating]] = defaultdict(list)
    for r in split.test:
        if r.rating >= LIKE:
            likes[r.user].append(r)
    for rows in likes.values():
        rows.sort(key=lambda r: (r.at, r.movie))
    probes = next_like_probes(split.test)
    rx = Reaction()
    t0 = time.monotonic()
    pacer = Pacer(rate, t0 + seconds)
    conn = await psycopg.AsyncConnection.connect(s.source_dsn, autocommit=True)
    lock = asyncio.Lock()  # one connection: one statement at a time

    async def rows(user: int) -> dict[str, list[int]] | None:
        try:
            gw, gr = await asyncio.gather(lists.gateway_row(user), lists.gorse_row(user))
        except Exception as e:  # a read that failed after its retries: this probe is lost
            rx.unreadable += 1
            if rx.unreadable <= 3:
                print(f"  a row could not be read (probe skipped): {e}", flush=True)
            return None
        return {"gateway row": gw, "Gorse /api/recommend": gr}

    async def chain(user: int) -> None:
        mine = likes[user]
        nxt = {p.liked: p.next_like for p in probes.get(user, [])}
        for i, r in enumerate(mine):
            if not await pacer.wait():
                return
            t = time.monotonic() - t0
            remaining = {x.movie for x in mine[i + 1 :]}
            before = await rows(user)
            async with lock:
                await conn.execute(
                    "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (%s, %s, %s, %s)",
                    (r.user, r.movie, r.rating, rated_at(r)),
                )
            committed = time.monotonic()
            rx.streamed += 1
            while True:
                fb = await lists.g.user_feedback(str(user), "like")
                if any(f.item_id == str(r.movie) for f in fb):
                    rx.to_gorse.append(time.monotonic() - committed)
                    break
                if time.monotonic() - committed > 60:
                    rx.lost += 1
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(settle)
            after = await rows(user)
            if before is None or after is None:
                continue
            for name in before:
                rx.changed[name] += before[name] != after[name]
                if r.movie in nxt:
                    rx.before[name].append((t, nxt[r.movie] in before[name][:K]))
                    rx.after[name].append((t, nxt[r.movie] in after[name][:K]))
                if remaining:
                    rx.p_before[name].append(len(set(before[name][:K]) & remaining) / K)
                    rx.p_after[name].append(len(set(after[name][:K]) & remaining) / K)

    async def progress() -> None:
        while True:
            await asyncio.sleep(15)
            p50 = statistics.median(rx.to_gorse) if rx.to_gorse else float("nan")
            print(
                f"  {time.monotonic() - t0:5.0f} s  {rx.streamed:,} likes committed, "
                f"commit -> in Gorse p50 {p50:.1f} s",
                flush=True,
            )

    # users take turns in the order of their first held-out like
    order = sorted(likes, key=lambda u: (likes[u][0].at, u))
    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(chain(u) for u in order))
    finally:
        ticker.cancel()
        await conn.close()
    return rx


# ---- output ----------------------------------------------------------------------------------
def print_quality(results: dict[str, Scores], anchor: str | None) -> None:
    print(f"\nquality on the held-out likes (k = {K}); users evaluated: {next(iter(results.values())).users}")
    print(f"  {'list':<36} {'P@10':>7} {'R@10':>7} {'NDCG@10':>8} {'empty':>6} {'vs anchor':>10}")
    ref = results[anchor].ndcg if anchor else 0.0
    for name, sc in results.items():
        rel = f"{sc.ndcg / ref:>9.0%}" if ref else ""
        print(f"  {name:<36} {sc.precision:>7.4f} {sc.recall:>7.4f} {sc.ndcg:>8.4f} {sc.empty:>6} {rel:>10}")


def print_reaction(rx: Reaction) -> None:
    lat = sorted(rx.to_gorse)
    print(
        f"\nstreaming: {rx.streamed:,} held-out likes committed, {rx.lost} not in Gorse within 60 s, "
        f"{rx.unreadable} probes skipped (a row unreadable)"
    )
    if lat:
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        print(f"  commit -> like readable in Gorse: p50 {statistics.median(lat):.2f} s, p99 {p99:.2f} s")
    print(
        f"  {'list':<24} {'next like in row: before':>25} {'after':>7} "
        f"{'P@10 remaining: before':>23} {'after':>7} {'row changed':>12}"
    )
    for name in rx.before or rx.p_before:
        b, a = rx.before[name], rx.after[name]
        hb = sum(h for _, h in b) / len(b) if b else 0.0
        ha = sum(h for _, h in a) / len(a) if a else 0.0
        pb = statistics.mean(rx.p_before[name]) if rx.p_before[name] else 0.0
        pa = statistics.mean(rx.p_after[name]) if rx.p_after[name] else 0.0
        n = max(len(rx.p_before[name]), 1)
        print(
            f"  {name:<24} {hb:>24.1%} {ha:>7.1%} {pb:>23.4f} {pa:>7.4f} "
            f"{rx.changed[name] / max(rx.streamed, 1):>11.0%}   ({len(b)} probes, {n} rows)"
        )


def draw(results: dict[str, Scores], rx: Reaction | None, path: Path, title: str, window: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: pip install -e '.[bench]' for matplotlib")
        return
    fig, axes = plt.subplots(1, 2 if rx else 1, figsize=(13 if rx else 7, 4.6))
    ax = axes[0] if rx else axes
    names = list(results)
    x = np.arange(len(names))
    for j, (metric, label) in enumerate([(0, "Precision@10"), (1, "Recall@10"), (2, "NDCG@10")]):
        ax.bar(x + (j - 1) * 0.27, [results[n].row()[metric] for n in names], 0.27, label=label)
    ax.set_xticks(x, [n.replace(" (", "\n(") for n in names], rotation=30, ha="right", fontsize=7)
    ax.set_title("held-out likes (each user's last 10 % by time)")
    ax.legend(fontsize=8)
    if rx:
        ax2 = axes[1]
        colors = {"gateway row": "tab:blue", "Gorse /api/recommend": "tab:orange"}
        for name, c in colors.items():
            for series, style, when in ((rx.before, ":", "before"), (rx.after, "-", "after")):
                pts = rolling_rate(series.get(name, []), window)
                if pts:
                    ax2.plot(
                        [p[0] for p in pts], [p[1] for p in pts], style, color=c, label=f"{name}, {when}"
                    )
        ax2.set_xlabel("seconds into the stream of held-out likes")
        ax2.set_ylabel(f"next held-out like in the row of 10 ({window:.0f} s windows)")
        ax2.set_title("a like streamed in: before it vs once Gorse holds it")
        ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


def config_commit(config: Path) -> str:
    """The config file's last commit, or its hash when it is not in the repository or changed."""
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:10]
    out = subprocess.run(
        ["git", "log", "-1", "--format=%h %cI", "--", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0 or not out.stdout.strip():
        return f"not in git, sha256 {digest}"
    dirty = subprocess.run(["git", "diff", "--quiet", "--", str(config)], cwd=ROOT).returncode != 0
    return out.stdout.strip() + (f" + uncommitted changes, sha256 {digest}" if dirty else "")


# ---- main ------------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> None:
    t_start = time.monotonic()
    data = movielens(args.movielens) if args.movielens else synthetic(943, 1682, args.ratings, args.seed)
    if not args.original_times:
        data.ratings, offset = shifted_to_now(data.ratings)
        print(
            f"rating times shifted by {offset / 86400:,.0f} days: "
            "the newest is an hour old (--original-times)"
        )
    split = time_split(data.ratings, args.holdout)
    relevant = split.relevant()
    seen = split.seen()
    print(f"data: {data.source}")
    print(
        f"split: {len(split.train):,} training ratings, {len(split.test):,} held out "
        f"({sum(len(v) for v in relevant.values()):,} held-out likes of {len(relevant)} users)"
    )
    print("offline anchors on the training part ...")
    results: dict[str, Scores] = {}
    offline = offline_lists(split, args.seed, not args.no_tune)

    base = Settings()
    tag = uuid.uuid4().hex[:8]
    topology = args.topology or base.stack.gorse_topology
    off, st = free_offset(base), base.stack
    gorse_settings = base.model_copy(
        update={
            "stack": st.model_copy(
                update={  # own folder and Gorse ports; the stack's offset (PostgreSQL) kept
                    "dir": Path(tempfile.mkdtemp(prefix="bench-quality-")),
                    "gorse_http_port": st.gorse_http_port + off,
                    "gorse_grpc_port": st.gorse_grpc_port + off,
                    "gorse_worker_port": st.gorse_worker_port + off,
                    "gorse_server_ports": [p + off for p in st.gorse_server_ports],
                    "gorse_topology": topology,
                    "gorse_database": f"quality_{tag}_gorse",
                }
            )
        }
    )
    gorse = BenchGorse(gorse_settings, args.gorse_config, base)
    s = private(base, tag, gorse_settings)
    logs = gorse_settings.stack.dir
    print(
        f"the bench's Gorse ({topology}): {s.gorse_urls}, "
        f"config {args.gorse_config} ({config_commit(args.gorse_config)})"
    )
    print(f"logs: {logs}")
    create_database(base, s)
    ensure_stream(s)
    ensure_bucket(s)
    env = child_env(s)
    gw: Gateway | None = None
    dms: subprocess.Popen[bytes] | None = None
    rx: Reaction | None = None
    try:
        gorse.start_gorse()  # not in a thread: a SIGTERM meanwhile must not leave it running
        await asyncio.to_thread(load_source, s, data, split.train)
        metrics = Metrics()
        async with GorseClient.from_settings(s) as g, open_consumer(s, metrics) as consumer:
            stop = asyncio.Event()
            consuming = asyncio.create_task(consumer.run(stop))
            try:
                t = time.monotonic()
                dms = spawn(
                    [sys.executable, "-m", "entrypoints.cli", "dms", "run", "--mode", "full-load-and-cdc"],
                    env,
                    logs / "dms.log",
                )
                print(f"loading {len(split.train):,} training ratings through DMS -> Kinesis -> consumer ...")
                have, last = 0.0, 0.0
                while have < len(split.train):  # the consumer's count: exporting would stall it
                    if dms.poll() is not None:
                        raise SystemExit(f"dms exited with {dms.returncode}: see {logs / 'dms.log'}")
                    await asyncio.sleep(1)
                    have = applied(metrics, "ratings")
                    if time.monotonic() - last > 10:
                        last = time.monotonic()
                        print(
                            f"  {time.monotonic() - t:5.0f} s  {have:,.0f} ratings applied to Gorse",
                            flush=True,
                        )
                held = len(await g.export_feedback())
                if held < len(split.train):
                    raise SystemExit(f"Gorse holds {held:,} of {len(split.train):,} training ratings")
                print(f"  full load: {time.monotonic() - t:.0f} s")
                print(
                    "restarting the bench's Gorse: its master fits at start "
                    "(the consumer reports Gorse unreachable meanwhile: expected) ..."
                )
                since = datetime.now(UTC)
                gorse.stop_gorse()
                gorse.start_gorse()
                fit_s = await wait_fitted(s, since, args.fit_timeout)
                print(f"  fitted: users' lists written {fit_s:.0f} s after the restart")

                gw = Gateway(
                    base,
                    {
                        **env,
                        "GORSE_CDC_GATEWAY__KEYS_TABLE": f"quality-keys-{tag}",
                        "GORSE_CDC_GATEWAY__EVENTS_STREAM": f"quality-events-{tag}",
                    },
                    free_port(),
                    logs / "gateway.log",
                )
                ensure_stream(s, f"quality-events-{tag}", 1)
                await asyncio.to_thread(gw.start)
                key = (await asyncio.to_thread(gw.create_key, "bench", "reader", 10_000, 10_000))["key"]
                async with aiohttp.ClientSession() as http:
                    lists = Lists(key, gw, g, http)
                    users = sorted(relevant)
                    print(f"reading {len(users)} users' lists from Gorse and the gateway ...")
                    gorse_rows = await gather_limited(8, [lists.gorse_row(u) for u in users])
                    gw_rows = await gather_limited(8, [lists.gateway_row(u) for u in users])
                    depth = K + max((len(v) for v in seen.values()), default=0)
                    popular = [
                        int(i) for i in await g.non_personalized(base.gateway.popular_recommender, depth)
                    ]
                    latest = [int(i) for i in await g.latest(depth)]
                    results["gateway row"] = evaluate(dict(zip(users, gw_rows, strict=True)), relevant, K)
                    results["Gorse /api/recommend"] = evaluate(
                        dict(zip(users, gorse_rows, strict=True)), relevant, K
                    )
                    results["Gorse Popular"] = evaluate(
                        {u: top_unseen(popular, seen.get(u, set()), K) for u in users}, relevant, K
                    )
                    results["Gorse Latest"] = evaluate(
                        {u: top_unseen(latest, seen.get(u, set()), K) for u in users}, relevant, K
                    )
                    for name, lst in offline.items():
                        results[name] = evaluate(lst, relevant, K)
                    print(
                        f"  gateway row sources: {dict(lists.sources)}; "
                        f"Gorse Popular has {len(popular)} items"
                    )
                    anchors = [n for n in results if n.startswith("implicit")]
                    anchor = max(anchors, key=lambda n: results[n].ndcg) if anchors else None
                    print_quality(results, anchor)
                    if args.stream_seconds > 0:
                        print(
                            f"\nstreaming the held-out likes at {args.stream_rate:g}/s for "
                            f"{args.stream_seconds:.0f} s (DMS -> Kinesis -> consumer -> Gorse) ..."
                        )
                        lists.sources.clear()
                        try:
                            rx = await stream_likes(
                                s, lists, split, args.stream_rate, args.stream_seconds, args.settle
                            )
                        except Exception as e:  # keep the quality figures and draw them
                            print(f"  streaming failed: {e!r}")
                        else:
                            print_reaction(rx)
                        print(
                            f"  gateway row sources while streaming: {dict(lists.sources)}, "
                            f"{lists.refused} answers other than 200 (retried)"
                        )
            finally:
                if dms is not None and dms.poll() is None:
                    dms.send_signal(signal.SIGTERM)
                    dms.wait(30)
                stop.set()
                await consuming
    finally:  # every step even if one fails: a slot left behind keeps the source's WAL
        steps = [gw.stop] if gw is not None else []
        steps += [gorse.stop_gorse, gorse.drop_stores, lambda: cleanup(base, s, tag)]
        for step in steps:
            try:
                step()
            except Exception as e:
                print(f"cleanup step failed: {e!r}")
    print_aims(results)
    if args.png and results:
        title = (
            f"gorse-cdc recommendation quality, {data.source.split(':')[0]}, config "
            f"{config_commit(args.gorse_config)} ({datetime.now(UTC):%Y-%m-%d})"
        )
        draw(results, rx, Path(args.png), title, args.window)
    print(f"total {time.monotonic() - t_start:.0f} s")


def print_aims(results: dict[str, Scores]) -> None:
    """The issue's aims on NDCG@10; "Popular" twice: Gorse's own (likes of the last 7 days) and
    the all-time count of training likes (the stronger baseline)."""
    if "gateway row" not in results:
        return
    gw = results["gateway row"].ndcg

    def line(what: str, other: float, factor: float, ok: bool) -> None:
        ratio = f"{gw / other:.2f}x" if other else "-"
        print(f"  {what:<44} {gw:.4f} vs {factor:g} x {other:.4f} ({ratio})  {'met' if ok else 'NOT met'}")

    print("\naims (NDCG@10 of the gateway's row):")
    gorse = results["Gorse /api/recommend"].ndcg
    line(">= Gorse alone", gorse, 1, gw >= gorse)
    for name in ("Gorse Popular", "popular (offline: training likes)"):
        line(f">= 2 x {name}", results[name].ndcg, 2, gw >= 2 * results[name].ndcg)
    anchors = [n for n in results if n.startswith("implicit")]
    if anchors:
        best = max(anchors, key=lambda n: results[n].ndcg)
        a = results[best].ndcg
        line(f"within 10 % of the anchor ({best})", a, 1, gw >= 0.9 * a)


def cleanup(base: Settings, s: Settings, tag: str) -> None:
    """Drop the bench's slot (a slot left behind keeps WAL forever), streams and database."""
    drop_slot(s.source_dsn, s.source.slot_name)
    kinesis = boto3.client("kinesis", **s.aws_client_kwargs("kinesis"))
    for stream in (s.kinesis.stream_name, f"quality-events-{tag}"):
        with contextlib.suppress(kinesis.exceptions.ResourceNotFoundException):
            kinesis.delete_stream(StreamName=stream)
    drop_database(base, s)


async def cancelled_by_sigterm(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await main(args)


if __name__ == "__main__":

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument(
        "--movielens", type=Path, default=None, help="a MovieLens 100K folder (default: synthetic)"
    )
    p.add_argument("--ratings", type=int, default=100_000, help="synthetic ratings (943 users, 1,682 movies)")
    p.add_argument("--seed", type=int, default=3, help="synthetic world and model seed")
    p.add_argument(
        "--original-times",
        action="store_true",
        help="keep the data's rating times (default: shifted so the newest is an hour old)",
    )
    p.add_argument("--holdout", type=float, default=0.1, help="each user's latest share held out")
    p.add_argument(
        "--no-tune",
        action="store_true",
        help="offline anchors with the grids' first settings (no validation)",
    )
    p.add_argument(
        "--gorse-config",
        type=Path,
        default=install.GORSE_MODULE_DIR / "config.toml",
        help="the Gorse config the bench's Gorse runs (default: the stack's, docker/gorse/config.toml)",
    )
    p.add_argument(
        "--topology",
        choices=["single", "cluster"],
        default=None,
        help="the bench's Gorse: one gorse-in-one or master + servers + worker (default: the stack's)",
    )
    p.add_argument("--fit-timeout", type=float, default=1800, help="seconds to wait for Gorse's fit")
    p.add_argument("--stream-rate", type=float, default=5.0, help="held-out likes committed per second")
    p.add_argument("--stream-seconds", type=float, default=120.0, help="how long to stream (0: skip)")
    p.add_argument(
        "--settle", type=float, default=1.0, help="seconds after Gorse holds a like before re-reading"
    )
    p.add_argument("--window", type=float, default=20.0, help="seconds per point of the chart's hit rate")
    p.add_argument("--png", default="bench/quality.png", help="chart path ('' for none)")
    try:
        asyncio.run(cancelled_by_sigterm(p.parse_args()))
    except asyncio.CancelledError:
        sys.exit(
            "stopped by SIGTERM: the bench's Gorse, DMS and gateway stopped, its slot and streams dropped"
        )
