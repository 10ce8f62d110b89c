"""Catch-up after a Gorse outage, end to end: PostgreSQL -> local DMS -> Kinesis -> consumer ->
Gorse, with a MovieLens-100K-sized base and `data activity` running at --rate. Gorse is stopped
--down seconds into the load and started again --down seconds later (a restarted gorse-in-one
loads its data and fits its models). With --part gorse-server-1 (a stack started with
GORSE_CDC_STACK__GORSE_TOPOLOGY=cluster) only that server is killed (SIGKILL), the way one
machine of a deployed cluster fails: the consumer's client sends its calls to the other servers.
The activity stops when Gorse is back; the bench then runs `verify` until Gorse equals the
database and prints how long that took after Gorse's return, the records dead-lettered (none
expected) and the apply rate over time (PNG with --png).

Needs `gorse-cdc stack up`; private stream, slot, lease table; Gorse is reset at the start.

    python bench/bench_catchup.py [--rate 1000] [--down 60] [--mix ...] [--png bench/catchup.png]
    GORSE_CDC_STACK__GORSE_TOPOLOGY=cluster python bench/bench_catchup.py --part gorse-server-1 --rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from bench_freshness import (
    _applied,
    cancelled_by_sigterm,
    child_env,
    cleanup,
    cli,
    dms_put,
    free_port,
    gorse_ratings,
    private,
    spawn,
)

from consumers.metrics import Metrics
from consumers.verify import verify
from consumers.wiring import open_consumer
from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from producers.synthetic import generate
from producers.synthetic_model import GeneratorConfig


async def main(args: argparse.Namespace) -> None:
    s = private(Settings(), uuid.uuid4().hex[:8], 2)
    ensure_stream(s)
    ensure_bucket(s)
    env = child_env(s)
    stack = Stack(s)
    with psycopg.connect(s.source_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ratings; DELETE FROM movies; DELETE FROM users;")
    generate(s, GeneratorConfig(users=943, movies=1682, ratings=args.ratings, seed=3))
    await asyncio.to_thread(stack.reset_gorse)
    metrics, port = Metrics(), free_port()
    series: list[tuple[float, float]] = []
    async with GorseClient.from_settings(s) as g, open_consumer(s, metrics) as consumer:
        stop = asyncio.Event()
        consuming = asyncio.create_task(consumer.run(stop))
        dms = spawn(
            cli("dms", "run", "--mode", "full-load-and-cdc", "--metrics-port", str(port)),
            env,
            args.logs / "dms.log",
        )
        try:
            while await gorse_ratings(g) < args.ratings:  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.5)
            print(
                f"full load done; activity at {args.rate:,.0f} changes/s; Gorse down after {args.down:.0f} s"
            )
            mix = ["--mix", args.mix] if args.mix else []
            activity = spawn(
                cli("data", "activity", "--rate", str(args.rate), "--duration", str(3 * args.down), *mix),
                env,
                args.logs / "activity.log",
                capture=True,
            )
            t0 = time.monotonic()

            async def sampler() -> None:  # applied/s over the whole run, verify passes included
                last_t, last_n = time.monotonic(), _applied(metrics)
                while True:
                    await asyncio.sleep(1.0)
                    now, n = time.monotonic(), _applied(metrics)
                    series.append((now - t0, (n - last_n) / (now - last_t)))
                    last_t, last_n = now, n

            sampling = asyncio.create_task(sampler())

            async def sample(until: float) -> None:
                await asyncio.sleep(max(0.0, until - time.monotonic()))

            await sample(t0 + args.down)
            what = await asyncio.to_thread(take_down, stack, args.part)
            print(f"{what} at {time.monotonic() - t0:.0f} s")
            await sample(t0 + 2 * args.down)
            activity.send_signal(signal.SIGINT)
            await asyncio.to_thread(activity.wait, 30)
            back = time.monotonic()
            await asyncio.to_thread(stack.start_gorse)
            ready = time.monotonic() - back
            print(
                f"{args.part} started again at {back - t0:.0f} s (ready after {ready:.1f} s); "
                "activity stopped"
            )
            await asyncio.sleep(2.0)
            await dms_put(port)
            while True:
                drift = await verify(s)
                waited = time.monotonic() - back
                print(f"  {waited:5.0f} s after the return: {drift.total} differences")
                if drift.total == 0 or waited > args.give_up:
                    break
                await sample(time.monotonic() + 1.0)
            verdict = "equal" if drift.total == 0 else f"NOT equal ({drift.total} differences)"
            print(f"Gorse {verdict} {waited:.0f} s after {args.part} came back (target <= 30 s for a server)")
            print(f"dead-lettered: {_total(metrics.records_dead_lettered):.0f} records")
            sampling.cancel()
        finally:
            dms.send_signal(signal.SIGTERM)
            await asyncio.to_thread(dms.wait, 30)
            stop.set()
            await consuming
            cleanup(s)
    if args.png:
        draw(series, args)


def take_down(stack: Stack, part: str) -> str:
    """Stop the whole Gorse (every process of the stack's topology), or SIGKILL one part."""
    if part == "gorse":
        return f"Gorse stopped ({', '.join(stack.gorse.stop())})"
    pid = stack.procs.pid(part)
    if pid is None:
        raise SystemExit(f"{part} does not run: running are {', '.join(stack.gorse.running())}")
    os.killpg(pid, signal.SIGKILL)
    while stack.procs.pid(part) is not None:
        time.sleep(0.05)
    return f"{part} killed (SIGKILL)"


def _total(counter: object) -> float:
    samples = (x for m in counter.collect() for x in m.samples)  # type: ignore[attr-defined]
    return float(sum(x.value for x in samples if x.name.endswith("_total")))


def draw(series: list[tuple[float, float]], args: argparse.Namespace) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: pip install -e '.[bench]' for matplotlib")
        return
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot([t for t, _ in series], [v for _, v in series], label="records applied per second")
    down = "Gorse down" if args.part == "gorse" else f"{args.part} down"
    ax.axvspan(args.down, 2 * args.down, color="tab:red", alpha=0.15, label=down)
    ax.set_xlabel("seconds into the load")
    ax.legend(loc="upper right")
    who = "Gorse" if args.part == "gorse" else args.part
    ax.set_title(f"catch-up after a {args.down:.0f} s {who} outage at {args.rate:,.0f} changes/s")
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"chart: {args.png}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--down", type=float, default=60.0, help="seconds of load before, and of the outage")
    p.add_argument("--ratings", type=int, default=100_000)
    p.add_argument("--mix", default="", help="the activity's mix (see `gorse-cdc data activity --mix`)")
    p.add_argument("--give-up", type=float, default=600.0, help="stop verifying after this long")
    p.add_argument(
        "--part",
        default="gorse",
        help="gorse: stop every Gorse process; a process name (gorse-server-1 in the cluster "
        "topology): SIGKILL it",
    )
    p.add_argument("--png", default="")
    p.add_argument("--logs", type=Path, default=Path("/tmp"))
    try:
        asyncio.run(cancelled_by_sigterm(main(p.parse_args())))
    except asyncio.CancelledError:
        sys.exit("stopped by SIGTERM: the DMS is stopped, the slot and the stream dropped")
