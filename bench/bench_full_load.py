"""Full load at scale: a synthetic catalogue (`data generate`: Zipf popularity, heavy and light
raters) goes through the whole pipeline into an empty Gorse: `dms run --mode
full-load-and-cdc` (the local DMS) -> Kinesis -> `gorse-cdc consume` (its own process) -> Gorse.
Prints, every 10 % of the load, the rows the DMS has put and the consumer applied, and both
processes' RSS (from /proc), then the time until Gorse holds every rating, and `verify`'s verdict
(timed apart). Memory is flat when the RSS at 50 % and at 100 % are about the same.

    python bench/bench_full_load.py                                  # 100k users, 1M ratings
    python bench/bench_full_load.py --users 1000000 --ratings 10000000 --png bench/full_load.png

Needs `gorse-cdc stack up`; uses a private stream, slot and lease table; replaces the source
database's rows and empties Gorse (like the freshness bench). No asserts: figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import orjson
import psycopg
from bench_freshness import cancelled_by_sigterm, child_env, cleanup, cli, dms_put, free_port, private, spawn

from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from producers.activity_events import LIKE_THRESHOLD
from producers.synthetic import GeneratorConfig, generate


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def applied(port: int) -> float | None:
    """Records the consumer process applied so far (its Prometheus endpoint); None: not up."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    except aiohttp.ClientError:
        return None
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("gorse_cdc_records_applied_total") and 'operation="load"' in line
    )


def _h(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "little")


async def checksum(s: Settings, sample: int) -> str:
    """An independent check that needs no memory per row: the count and an order-free checksum
    (sum of 64-bit hashes) of every (type, user, item) in Gorse's feedback export and in the
    source's ratings (like at 4 or more, else unlike: the seed's mapping), then the liked labels
    of ``sample`` random users read from Gorse against their likes in the source."""
    gorse_sum = gorse_rows = 0
    async with GorseClient.from_settings(s) as gorse:
        async for line in gorse.export_lines("feedback"):
            r = orjson.loads(line)
            gorse_sum = (gorse_sum + _h(r["FeedbackType"], r["UserId"], r["ItemId"])) % 2**64
            gorse_rows += 1
        with psycopg.connect(s.source_dsn) as conn:
            source_sum = source_rows = 0
            with conn.cursor(name="ratings") as cur:
                cur.itersize = 200_000
                cur.execute("SELECT user_id, movie_id, rating FROM ratings")
                for u, i, rating in cur:
                    ftype = "like" if rating >= LIKE_THRESHOLD else "unlike"
                    source_sum = (source_sum + _h(ftype, str(u), str(i))) % 2**64
                    source_rows += 1
            genres = {
                str(m): set(g.split("|")) for m, g in conn.execute("SELECT movie_id, genres FROM movies")
            }
            ids = [r[0] for r in conn.execute("SELECT user_id FROM users")]
            differ = []
            for u in random.Random(5).sample(ids, min(sample, len(ids))):
                liked = conn.execute(
                    "SELECT movie_id FROM ratings WHERE user_id = %s AND rating >= %s", (u, LIKE_THRESHOLD)
                )
                want = set().union(*(genres[str(m)] for (m,) in liked))
                user = await gorse.get_user(str(u))
                if user is None or set(user.labels.get("liked_genres", ())) != want:
                    differ.append(u)
    same = (gorse_rows, gorse_sum) == (source_rows, source_sum)
    return (
        f"checksum of every feedback row: Gorse {gorse_rows:,} rows {gorse_sum:016x}, source "
        f"{source_rows:,} {source_sum:016x}: {'EQUAL' if same else 'DIFFERENT'}; liked labels of "
        f"{sample:,} random users: {sample - len(differ):,} equal, {len(differ)} differ {differ[:5]}"
    )


async def main(args: argparse.Namespace) -> None:
    base = Settings()
    stack = base.stack.model_copy(update={"gorse_fit_period": args.gorse_fit_period})
    s = private(base.model_copy(update={"stack": stack}), uuid.uuid4().hex[:8], args.shards)
    ensure_stream(s)
    ensure_bucket(s)
    env = child_env(s)
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"generating {args.users:,} users, {args.movies:,} movies, {args.ratings:,} ratings ...")
    t0 = time.monotonic()
    g = generate(s, GeneratorConfig(args.users, args.movies, args.ratings, seed=7), truncate=True)
    rows = g.users + g.movies + g.ratings
    print(f"  {g.describe()} in {time.monotonic() - t0:.0f} s")
    print("restarting Gorse empty ...")
    await asyncio.to_thread(Stack(s).reset_gorse)
    metrics_port, dms_port = free_port(), free_port()
    consumer = spawn(
        cli("consume"),
        {**env, "GORSE_CDC_CONSUMER__METRICS_PORT": str(metrics_port)},
        args.logs / "consume.log",
    )
    samples: list[tuple[float, float, float, float, float]] = []  # t, put, applied, rss consumer, rss dms
    dms: subprocess.Popen[str] | None = None
    try:
        while await applied(metrics_port) is None:
            if consumer.poll() is not None:
                raise SystemExit(f"consume exited with {consumer.returncode}: see {args.logs}/consume.log")
            await asyncio.sleep(0.2)
        started = time.monotonic()
        dms = spawn(
            cli("dms", "run", "--mode", "full-load-and-cdc", "--metrics-port", str(dms_port)),
            env,
            args.logs / "dms.log",
        )
        dms_done = None
        next_report = 0.1
        print(f"full load of {rows:,} rows ({args.shards} shards):")
        print(f"  {'s':>6} {'DMS put':>12} {'applied':>12} {'RSS consume':>12} {'RSS dms':>9}")
        while True:
            if consumer.poll() is not None or (dms.poll() is not None and dms.returncode != 0):
                raise SystemExit(f"a process exited: see {args.logs}/consume.log and dms.log")
            now = time.monotonic() - started
            put, done = await dms_put(dms_port), (await applied(metrics_port) or 0.0)
            samples.append((now, put, done, rss_mib(consumer.pid), rss_mib(dms.pid)))
            if dms_done is None and put >= rows:
                dms_done = now
            if next_report != float("inf") and done >= min(next_report, 1.0) * rows:
                print(
                    f"  {now:6.1f} {put:12,.0f} {done:12,.0f} "
                    f"{samples[-1][3]:9.0f} MiB {samples[-1][4]:5.0f} MiB"
                )
                next_report = float("inf") if done >= rows else done / rows + 0.1
            if done >= rows:
                break
            await asyncio.sleep(0.5)
        loaded = time.monotonic() - started
        print(
            f"Gorse holds the load {loaded:.1f} s after `dms run` started: "
            f"{g.ratings / loaded:,.0f} ratings/s, "
            f"{rows / loaded:,.0f} rows/s (the DMS had put every row at {dms_done or loaded:.1f} s: "
            f"{rows / (dms_done or loaded):,.0f} rows/s)"
        )
        peak_c = max(x[3] for x in samples)
        half = [x for x in samples if x[2] >= rows / 2]
        print(
            f"consumer RSS: peak {peak_c:.0f} MiB, at half the load {half[0][3] if half else 0:.0f} MiB, "
            f"at the end {samples[-1][3]:.0f} MiB; DMS RSS peak {max(x[4] for x in samples):.0f} MiB"
        )
        t1 = time.monotonic()
        if args.check == "verify" or (args.check == "auto" and g.ratings <= 2_000_000):
            out = await asyncio.to_thread(
                subprocess.run, cli("verify"), env=env, capture_output=True, text=True, check=False
            )
            verdict = "equal" if out.returncode == 0 else "NOT equal:\n" + out.stdout[-2000:]
            print(f"verify ({time.monotonic() - t1:.0f} s, not counted): Gorse is {verdict}")
        else:  # `verify` holds both sides in memory: more than 13 GiB at 10M ratings
            print(await checksum(s, args.sample))
            print(f"  ({time.monotonic() - t1:.0f} s, not counted)")
    finally:
        for p in (dms, consumer):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        try:
            cleanup(s)
        except Exception as e:  # kinesalite ran out of Node's heap deleting an 11M-record stream
            print(f"cleanup failed ({e}); drop the stream {s.kinesis.stream_name} by hand")
    if args.png and samples:
        draw(samples, rows, args.png)


def draw(samples: list[tuple[float, float, float, float, float]], rows: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x[0] for x in samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    a.plot(t, [x[1] / 1e6 for x in samples], label="put by the DMS")
    a.plot(t, [x[2] / 1e6 for x in samples], label="applied by the consumer")
    a.axhline(rows / 1e6, color="grey", lw=0.5)
    a.set_ylabel("rows (millions)")
    a.legend()
    a.set_title(f"full load of {rows:,} rows into an empty Gorse")
    b.plot(t, [x[3] for x in samples], label="consumer RSS")
    b.plot(t, [x[4] for x in samples], label="DMS RSS")
    b.set_ylabel("MiB")
    b.set_xlabel("seconds after `dms run` started")
    b.set_ylim(bottom=0)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--movies", type=int, default=10_000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument(
        "--gorse-fit-period",
        default="10m",
        help="Gorse's loop (the stack's default 1m holds SQLite under load)",
    )
    ap.add_argument("--logs", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bench-full-load")
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument(
        "--check",
        choices=("auto", "verify", "checksum"),
        default="auto",
        help="how Gorse is checked after the load: `verify` (every difference; holds both sides in "
        "memory, >13 GiB at 10M ratings), or counts and checksums of the feedback plus --sample "
        "users' liked labels (auto: verify up to 2M ratings)",
    )
    ap.add_argument(
        "--sample", type=int, default=5000, help="users whose liked labels --check checksum reads"
    )
    asyncio.run(cancelled_by_sigterm(main(ap.parse_args())))
