"""How long Gorse's own cached recommendations take to follow a user's new likes, on the local
stack. Run after `make demo` (its users and movies), with and without the worker:

    GORSE_CDC_STACK__GORSE_WORKER=true gorse-cdc stack up     # adds a gorse-worker (--interval 1m)
    python bench/bench_gorse_refresh.py [--users 10] [--likes 5] [--timeout 300]

Per user: read GET /api/recommend/{user}?n=10, write `--likes` likes (PUT, as the consumer
does; two of them on items the list shows), then poll every 2 s until the list differs. New
likes only reorder the list after a model refit (fit_period); the worker's refresh re-ranks with
the current model (Gorse's server already drops consumed items on request). With --new-users
the users are new (no feedback: Gorse serves its fallback) and like 5 items not shown: their
first cached list appears when the worker (or the master's loop) computes it.
Prints p50 / max, or how many never changed within --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.models import Feedback
from gorse_cdc.settings import Settings


async def probe(g: GorseClient, user: str, items: list[str], likes: int, timeout_s: float) -> float | None:
    before = await g.recommend(user, 10)
    # two of the items it shows (they must leave the list) and the rest elsewhere
    shown = [] if user.startswith("new-") else before[:2]
    chosen = shown + random.sample([i for i in items if i not in before], likes - len(shown))
    await g.put_feedback([Feedback("like", user, i, 5.0) for i in chosen])
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        await asyncio.sleep(2)
        if await g.recommend(user, 10) != before:
            return time.monotonic() - t0
    return None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--likes", type=int, default=5, help=">= 2")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--new-users", action="store_true", help="users Gorse has never seen")
    args = ap.parse_args()
    settings = Settings()
    async with GorseClient.from_settings(settings) as g:
        items = [i.item_id async for i in g.iter_items()]
        users = [u.user_id async for u in g.iter_users()][: args.users]
        if args.new_users:
            users = [f"new-{random.randrange(10**9)}" for _ in range(args.users)]
        results = await asyncio.gather(*(probe(g, u, items, args.likes, args.timeout) for u in users))
    changed = [r for r in results if r is not None]
    print(f"{len(users)} users, {args.likes} new likes each: Gorse's cached list changed for {len(changed)}")
    if changed:
        print(f"  after p50 {statistics.median(changed):.0f} s, max {max(changed):.0f} s")
    if len(changed) < len(users):
        print(f"  {len(users) - len(changed)} unchanged after {args.timeout:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
