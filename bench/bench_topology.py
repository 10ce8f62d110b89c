"""Gorse's two topologies side by side, in one run: one gorse-in-one on SQLite (the stack's
default, "single") and the cluster (gorse-master, two gorse-servers, a gorse-worker) on
PostgreSQL ("cluster"). Each runs on ports, folders and databases of its own, started by the
stack's code (entrypoints/stack/gorse.py): the stack's running Gorse is not touched.

Per topology:
1. the write ceiling per call type: the Gorse client (both servers, round-robin, for the
   cluster) writing as fast as Gorse answers: users and items (POST batches), feedback (PUT
   batches), then per-row calls (DELETE one feedback row, GET a user's feedback) from
   --row-callers callers;
2. commit -> readable at --rate changes/s of the default `data activity` mix for --seconds, after
   a full load of a MovieLens-100K-sized base: bench/bench_freshness.py on a private source
   database, stream and slot.
Meanwhile it samples the CPU each part used (Gorse's processes, PostgreSQL, this process: the
bench's client and the consumer) to tell which limit stops each.

Both run with the same client settings (GORSE_CDC_GORSE__*): since the write locks
(gorse.write_partitions, gorse_cdc/gorse/write_locks.py) concurrent feedback batches no longer
deadlock Gorse 0.5.11 on PostgreSQL, so no one-writer bound is needed for the cluster.

    python bench/bench_topology.py [--rate 1000] [--seconds 60] [--png bench/topology.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_freshness
from entrypoints.stack.components import Stack
from entrypoints.stack.gorse import LocalGorse
from entrypoints.stack.processes import ProcessTable, wait_until
from gorse_cdc.errors import FatalError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User
from gorse_cdc.settings import Settings

TOPOLOGIES = ("single", "cluster")
TICK = os.sysconf("SC_CLK_TCK")


# ---- CPU accounting (/proc) ----------------------------------------------------------------
def _cpu(pid: int, children: bool = False) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / TICK


def _children(ppid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1]) == ppid:
                    out.append(int(d.name))
            except (FileNotFoundError, IndexError, ValueError):
                continue
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) of all cores since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    return (sum(f) - idle) / TICK, sum(f) / TICK


class CpuMeter:
    """CPU seconds used by Gorse's processes, PostgreSQL (the postmaster, its backends and the
    backends that ended meanwhile) and this process, between start() and stop()."""

    def __init__(self, gorse: LocalGorse, postmaster: int | None) -> None:
        self.gorse, self.postmaster = gorse, postmaster

    def sample(self) -> dict[str, float]:
        pg = 0.0
        if self.postmaster is not None:
            pg = _cpu(self.postmaster, children=True) + sum(_cpu(p) for p in _children(self.postmaster))
        t = os.times()
        busy, total = _machine_busy()
        return {
            "gorse": sum(_cpu(p, children=True) for p in self.gorse.running().values()),
            "postgres": pg,
            "bench": t.user + t.system,
            "machine_busy": busy,
            "machine_total": total,
            "wall": time.monotonic(),
        }

    def start(self) -> None:
        self._start = self.sample()

    def cores(self) -> dict[str, float]:
        """Cores used on average since start(): gorse, postgres, bench (client + consumer), and
        the machine's busy share (1.0 = every core busy)."""
        end = self.sample()
        d = {k: end[k] - self._start[k] for k in end}
        wall = max(d["wall"], 1e-9)
        return {
            "gorse": d["gorse"] / wall,
            "postgres": d["postgres"] / wall,
            "bench": d["bench"] / wall,
            "busy": d["machine_busy"] / max(d["machine_total"], 1e-9),
        }


# ---- a private Gorse -----------------------------------------------------------------------
def _free_port() -> int:
    return bench_freshness.free_port()


def private_settings(base: Settings, topology: str, root: Path, source_db: str) -> Settings:
    st = base.stack.model_copy(
        update={
            "dir": root,
            "port_offset": 0,
            "postgres_port": base.stack.port("postgres"),
            "gorse_topology": topology,
            "gorse_store": None,  # sqlite for single, postgres for cluster
            "gorse_http_port": _free_port(),
            "gorse_grpc_port": _free_port(),
            "gorse_server_ports": [_free_port(), _free_port()],
            "gorse_worker_port": _free_port(),
            "gorse_database": f"gorse_topo_{uuid.uuid4().hex[:8]}",
        }
    )
    src = base.source.model_copy(update={"database": source_db})
    return base.model_copy(update={"stack": st, "source": src})


class PrivateGorse:
    def __init__(self, settings: Settings, base: Settings) -> None:
        self.settings = settings
        self.procs = ProcessTable(settings.stack.dir)
        self.gorse = LocalGorse(settings, settings.stack.dir, self.procs, Stack(base).postgres)

    def wait(self, name: str, check: Callable[[], bool], what: str, timeout_s: float) -> None:
        def alive_and() -> bool:
            if self.procs.pid(name) is None:
                raise FatalError(f"{what} exited: see {self.procs.log_file(name)}")
            return check()

        wait_until(alive_and, what, timeout_s, self.procs.log_file(name))

    def start(self) -> None:
        self.gorse.start(self.wait)

    def reset(self) -> None:
        self.gorse.reset(self.wait)

    def close(self) -> None:
        self.gorse.stop()
        if self.settings.stack.gorse_store_kind == "postgres":
            for db in self.gorse.databases:
                self.gorse.postgres.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


# ---- 1. write ceiling per call type ---------------------------------------------------------
async def ceiling(
    settings: Settings, args: argparse.Namespace, meter: CpuMeter
) -> dict[str, dict[str, float]]:
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
    rows_of = [(f.user_id, f.item_id) for f in fb[: args.rows]]
    out: dict[str, dict[str, float]] = {}
    async with GorseClient.from_settings(settings) as c:
        c.batch_size = args.batch

        async def timed(name: str, n: int, callers: int, work: Callable[[int], Awaitable[Any]]) -> None:
            meter.start()
            start = time.perf_counter()
            await asyncio.gather(*(work(k) for k in range(callers)))
            secs = time.perf_counter() - start
            out[name] = {"per_s": n / secs, **meter.cores()}
            print(f"  {name:<26} {n:>8,} in {secs:6.1f} s  {n / secs:>9,.0f}/s  {_cores(out[name])}")

        def split(rows: Sequence[Any], k: int, callers: int) -> Sequence[Any]:
            return rows[k::callers]

        cc, rc = args.concurrency, args.row_callers
        await timed("users (POST batch)", len(users), cc, lambda k: c.upsert_users(split(users, k, cc)))
        await timed("items (POST batch)", len(items), cc, lambda k: c.upsert_items(split(items, k, cc)))
        await timed("feedback (PUT batch)", len(fb), cc, lambda k: c.put_feedback(split(fb, k, cc)))

        async def reads(k: int) -> None:
            for u, _ in split(rows_of, k, rc):
                await c.user_feedback(u)

        async def deletes(k: int) -> None:
            for u, i in split(rows_of, k, rc):
                await c.delete_feedback(u, i)

        await timed("GET user feedback (row)", len(rows_of), rc, reads)
        await timed("DELETE feedback (row)", len(rows_of), rc, deletes)
        print(f"  answers per server: {dict(c.served)}")
    return out


def _cores(c: dict[str, float]) -> str:
    used = f"gorse {c['gorse']:.2f}, postgres {c['postgres']:.2f}, bench {c['bench']:.2f}"
    return f"cores: {used}; machine busy {c['busy']:.0%}"


# ---- 2. commit -> readable ------------------------------------------------------------------
def make_source_db(base: Settings, name: str) -> None:
    pg, user = Stack(base).postgres, base.source.user
    pg.psql(f"CREATE DATABASE {name} OWNER {user}")
    schema = resources.files("entrypoints.stack").joinpath("schema.sql").read_text("utf-8")
    pg.psql(f"SET ROLE {user}; {schema}", db=name)


async def freshness(private: PrivateGorse, args: argparse.Namespace, meter: CpuMeter) -> dict[str, float]:
    fargs = argparse.Namespace(
        rate=args.rate,
        seconds=args.seconds,
        probe_every=0.5,
        ratings=args.ratings,
        shards=2,
        png="",
        mix="",
        logs=args.logs,
    )
    meter.start()
    figures = await bench_freshness.main(fargs, private.settings, private.reset)
    return {**figures, **meter.cores()}


# ---- the run --------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    base = Settings()
    postmaster_file = Stack(base).postgres.data / "postmaster.pid"
    postmaster = int(postmaster_file.read_text().split()[0]) if postmaster_file.exists() else None
    source_db = f"ott_topo_{uuid.uuid4().hex[:8]}"
    make_source_db(base, source_db)
    results: dict[str, dict[str, Any]] = {}
    try:
        for topology in args.topologies:
            root = Path(tempfile.mkdtemp(prefix=f"gorse-{topology}-"))
            s = private_settings(base, topology, root, source_db)
            private = PrivateGorse(s, base)
            print(
                f"\n=== {topology}: {', '.join(private.gorse.names)} on {s.stack.gorse_store_kind}; "
                f"write_partitions={s.gorse.write_partitions}, feedback_writers={s.gorse.feedback_writers}; "
                f"API on {', '.join(s.gorse_urls)}"
            )
            try:
                await asyncio.to_thread(private.start)
                meter = CpuMeter(private.gorse, postmaster)
                callers = f"{args.concurrency} callers; per-row calls: {args.row_callers}"
                print(f"write ceiling (batch {args.batch}, {callers}):")
                results[topology] = {"ceiling": await ceiling(s, args, meter)}
                if args.seconds > 0:
                    results[topology]["fresh"] = await freshness(private, args, meter)
                    print(f"  {_cores(results[topology]['fresh'])} (whole freshness run)")
            finally:
                await asyncio.to_thread(private.close)
                shutil.rmtree(root, ignore_errors=True)
    finally:
        Stack(base).postgres.psql(f"DROP DATABASE IF EXISTS {source_db} WITH (FORCE)")
    return results


def _latency(f: dict[str, float]) -> str:
    seen = f"{f['probes']:.0f} probes, {f['lost']:.0f} not readable within 60 s"
    if not f["probes"]:
        return f"none readable ({seen})"
    return f"{f['p50_ms'] / 1000:.1f} / {f['p90_ms'] / 1000:.1f} / {f['p99_ms'] / 1000:.1f} s ({seen})"


async def run_until_sigterm(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """SIGTERM cancels the run like Ctrl-C: its finally blocks stop the private Gorse processes,
    the DMS, and drop the databases, slot and stream."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


def table(results: dict[str, dict[str, Any]]) -> str:
    tops = list(results)
    lines = ["| | " + " | ".join(tops) + " |", "|---|" + "---|" * len(tops)]
    calls = list(next(iter(results.values()))["ceiling"])
    for call in calls:
        cells = []
        for t in tops:
            c = results[t]["ceiling"][call]
            cells.append(f"{c['per_s']:,.0f}/s (Gorse {c['gorse']:.1f}, PG {c['postgres']:.1f} cores)")
        lines.append(f"| {call} | " + " | ".join(cells) + " |")
    if all("fresh" in results[t] for t in tops):
        rows: list[tuple[str, Callable[[dict[str, float]], str]]] = [
            ("full load of the base", lambda f: f"{f['full_load_s']:.1f} s"),
            ("activity achieved", lambda f: f"{f['achieved_per_s']:,.0f} changes/s"),
            ("commit -> readable p50 / p90 / p99", _latency),
            (
                "CPU during that run",
                lambda f: (
                    f"Gorse {f['gorse']:.2f}, PG {f['postgres']:.2f}, consumer+bench {f['bench']:.2f} "
                    f"cores; machine {f['busy']:.0%} busy"
                ),
            ),
        ]
        for name, fmt in rows:
            lines.append(f"| {name} | " + " | ".join(fmt(results[t]["fresh"]) for t in tops) + " |")
    return "\n".join(lines)


def draw(results: dict[str, dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: pip install -e '.[bench]' for matplotlib")
        return
    tops = list(results)
    calls = list(next(iter(results.values()))["ceiling"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(tops)
    for k, t in enumerate(tops):
        xs = [i + k * width for i in range(len(calls))]
        a.bar(xs, [results[t]["ceiling"][c]["per_s"] for c in calls], width, label=t)
    a.set_xticks([i + width * (len(tops) - 1) / 2 for i in range(len(calls))], calls, rotation=15, fontsize=8)
    a.set_yscale("log")
    a.set_ylabel("rows or calls per second (log)")
    a.set_title("Gorse write ceiling per call type")
    a.legend()
    if all("fresh" in results[t] for t in tops):
        for k, t in enumerate(tops):
            f = results[t]["fresh"]
            b.bar([k - 0.2], [f.get("p50_ms", 0) / 1000], 0.4, color="C0", label="p50" if k == 0 else None)
            b.bar([k + 0.2], [f.get("p99_ms", 0) / 1000], 0.4, color="C1", label="p99" if k == 0 else None)
        b.set_xticks(range(len(tops)), tops)
        b.set_ylabel("seconds")
        b.set_title("commit -> readable")
        b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topologies", nargs="+", choices=TOPOLOGIES, default=list(TOPOLOGIES))
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--feedback", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=2_000, help="per-row calls (GET, DELETE) per type")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4, help="callers of the batch writes")
    p.add_argument("--row-callers", type=int, default=8, help="callers of the per-row calls")
    p.add_argument("--rate", type=float, default=1000.0, help="activity changes per second")
    p.add_argument("--seconds", type=float, default=60.0, help="activity duration (0: no freshness run)")
    p.add_argument("--ratings", type=int, default=100_000, help="size of the freshness run's base")
    p.add_argument("--logs", type=Path, default=Path("/tmp"), help="where dms.log and activity.log go")
    p.add_argument("--png", default="", help="write the chart here (e.g. bench/topology.png)")
    args = p.parse_args()
    results = asyncio.run(run_until_sigterm(args))
    print("\n" + table(results))
    if args.png:
        draw(results, Path(args.png))


if __name__ == "__main__":
    main()
