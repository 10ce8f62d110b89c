"""How live and how good Gorse's own recommendations are (issue 21 item 3), on a Gorse of its own
(give it an empty one: the bench writes a MovieLens-100K-sized world into it).

1. Loads the synthetic world (943 users, 1,682 films, 100,000 ratings; like = rating >= 4)
   with each user's newest like held out (users with >= 5 likes).
2. Waits for the master's loop to compute the item neighbours.
3. Hit rate @10 of the held-out like: Gorse's GET /api/recommend, Popular, Latest (the last
   two minus what the user rated), and the latency of that call.
4. Like -> list: a new user likes one film; the time until Gorse's list holds its neighbours.

    .venv/bin/python bench/bench_live_recommend.py --gorse http://127.0.0.1:28088 [--users 300]

Measured on 2026-12-04 with docker/gorse/config.toml of e1b0bf9, 300 users: hit rate @10
Gorse 23.0 % (19.3 % in an earlier run on another instance, where the gateway's former
neighbour blend on top of Gorse also gave 19.3 %; with the config before e1b0bf9, after its
first loop: Gorse alone 4.3 %, the blend 15.3 %), Popular 0 % (no rating of the last week),
Latest 8 %; GET /api/recommend p50 44 ms, max 2.5 s (while the master's loop wrote to SQLite);
like -> list 2-27 ms (10 new users); item neighbours 45 s after the load. See docs/gateway.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta

from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.gorse.models import Item
from producers.synthetic_model import GeneratorConfig, World

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def load(g: GorseClient) -> dict[str, str]:
    w = World(GeneratorConfig(943, 1682, 100_000, seed=11))
    items = []
    for mid, title, released, genres in w.movie_rows():
        g_ = tuple(genres.split("|"))
        when = datetime(released.year, released.month, released.day, tzinfo=UTC)
        items.append(Item(str(mid), {"genres": list(g_)}, g_, when, title))
    rows = [
        (str(u), str(m), int(r), EPOCH + timedelta(microseconds=int(t)))
        for ch in w.rating_chunks()
        for u, m, r, t in zip(ch.user_ids, ch.movie_ids, ch.ratings, ch.rated_at_us, strict=True)
    ]
    likes: dict[str, list[tuple[str, str, int, datetime]]] = {}
    for row in rows:
        if row[2] >= 4:
            likes.setdefault(row[0], []).append(row)
    held = {u: max(ls, key=lambda r: r[3])[1] for u, ls in likes.items() if len(ls) >= 5}
    kept = [r for r in rows if held.get(r[0]) != r[1]]
    await g.upsert_items(items)
    await g.put_feedback([Feedback("like" if r >= 4 else "unlike", u, m, float(r), t) for u, m, r, t in kept])
    return held


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gorse", required=True, help="an empty Gorse of its own")
    p.add_argument("--api-key", default="gorse-cdc-local-api-key")
    p.add_argument("--users", type=int, default=300)
    args = p.parse_args()
    async with GorseClient(args.gorse, args.api_key, batch_size=1000) as g:
        held = await load(g)
        started = time.monotonic()
        while True:  # the master's next loop
            if await g.item_neighbors("1", 5):
                break
            await asyncio.sleep(2)
        print(f"item neighbours after {time.monotonic() - started:.0f} s")
        users = sorted(held)
        random.Random(1).shuffle(users)
        users = users[: args.users]
        popular = await g.non_personalized("most_liked_weekly", 200)
        latest = await g.latest(200)
        hits = {"gorse": 0, "popular": 0, "latest": 0}
        took = []
        for u in users:
            rated = {f.item_id for f in await g.user_feedback(u)}
            t = time.perf_counter()
            got = await g.recommend(u, 10)
            took.append(time.perf_counter() - t)
            hits["gorse"] += held[u] in got
            hits["popular"] += held[u] in [i for i in popular if i not in rated][:10]
            hits["latest"] += held[u] in [i for i in latest if i not in rated][:10]
        took.sort()
        reacts = []
        for k in range(10):
            user, film = f"bench-live-{random.randrange(10**9)}", str(1 + 7 * k)
            neighbours = set(await g.item_neighbors(film, 10))
            t = time.perf_counter()
            await g.put_feedback([Feedback("like", user, film, 5, datetime.now(UTC))])
            while time.perf_counter() - t < 5:
                if set(await g.recommend(user, 10)) & neighbours:
                    break
                await asyncio.sleep(0.01)
            reacts.append(time.perf_counter() - t)
        print(
            json.dumps(
                {
                    "users": len(users),
                    "hit_rate@10": {k: round(v / len(users), 3) for k, v in hits.items()},
                    "recommend_ms": {
                        "p50": round(1000 * took[len(took) // 2], 1),
                        "max": round(1000 * took[-1], 1),
                    },
                    "like_to_list_ms": sorted(round(1000 * r, 1) for r in reacts),
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
