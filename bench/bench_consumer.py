"""Consumer benchmark on the real local stack (`gorse-cdc stack up` first). Prints:

1. the raw Gorse write ceiling: a direct GorseClient applying the same operations (batched
   upserts and PUT feedback, stale-type and row deletes; no liked-labels upkeep);
2. the consumer's sustained throughput draining a backlog of the same kind of changes, and its
   ratio to (1), measured in the same run;
3. freshness at a steady rate (default 1,000 changes/s): from the record's DMS
   commit-timestamp (stamped when it is put into Kinesis, since the changes are generated
   beforehand) to the change being readable in Gorse (sampled ratings polled with GET), p50/p99.

    python bench/bench_consumer.py [--changes 20000] [--rate 1000] [--seconds 20] [--shards 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.coalesce import coalesce
from consumers.sink.gorse_sink import run_all
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.dms.record import DmsRecord
from gorse_cdc.gorse import GorseClient
from gorse_cdc.mapping import Mapper
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import (
    Env,
    clear_gorse,
    drained,
    running_consumer,
    with_names,
)
from tests.integration.consumers.feed import Feed


async def raw_ceiling(settings: Settings, records: list[DmsRecord], batch: int = 500) -> float:
    """Changes/s of a direct GorseClient writing the same operations, batch by batch."""
    mapper = Mapper()
    async with GorseClient.from_settings(settings) as g:
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            ops = [
                op
                for r in records[start : start + batch]
                for op in mapper.map_change(r.table, r.operation, r.data, r.before_image)
            ]
            plan = coalesce(ops)
            await run_all([lambda u=u: g.delete_user(u) for u in plan.delete_users], 8)
            if plan.upsert_items:
                await g.upsert_items(list(plan.upsert_items.values()))
            if plan.upsert_users:
                await g.upsert_users(list(plan.upsert_users.values()))
            await g.put_feedback(list(plan.put_feedback.values()))
            await run_all(
                [lambda k=k: g.delete_feedback(k[1], k[2], k[0]) for k in plan.stale_feedback]
                + [lambda k=k: g.delete_feedback(k[0], k[1]) for k in plan.delete_feedback],
                8,
            )
        return len(records) / (time.perf_counter() - started)


def restamp(records: list[DmsRecord]) -> list[DmsRecord]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [dataclasses.replace(r, commit_timestamp=now, timestamp=now) for r in records]


async def wait_drained(env: Env) -> None:
    while not drained(env.settings, env.lease_table, env.feed.last_sequence):  # noqa: ASYNC110 - polls the lease table
        await asyncio.sleep(0.1)


async def freshness(env: Env, records: list[DmsRecord], rate: float, seconds: float) -> list[float]:
    """Put at ``rate`` changes/s; poll a sample of rating changes until readable in Gorse."""
    lags: list[float] = []
    tick = 0.1
    per_tick = max(1, int(rate * tick))
    pending: list[asyncio.Task[None]] = []
    async with GorseClient.from_settings(env.settings) as g:

        async def probe(rec: DmsRecord, put_at: float) -> None:
            ftype = "like" if int(rec.data["rating"]) >= 4 else "unlike"
            user, item, value = str(rec.data["user_id"]), str(rec.data["movie_id"]), float(rec.data["rating"])
            while time.perf_counter() - put_at < 60:
                rows = await g.user_feedback(user, ftype)
                if any(f.item_id == item and f.value == value for f in rows):
                    lags.append(time.perf_counter() - put_at)
                    return
                await asyncio.sleep(0.05)

        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds and i < len(records):
            chunk = restamp(records[i : i + per_tick])
            await asyncio.to_thread(env.feed.put, chunk)
            put_at = time.perf_counter()
            for rec in chunk[::100]:  # a sample: polling every change would load Gorse itself
                if rec.table == "ratings" and rec.operation in ("insert", "update"):
                    pending.append(asyncio.create_task(probe(rec, put_at)))
            i += per_tick
            await asyncio.sleep(max(0.0, started + (i / per_tick) * tick - time.perf_counter()))
        await asyncio.gather(*pending)
    return lags


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=20_000, help="backlog size for throughput")
    ap.add_argument("--rate", type=float, default=1000.0, help="steady rate for freshness (changes/s)")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of the steady phase")
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()

    base = Settings()
    tag = uuid.uuid4().hex[:6]
    settings = with_names(base, f"bench-{tag}", f"bench-leases-{tag}")
    ensure_stream(settings, settings.kinesis.stream_name, args.shards)
    feed = Feed(settings, settings.kinesis.stream_name, seed=3)
    env = Env(settings, settings.kinesis.stream_name, settings.leases.table, feed)
    feed.truncate()
    await clear_gorse(settings)
    print(f"generating {args.changes} changes in the database ...", flush=True)
    load = feed.load(users=1000, movies=1500, ratings=5000)
    backlog = feed.activity(args.changes)
    steady = feed.activity(int(args.rate * args.seconds))

    raw = await raw_ceiling(settings, load + backlog)
    print(f"raw Gorse write ceiling (direct GorseClient, same operations): {raw:,.0f} changes/s")
    await clear_gorse(settings)

    feed.put(restamp(load + backlog))
    started = time.perf_counter()
    async with running_consumer(settings) as consumer:
        await wait_drained(env)
        elapsed = time.perf_counter() - started
        throughput = (len(load) + len(backlog)) / elapsed
        print(
            f"consumer sustained throughput: {throughput:,.0f} changes/s "
            f"({len(load) + len(backlog)} changes in {elapsed:.1f} s, {args.shards} shards)"
        )
        print(f"ratio consumer / raw ceiling: {throughput / raw:.2f}")
        lags = await freshness(env, steady, args.rate, args.seconds)
        await wait_drained(env)
        hist = consumer.metrics.freshness
    if lags:
        lags.sort()
        p50 = statistics.median(lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(
            f"freshness at {args.rate:.0f} changes/s (put -> readable in Gorse, {len(lags)} samples): "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        )
    total = sum(s.value for s in hist.collect()[0].samples if s.name.endswith("_count"))
    print(f"consumer freshness histogram observations: {total:.0f}")
    feed.close()


if __name__ == "__main__":
    asyncio.run(main())
