"""What users feel: a rating committed in PostgreSQL -> readable in Gorse, end to end through
the local DMS (wal2json -> Kinesis + S3) and the live consumer, while a steady `data activity`
mix (re-rates, deletes, genre edits, erasures, new users and movies) runs at a given rate.

Needs `gorse-cdc stack up`. Everything runs in this process on a private stream, slot and lease
table: a MovieLens-100K-sized synthetic database (943 users, 1,682 movies, 100,000 ratings) is
generated, fully loaded (timed until Gorse holds every rating), then activity runs at --rate for
--seconds while a prober commits one new rating every --probe-every seconds and polls Gorse
until it is there. Prints p50/p90/p99/max, the throughput actually achieved, the consumer's own
freshness histogram, and draws a PNG (latency over time, with the load) when matplotlib is
installed (`pip install -e '.[bench]'`).

    python bench/bench_freshness.py [--rate 1000] [--seconds 120] [--png bench/freshness.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import boto3
import orjson
import psycopg

from consumers.metrics import Metrics
from consumers.wiring import open_consumer
from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from producers.dms.slot import drop_slot
from producers.synthetic import generate
from producers.synthetic_model import GeneratorConfig

PROBE_USER = 990_000_001
PROBE_MOVIE0 = 1_900_000_000  # counting down: the activity numbers new movies max + 1
_PROBE_MARK = str(PROBE_USER).encode()


@dataclass
class Run:
    probes: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, latency s)
    load: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, applied/s)
    put: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, DMS put/s)
    lost: int = 0
    stages: StageClock = field(default_factory=lambda: StageClock())


@dataclass
class StageClock:
    """Where each probe's change waited (wall clock, seconds): committed in PostgreSQL ->
    arrived in Kinesis (ApproximateArrivalTimestamp: the local DMS's capture and put) -> taken
    into a batch the consumer applies (reading, and waiting behind the shard's previous batch) ->
    readable in Gorse (its batch's writes up to its own feedback; the poller looks every 50 ms).
    The batch's whole apply (users and labels come after the feedback) is reported beside."""

    committed: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    taken: dict[str, float] = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)
    readable: dict[str, float] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)

    def watch(self, applier: Any) -> None:
        """Wrap the consumer's applier (in this process) to time the probe records it applies."""
        inner = applier.apply

        async def apply(records: Any, should_stop: Any) -> Any:
            now = time.time()
            mine = {}
            for r in records:
                if _PROBE_MARK in r.data:
                    row = orjson.loads(r.data).get("data") or {}
                    if str(row.get("user_id")) == str(PROBE_USER) and "movie_id" in row:
                        mine[str(row["movie_id"])] = r.arrived_at.timestamp() if r.arrived_at else now
            if mine:
                self.batch_sizes.append(len(records))
            for movie, arrived in mine.items():
                self.arrived.setdefault(movie, arrived)
                self.taken.setdefault(movie, now)
            out = await inner(records, should_stop)
            done = time.time()
            for movie in mine:
                self.applied.setdefault(movie, done)
            return out

        applier.apply = apply

    def report(self) -> dict[str, list[float]]:
        """stage -> its durations (ms) over the probes seen at every step."""
        marks = [self.committed, self.arrived, self.taken, self.readable]
        names = [
            "commit -> in Kinesis (DMS)",
            "in Kinesis -> taken (read, queued)",
            "taken -> readable (its batch's writes)",
        ]
        movies = [m for m in self.readable if all(m in d for d in [*marks, self.applied])]
        out = {
            name: [(b[m] - a[m]) * 1000 for m in movies]
            for name, a, b in zip(names, marks[:-1], marks[1:], strict=True)
        }
        out["(its whole batch applied, for scale)"] = [
            (self.applied[m] - self.taken[m]) * 1000 for m in movies
        ]
        return out


def private(settings: Settings, tag: str, shards: int) -> Settings:
    return settings.model_copy(
        update={
            "kinesis": settings.kinesis.model_copy(
                update={"stream_name": f"fresh-{tag}", "shard_count": shards}
            ),
            "s3": settings.s3.model_copy(update={"prefix": f"fresh-{tag}"}),
            "source": settings.source.model_copy(update={"slot_name": f"fresh_{tag}"}),
            "leases": settings.leases.model_copy(update={"table": f"fresh-leases-{tag}"}),
            "consumer": settings.consumer.model_copy(update={"metrics_port": 0}),
        }
    )


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def gorse_ratings(g: GorseClient) -> int:
    return len(await g.export_feedback())


async def probe_loop(
    s: Settings, g: GorseClient, run: Run, t0: float, stop: asyncio.Event, every: float
) -> None:
    """One new liked rating of the probe user every ``every`` seconds; one poller (every 50 ms,
    so the probing itself does not load Gorse) notes when each becomes readable."""
    pending: dict[str, float] = {}  # movie -> commit time

    async def poll() -> None:
        while pending or not stop.is_set():
            liked = {f.item_id for f in await g.user_feedback(str(PROBE_USER), "like")}
            now = time.monotonic()
            for movie, committed in list(pending.items()):
                if movie in liked:
                    run.probes.append((committed - t0, now - committed))
                    run.stages.readable[movie] = time.time()
                    del pending[movie]
                elif now - committed > 60:
                    run.lost += 1
                    del pending[movie]
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    with psycopg.connect(s.source_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users VALUES (%s, 30, 'F', 'other', '00000') ON CONFLICT DO NOTHING", (PROBE_USER,)
        )
        i = 0
        while not stop.is_set():
            i += 1
            movie = PROBE_MOVIE0 - i
            conn.execute("INSERT INTO movies VALUES (%s, 'probe', '2000-01-01', 'Drama')", (movie,))
            committed = time.monotonic()
            run.stages.committed[str(movie)] = time.time()
            conn.execute("INSERT INTO ratings VALUES (%s, %s, 5, now())", (PROBE_USER, movie))
            pending[str(movie)] = committed
            await asyncio.sleep(max(0.0, every - (time.monotonic() - committed)))
    await poller


def child_env(s: Settings) -> dict[str, str]:
    """The private names, for the DMS and activity processes (they read GORSE_CDC_*)."""
    return {
        **os.environ,
        "GORSE_CDC_KINESIS__STREAM_NAME": s.kinesis.stream_name,
        "GORSE_CDC_KINESIS__SHARD_COUNT": str(s.kinesis.shard_count),
        "GORSE_CDC_S3__PREFIX": s.s3.prefix,
        "GORSE_CDC_SOURCE__SLOT_NAME": s.source.slot_name,
        "GORSE_CDC_SOURCE__DATABASE": s.source.database,
        "GORSE_CDC_LEASES__TABLE": s.leases.table,
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "entrypoints.cli", *args]


async def dms_put(port: int) -> float:
    """Records the DMS process's Kinesis target accepted so far (its Prometheus endpoint)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    except aiohttp.ClientError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("gorse_cdc_dms_kinesis_records_total "):
            return float(line.split()[1])
    return 0.0


async def main(
    args: argparse.Namespace, base: Settings | None = None, reset_gorse: Callable[[], object] | None = None
) -> dict[str, float]:
    """The run; ``base`` and ``reset_gorse`` (default: the stack's) let bench/bench_topology.py
    run it on a Gorse of its own. Returns the figures it printed."""
    base = base or Settings()
    if getattr(args, "gorse_fit_period", None):  # bench/bench_topology.py passes its own args
        stack = base.stack.model_copy(update={"gorse_fit_period": args.gorse_fit_period})
        base = base.model_copy(update={"stack": stack})
    s = private(base, uuid.uuid4().hex[:8], args.shards)
    ensure_stream(s)
    ensure_bucket(s)
    env = child_env(s)
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"generating a MovieLens-100K-sized database ({args.ratings:,} ratings) ...")
    with psycopg.connect(s.source_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ratings; DELETE FROM movies; DELETE FROM users;")
    base_rows = generate(s, GeneratorConfig(users=943, movies=1682, ratings=args.ratings, seed=3))
    metrics = Metrics()
    run = Run()
    dms_port = free_port()
    print("restarting Gorse empty ...")
    await asyncio.to_thread(reset_gorse or Stack(s).reset_gorse)
    async with GorseClient.from_settings(s) as g, open_consumer(s, metrics) as consumer:
        consumer_stop = asyncio.Event()
        run.stages.watch(consumer.parts.applier)
        consuming = asyncio.create_task(consumer.run(consumer_stop))
        started = time.monotonic()
        dms = spawn(
            cli("dms", "run", "--mode", "full-load-and-cdc", "--metrics-port", str(dms_port)),
            env,
            args.logs / "dms.log",
        )
        try:
            rows = base_rows.users + base_rows.movies + base_rows.ratings
            dms_done: float | None = None
            load_calls = gorse_calls(metrics)
            # the consumer's applied count first (in-process, free), then one export to confirm:
            # exporting 100k ratings costs Gorse ~1.2 s of work, so polling it would slow the load
            while _applied(metrics) < rows or await gorse_ratings(g) < args.ratings:
                if dms.poll() is not None:
                    raise SystemExit(f"dms exited with {dms.returncode}: see {args.logs / 'dms.log'}")
                if dms_done is None and await dms_put(dms_port) >= rows:
                    dms_done = time.monotonic() - started
                await asyncio.sleep(0.1)
            full_load = time.monotonic() - started
            print(
                f"full load: Gorse holds all {args.ratings:,} ratings "
                f"{full_load:.1f} s after `dms run` started (the DMS had put all {rows:,} rows "
                f"into Kinesis at {dms_done or full_load:.1f} s)"
            )
            print_gorse_time(load_calls, gorse_calls(metrics), full_load, _applied(metrics), "the full load")
            sink = consumer.parts.applier.sink  # type: ignore[attr-defined]
            print_phases(sink.phase_s, "the full load")
            phases0 = dict(sink.phase_s)
            print(
                f"activity at {args.rate:,.0f} changes/s for {args.seconds:.0f} s, "
                f"probing every {args.probe_every} s"
            )
            t0 = time.monotonic()
            mix = ["--mix", args.mix] if args.mix else []
            rate_arg, secs_arg = str(args.rate), str(args.seconds)
            activity = spawn(
                cli("data", "activity", "--rate", rate_arg, "--duration", secs_arg, "--seed", "5", *mix),
                env,
                args.logs / "activity.log",
                capture=True,
            )
            probing_stop = asyncio.Event()
            base_put = await dms_put(dms_port)
            while await dms_put(dms_port) == base_put:  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.1)  # the activity read its world: the probe user is not in it
            probing = asyncio.create_task(probe_loop(s, g, run, t0, probing_stop, args.probe_every))
            calls_before, calls_t0, applied0 = gorse_calls(metrics), time.monotonic(), _applied(metrics)
            last_t, last_n, last_p = time.monotonic(), _applied(metrics), await dms_put(dms_port)
            while activity.poll() is None:
                await asyncio.sleep(1.0)
                now, n, p = time.monotonic(), _applied(metrics), await dms_put(dms_port)
                dt = now - last_t
                run.load.append((now - t0, (n - last_n) / dt))
                run.put.append((now - t0, (p - last_p) / dt))
                last_t, last_n, last_p = now, n, p
            out = activity.stdout.read() if activity.stdout else ""
            print_gorse_time(
                calls_before, gorse_calls(metrics), time.monotonic() - calls_t0, _applied(metrics) - applied0
            )
            print_phases({k: v - phases0.get(k, 0.0) for k, v in sink.phase_s.items()}, "the activity")
            probing_stop.set()
            await probing
        finally:
            dms.send_signal(signal.SIGTERM)
            dms.wait(30)
            consumer_stop.set()
            await consuming
            cleanup(s)
    events, seconds = _activity_summary(out)
    lat = [p[1] * 1000 for p in run.probes]
    rate = events / max(seconds, 1e-9)
    figures = {"full_load_s": full_load, "achieved_per_s": rate, "probes": len(lat), "lost": run.lost}
    print(f"activity achieved {rate:,.0f} changes/s ({events:,} changes in {seconds:.0f} s)")
    if lat:
        print(
            f"commit -> readable in Gorse ({len(lat)} probes, {run.lost} not seen in 60 s): "
            f"p50 {pct(lat, 50):.0f} ms, p90 {pct(lat, 90):.0f} ms, p99 {pct(lat, 99):.0f} ms, "
            f"max {max(lat):.0f} ms, mean {statistics.mean(lat):.0f} ms"
        )
    stages = run.stages.report()
    if stages and any(stages.values()):
        print("where the probes' changes waited (ms):")
        for name, values in stages.items():
            if values:
                print(
                    f"  {name:<42} p50 {pct(values, 50):7.0f}  p90 {pct(values, 90):7.0f}  "
                    f"p99 {pct(values, 99):7.0f}  max {max(values):7.0f}"
                )
                figures[f"stage {name} p99_ms"] = pct(values, 99)
        sizes = run.stages.batch_sizes
        print(f"  batches holding a probe: {len(sizes)}, records p50 {pct(sizes, 50):.0f}, max {max(sizes)}")
    if lat:
        figures.update(p50_ms=pct(lat, 50), p90_ms=pct(lat, 90), p99_ms=pct(lat, 99), max_ms=max(lat))
    if args.png:
        draw(run, args, Path(args.png))
    return figures


ROOT = Path(__file__).resolve().parents[1]


def spawn(argv: list[str], env: dict[str, str], log: Path, capture: bool = False) -> subprocess.Popen[str]:
    """A child process of the bench (DMS, activity), its stderr in ``log``."""
    with log.open("wb") as err:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


async def cancelled_by_sigterm(coro: Coroutine[Any, Any, object]) -> None:
    """SIGTERM (a killed bench) cancels the bench like Ctrl-C does, so its finally stops the DMS
    and drops the replication slot and the stream (a slot left behind keeps the source's WAL)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await coro


def cleanup(s: Settings) -> None:
    """Drop the bench's replication slot (a slot left behind keeps WAL forever) and stream."""
    drop_slot(s.source_dsn, s.source.slot_name)
    boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(StreamName=s.kinesis.stream_name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _activity_summary(out: str) -> tuple[int, float]:
    """(changes, seconds) from the activity's summary line,
    e.g. 'activity: 60123 changes (61234 rows) in 60.0 s'."""
    m = re.search(r"activity: (\d+) changes \(\d+ rows\) in ([\d.]+) s", out)
    if not m:
        print(f"activity printed no summary: {out[-300:]!r}")
        return 0, 0.0
    return int(m.group(1)), float(m.group(2))


def gorse_calls(metrics: Metrics) -> dict[str, tuple[float, float]]:
    """call ("DELETE /api/user/{id}") -> (requests, seconds) so far, from the consumer's histogram."""
    out: dict[str, list[float]] = {}
    for m in metrics.gorse_latency.collect():
        for smp in m.samples:
            if smp.name.endswith("_count") or smp.name.endswith("_sum"):
                out.setdefault(smp.labels["call"], [0.0, 0.0])[smp.name.endswith("_sum")] = smp.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def print_gorse_time(
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
    secs: float,
    changes: float = 0.0,
    during: str = "the activity",
) -> None:
    """Where the consumer's Gorse time went during the activity (the calls' summed latency), and
    the calls per change of each kind (``changes``: records the consumer applied meanwhile)."""
    rows = []
    for call, (n, t) in after.items():
        n0, t0 = before.get(call, (0.0, 0.0))
        if n > n0:
            rows.append((t - t0, n - n0, call))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    calls = sum(r[1] for r in rows)
    per = f", {calls / changes:.2f} calls per change applied ({changes:,.0f})" if changes else ""
    print(f"Gorse time of the consumer during {during}: {total:,.1f} s of calls in {secs:.0f} s{per}")
    for t, n, call in rows[:10]:
        each = f"{n / changes:6.3f}/change" if changes else ""
        print(f"  {call:<42} {n:>8,.0f} calls {each} {t:>7.1f} s  ({1000 * t / n:.1f} ms each)")


def print_phases(phase_s: dict[str, float], during: str) -> None:
    """Where the consumer's plans spent their time (GorseSink.phase_s: summed over plans, so
    over shards applying side by side it can exceed the wall clock)."""
    total = sum(phase_s.values()) or 1.0
    parts = ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in sorted(phase_s.items()))
    print(f"plan phases during {during}: {parts}")


def _applied(metrics: Metrics) -> float:
    return sum(
        s.value for m in metrics.records_applied.collect() for s in m.samples if s.name.endswith("_total")
    )


def draw(run: Run, args: argparse.Namespace, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: pip install -e '.[bench]' for matplotlib")
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter(
        [t for t, _ in run.probes], [v * 1000 for _, v in run.probes], s=8, label="commit -> readable (ms)"
    )
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the load")
    ax.set_ylabel("latency, ms (log)")
    ax2 = ax.twinx()
    ax2.plot(
        [t for t, _ in run.put], [v for _, v in run.put], color="tab:green", alpha=0.6, label="DMS put/s"
    )
    ax2.plot(
        [t for t, _ in run.load], [v for _, v in run.load], color="tab:orange", alpha=0.6, label="applied/s"
    )
    ax2.set_ylabel("records per second")
    ax.set_title(f"gorse-cdc freshness at {args.rate:,.0f} changes/s ({datetime.now(UTC):%Y-%m-%d})")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="activity changes per second")
    p.add_argument("--seconds", type=float, default=120.0, help="how long the activity runs")
    p.add_argument("--probe-every", type=float, default=0.5, help="seconds between probes")
    p.add_argument("--ratings", type=int, default=100_000, help="size of the generated database")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--png", default="", help="write the chart here (e.g. bench/freshness.png)")
    p.add_argument(
        "--mix", default="", help="the activity's mix (gorse-cdc data activity --mix); default: all kinds"
    )
    p.add_argument(
        "--gorse-fit-period",
        help="restart Gorse with this loop period (e.g. 10m; default: the stack's, 1m): on the SQLite "
        "gorse-in-one each loop holds the store while it rewrites every item's neighbours",
    )
    p.add_argument("--logs", type=Path, default=Path("/tmp"), help="where dms.log and activity.log go")
    try:
        asyncio.run(cancelled_by_sigterm(main(p.parse_args())))
    except asyncio.CancelledError:
        sys.exit("stopped by SIGTERM: the DMS is stopped, the slot and the stream dropped")
