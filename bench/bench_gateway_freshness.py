"""How fast what an app shows reacts to the user's action, on the real local stack
(`gorse-cdc stack up` first). Two real gateway processes (A takes the events, B only serves
reads, so B knows nothing the pipeline did not carry) and a real consumer on the events stream.

Per probe, a user's row is read, its first item X is acted on, and the row is polled (every
10 ms) until X has left it. Timed from the action being committed:
  - play via A, read on A: from A's 202 (the gateway that took the event filters at once);
  - play via A, read on B: from A's 202, through Kinesis -> consumer -> Gorse -> B's reads;
  - a like written to Gorse (what the consumer writes for a rating >= 4), read on B: from the
    write's response (the gateway's share of "a rating -> the row changes"; the database ->
    DMS -> consumer share is bench_freshness.py's figure).
  - a `complete` via A, read on B: until the row's first item is one of the completed item's
    neighbours (the latest like shaping the row; needs Gorse's item neighbours, computed by its
    master loop: run after Gorse has loaded the data, e.g. restarted, or probes are skipped).
Prints p50 / p99 / max per path.

    python bench/bench_gateway_freshness.py [--probes 30] [--items 300] [--users 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from entrypoints.stack.resources import ensure_stream
from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.models import Feedback, Item
from gorse_cdc.settings import Settings
from tests.integration.gateway.conftest import Gateway, events_consumer, free_port

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller"]


async def seed(settings: Settings, items: int, users: int) -> list[str]:
    """Items with titles and genres, and some likes, so that rows have something to show."""
    async with GorseClient.from_settings(settings) as g:
        ids = [f"bm{i}" for i in range(items)]
        await g.upsert_items(
            [
                Item(i, {"genres": random.sample(GENRES, 2)}, (random.choice(GENRES),), None, f"Movie {i}")
                for i in ids
            ]
        )
        fb = [Feedback("like", f"bu{u}", random.choice(ids), 5.0) for u in range(users) for _ in range(10)]
        await g.put_feedback(fb)
    return [f"fresh-{uuid.uuid4().hex[:6]}-{u}" for u in range(users)]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def row(s: aiohttp.ClientSession, gw: Gateway, user: str, key: str) -> list[str]:
    async with s.get(
        f"{gw.url}/v1/users/{user}/recommendations?n=10", headers={"X-API-Key": key}, ssl=gw.ssl()
    ) as r:
        assert r.status == 200, await r.text()
        return [i["id"] for i in (await r.json())["items"]]


async def until_gone(
    s: aiohttp.ClientSession, gw: Gateway, user: str, key: str, item: str, t0: float
) -> float:
    while True:
        if item not in await row(s, gw, user, key):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 30:
            return float("inf")
        await asyncio.sleep(0.01)


async def until_led(
    s: aiohttp.ClientSession, gw: Gateway, user: str, key: str, items: set[str], t0: float
) -> float:
    """Until the row's first item is one of ``items``."""
    while True:
        first = (await row(s, gw, user, key))[:1]
        if first and first[0] in items:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 30:
            return float("inf")
        await asyncio.sleep(0.01)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--users", type=int, default=60)
    args = ap.parse_args()
    settings = Settings()
    suffix = uuid.uuid4().hex[:6]
    stream = f"bench-events-{suffix}"
    ensure_stream(settings, stream, 1)
    env = {
        **os.environ,
        "GORSE_CDC_GATEWAY__KEYS_TABLE": f"bench-keys-{suffix}",
        "GORSE_CDC_GATEWAY__EVENTS_STREAM": stream,
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    a = Gateway(settings, env, free_port(), logs / "a.log")
    b = Gateway(settings, env, free_port(), logs / "b.log")
    users = await seed(settings, args.items, args.probes)
    a.start()
    b.start()
    consumer = events_consumer(a, logs / "consumer.log")
    key = a.create_key("bench", "admin", rate=10_000, burst=10_000)["key"]
    liked_items: list[str] = []
    results: dict[str, list[float]] = {
        "complete, neighbours lead on B": [],
        "play, read on A": [],
        "play, read on B": [],
        "like in Gorse, read on B": [],
    }
    try:
        await asyncio.sleep(3)  # the consumer takes its lease
        async with aiohttp.ClientSession() as s, GorseClient.from_settings(settings) as g:
            liked_items += [i.item_id async for i in g.iter_items()]
            for n in range(args.probes):
                user = users[n]
                first = (await row(s, b, user, key))[0]
                async with s.post(
                    f"{a.url}/v1/events",
                    json={"events": [{"user": user, "item": first, "type": "play"}]},
                    headers={"X-API-Key": key},
                    ssl=a.ssl(),
                ) as r:
                    assert r.status == 202
                t0 = time.perf_counter()
                on_a, on_b = await asyncio.gather(
                    until_gone(s, a, user, key, first, t0), until_gone(s, b, user, key, first, t0)
                )
                results["play, read on A"].append(on_a)
                results["play, read on B"].append(on_b)
                second = (await row(s, b, user, key))[0]
                await g.put_feedback([Feedback("like", user, second, 5.0)])
                t0 = time.perf_counter()
                results["like in Gorse, read on B"].append(await until_gone(s, b, user, key, second, t0))
                # the latest like shapes the row: a completed item's neighbours lead it
                target, neighbours = "", set()
                for candidate in random.sample(liked_items, 20):  # an item Gorse has neighbours for
                    neighbours = set(await g.item_neighbors(candidate, 5))
                    if neighbours:
                        target = candidate
                        break
                if neighbours:
                    async with s.post(
                        f"{a.url}/v1/events",
                        json={"events": [{"user": user, "item": target, "type": "complete"}]},
                        headers={"X-API-Key": key},
                        ssl=a.ssl(),
                    ) as r:
                        assert r.status == 202
                    t0 = time.perf_counter()
                    results["complete, neighbours lead on B"].append(
                        await until_led(s, b, user, key, neighbours, t0)
                    )
    finally:
        consumer.terminate()
        a.stop()
        b.stop()
    print(f"action committed -> the user's row no longer shows the item ({args.probes} probes, ms)")
    print(f"{'path':32} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}")
    for name, v in results.items():
        ms = [x * 1000 for x in v]
        if not ms:
            print(f"{name:32} (no probe: Gorse has no item neighbours yet)")
            continue
        never = sum(1 for x in ms if x == float("inf"))
        done = [x for x in ms if x != float("inf")] or [float("nan")]
        print(
            f"{name:32} {pct(ms, 50):8.0f} {pct(ms, 99):8.0f} {max(done):8.0f} {statistics.mean(done):8.0f}"
            + (f"  ({never} of {len(ms)} not within 30 s)" if never else "")
        )


if __name__ == "__main__":
    asyncio.run(main())
