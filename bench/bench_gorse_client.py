"""Write rate of the async Gorse client into the real Gorse (local stack).

Usage: .venv/bin/python bench/bench_gorse_client.py [--users N --items N --feedback N --batch N]
Resets the stack's Gorse first (its data is dropped). Prints rows/s per entity; also the
ratio of PUT to POST feedback rate, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

from entrypoints.stack.components import Stack
from gorse_cdc.gorse import Feedback, GorseClient, Item, User
from gorse_cdc.settings import Settings


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--feedback", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    settings = Settings()
    Stack(settings).reset_gorse()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rng = random.Random(3)
    users = [User(f"u{i}", {"age": 20 + i % 50, "gender": "MF"[i % 2]}) for i in range(args.users)]
    items = [Item(f"m{i}", {"genres": ["Drama"]}, ("Drama",), t0, f"Movie {i}") for i in range(args.items)]
    fb = [
        Feedback(
            "like", f"u{rng.randrange(args.users)}", f"m{i % args.items}", 4.0, t0 + timedelta(seconds=i)
        )
        for i in range(args.feedback)
    ]
    async with GorseClient.from_settings(settings) as c:
        c.batch_size = args.batch

        async def timed(name: str, rows: list, write) -> float:  # type: ignore[type-arg,no-untyped-def]
            parts = [rows[i :: args.concurrency] for i in range(args.concurrency)]
            start = time.perf_counter()
            await asyncio.gather(*(write(p) for p in parts))
            rate = len(rows) / (time.perf_counter() - start)
            print(f"{name:<22} {len(rows):>8} rows  {rate:>10,.0f} rows/s")
            return rate

        print(f"Gorse {settings.gorse_url}  store={settings.stack.gorse_store}")
        print(f"batch={args.batch}  concurrency={args.concurrency}")
        await timed("users (POST batch)", users, c.upsert_users)
        await timed("items (POST batch)", items, c.upsert_items)
        put = await timed("feedback (PUT batch)", fb, c.put_feedback)
        put2 = await timed("feedback (PUT again)", fb, c.put_feedback)
        print(f"re-PUT / first PUT rate ratio: {put2 / put:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
