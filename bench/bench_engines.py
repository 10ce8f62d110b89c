"""The peer benchmark: the native engine vs the real KCL (`consume --engine kcl`), one run, the
same streams and records, the same machine and local stack (`gorse-cdc stack up` first). Each
engine runs as a real `gorse-cdc consume` process on a fresh lease table.

(a) read path, no-op sink (consumer.discard_writes), a backlog of --backlog records: records/s
    from the first checkpoint to the last (start-up excluded), and records per CPU second of the
    engine's processes over that span (less sensitive to a shared machine than records/s)
(b) the same with the Gorse sink, a --gorse-backlog of database changes: records/s
    (a) and (b) also with two native processes on one lease table: the KCL runs one Python
    process per shard, the native engine one per worker
(c) start to first record: process start -> first checkpoint (from (a)); plus the KCL with its
    own default intervals (kcl.tuned = false)
(d) failover: two workers on a 1-shard stream fed 20 records/s; kill -9 of the one holding the
    lease -> the other checkpoints a new record (no-op sink: lease mechanics only)
(e) commit -> readable in Gorse at --rate changes/s for --seconds (sampled probes), p50 / p99

    python bench/bench_engines.py [--backlog 200000] [--gorse-backlog 20000] [--rate 200]
        [--seconds 20] [--png bench/engines.png] [--no-kcl-defaults]
        [--only read,read2,gorse,first,failover,fresh]

    python bench/bench_engines.py --only read    # (a) and (c), native vs KCL: a few minutes
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_consumer import freshness
from bench.engines_report import chart, table
from consumers.leases.lease import SHARD_END, Lease
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import Env, clear_gorse, with_names
from tests.integration.consumers.feed import Feed

LOGS = Path(".stack") / "bench-engines"
ENGINES = ("native", "kcl")
NATIVE_2 = "native, 2 processes"
BASELINE = "native, --baseline"


@dataclass
class Put:
    """Every sequence number put, per shard: a checkpoint tells how many were processed."""

    by_shard: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_shard.values())

    def done(self, leases: list[Lease]) -> int:
        n = 0
        for le in leases:
            seqs = self.by_shard.get(le.lease_key, [])
            if le.checkpoint == SHARD_END:
                n += len(seqs)
            elif le.checkpoint.isdigit():
                n += bisect.bisect_right(seqs, int(le.checkpoint))
        return n


def put_all(settings: Settings, stream: str, payloads: list[tuple[bytes, str]], into: Put) -> None:
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    for start in range(0, len(payloads), 500):
        chunk = payloads[start : start + 500]
        resp = k.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": p} for d, p in chunk])
        assert resp["FailedRecordCount"] == 0, resp
        for r in resp["Records"]:
            into.by_shard.setdefault(r["ShardId"], []).append(int(r["SequenceNumber"]))
    for seqs in into.by_shard.values():
        seqs.sort()


def synthetic(n: int, seed: int = 5) -> list[tuple[bytes, str]]:
    """DMS rating inserts (valid records, no database rows: for the no-op sink)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = rng.randint(1, 50_000)
        row = {
            "user_id": user,
            "movie_id": rng.randint(1, 5000),
            "rating": rng.randint(1, 5),
            "rated_at": "2026-11-28T00:00:00.000000",
        }
        ts = "2026-11-28T00:00:00Z"
        rec = DmsRecord(
            "data",
            "insert",
            "public",
            "ratings",
            row,
            None,
            timestamp=ts,
            transaction_id=i,
            transaction_record_id=1,
            commit_timestamp=ts,
            partition_key_type="attribute-name",
        )
        out.append((encode_record(rec), str(user)))
    return out


def leases(settings: Settings, table: str) -> list[Lease]:
    ddb = boto3.client("dynamodb", **settings.aws_client_kwargs("dynamodb"))
    try:
        return [Lease.from_item(i) for i in ddb.scan(TableName=table, ConsistentRead=True).get("Items", [])]
    except ddb.exceptions.ResourceNotFoundException:
        return []


def start(
    engine: str, stream: str, table: str, worker: str, cwd: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """``cwd``: run the gorse-cdc code of that checkout (``python -m`` imports from there first)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "entrypoints.cli",
        "--json-logs",
        "consume",
        "--engine",
        engine,
        "--stream",
        stream,
        "--lease-table",
        table,
        "--worker-id",
        worker,
        "--metrics-port",
        "0",
    ]
    log = (LOGS / f"{table}-{worker}.log").open("ab")
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log, cwd=cwd)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 the worker: the KCL's JVM (the wrapper's child) or the native process."""
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    proc.kill()
    proc.wait()


def wait_for(cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.25) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic()
        time.sleep(poll_s)
    return None


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and all their descendants
    (the KCL: the wrapper, its JVM and the JVM's Python record processors), from /proc."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(c for c, pp in parent.items() if pp == pid)
    return total


@dataclass
class Drain:
    rate: float  # records/s from the first checkpoint to the last
    first_s: float  # process start -> first checkpoint
    per_cpu_s: float  # records per CPU second of the engine's processes over the same span


def drain(
    settings: Settings,
    engine: str,
    stream: str,
    put: Put,
    workers: int = 1,
    timeout_s: float = 900,
    cwd: Path | None = None,
    **env: str,
) -> Drain:
    """``workers`` processes of the engine on one fresh lease table (they share the shards)."""
    table = f"bench-{engine}-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    procs = [start(engine, stream, table, f"{engine}-{w}", cwd, **env) for w in "abcd"[:workers]]
    try:
        first: tuple[float, int, float] | None = None
        pids = [p.pid for p in procs]
        while time.monotonic() - t0 < timeout_s:
            done = put.done(leases(settings, table))
            now = time.monotonic()
            if done and first is None:
                first = (now, done, tree_cpu_s(pids))
            if done >= put.total and first is not None:
                span = max(now - first[0], 1e-3)
                cpu = max(tree_cpu_s(pids) - first[2], 1e-3)
                return Drain((done - first[1]) / span, first[0] - t0, (done - first[1]) / cpu)
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{engine} exited; see {LOGS}")
            time.sleep(0.2)
        raise TimeoutError(f"{engine} did not drain in {timeout_s} s")
    finally:
        for p in procs:
            stop(p)


def first_record_s(settings: Settings, engine: str, stream: str, put: Put, **env: str) -> float:
    table = f"bench-first-{engine}-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    proc = start(engine, stream, table, f"{engine}-first", **env)
    try:
        t = wait_for(lambda: put.done(leases(settings, table)) > 0, 400, 0.5)
        return (t - t0) if t else float("nan")
    finally:
        stop(proc)


def failover_s(settings: Settings, engine: str, up_s: float, **env: str) -> float:
    stream, table = f"bench-fo-{uuid.uuid4().hex[:6]}", f"bench-fo-{engine}-{uuid.uuid4().hex[:6]}"
    ensure_stream(settings, stream, 1)
    stop_feed = threading.Event()

    def feed() -> None:
        k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
        payloads = synthetic(100_000, seed=9)
        i = 0
        while not stop_feed.is_set():
            k.put_record(StreamName=stream, Data=payloads[i][0], PartitionKey=payloads[i][1])
            i += 1
            time.sleep(0.05)

    threading.Thread(target=feed, daemon=True).start()
    a = start(engine, stream, table, f"{engine}-a", **env)
    b: subprocess.Popen[bytes] | None = None
    try:

        def owner_checkpoint() -> tuple[str | None, str]:
            ls = leases(settings, table)
            return (ls[0].lease_owner, ls[0].checkpoint) if ls else (None, "")

        if wait_for(lambda: owner_checkpoint()[1].isdigit(), 400) is None:
            return float("nan")
        b = start(engine, stream, table, f"{engine}-b", **env)
        time.sleep(up_s)  # B is up (the KCL's initialisation takes this long)
        owner, _ = owner_checkpoint()
        victim, survivor = (a, "b") if owner == f"{engine}-a" else (b, "a")
        _, at_kill = owner_checkpoint()
        t_kill = time.monotonic()
        kill9(victim)

        def survivor_applied() -> bool:
            o, cp = owner_checkpoint()
            return (
                o == f"{engine}-{survivor}"
                and cp.isdigit()
                and (not at_kill.isdigit() or int(cp) > int(at_kill))
            )

        t = wait_for(survivor_applied, 600)
        return (t - t_kill) if t else float("nan")
    finally:
        stop_feed.set()
        for p in (a, b):
            if p is not None and p.poll() is None:
                stop(p)


async def fresh(
    settings: Settings, engine: str, stream: str, feed: Feed, rate: float, seconds: float, **env: str
) -> tuple[float, float]:
    table = f"bench-fresh-{engine}-{uuid.uuid4().hex[:6]}"
    s = with_names(settings, stream, table)
    e = Env(s, stream, table, feed)
    warm = feed.load(users=200, movies=300, ratings=500)
    await asyncio.to_thread(feed.put, warm)
    proc = start(engine, stream, table, f"{engine}-fresh", **env)
    try:
        tips = dict(feed.last_sequence)
        await asyncio.to_thread(
            wait_for,
            lambda: Put({k: [int(v)] for k, v in tips.items()}).done(leases(s, table)) >= len(tips),
            400,
        )
        lags = sorted(await freshness(e, feed.activity(int(rate * seconds)), rate, seconds))
    finally:
        stop(proc)
    if not lags:
        return float("nan"), float("nan")
    return statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]


PHASES = ("read", "read2", "gorse", "first", "failover", "fresh")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backlog", type=int, default=200_000)
    ap.add_argument("--gorse-backlog", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--no-kcl-defaults", action="store_true", help="skip the slow KCL-defaults runs")
    ap.add_argument(
        "--only",
        default=",".join(PHASES),
        help="comma-separated phases (default all): read = (a)+(c) native and kcl, read2 = (a) with two "
        "native processes, gorse = (b), first = (c) with KCL's defaults, failover = (d), fresh = (e)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="with read: also run (a) with the native engine of this other checkout (e.g. the commit "
        "before a change: git archive COMMIT | tar -x -C DIR), in the same run",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    if unknown := only - set(PHASES):
        ap.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    settings = Settings()
    tag = uuid.uuid4().hex[:6]
    rows: dict[str, dict[str, float]] = {"native": {}, "kcl": {}, "kcl (KCL defaults)": {}, NATIVE_2: {}}
    noop = {"GORSE_CDC_CONSUMER__DISCARD_WRITES": "true"}
    defaults = {"GORSE_CDC_KCL__TUNED": "false"}

    stream_a = f"bench-a-{tag}"
    put_a = Put()
    if only & {"read", "read2", "first"}:
        ensure_stream(settings, stream_a, 2)
        t = time.monotonic()
        put_all(settings, stream_a, synthetic(args.backlog), put_a)
        print(f"(a) {put_a.total:,} records put in {time.monotonic() - t:.0f} s", flush=True)
    if "read" in only:
        for engine in ENGINES:
            d = drain(settings, engine, stream_a, put_a, **noop)
            rows[engine].update(a=d.rate, c=d.first_s)
            print(
                f"(a) {engine}: {d.rate:,.0f} records/s ({d.per_cpu_s:,.0f} per CPU second); "
                f"(c) first record after {d.first_s:.1f} s",
                flush=True,
            )
        if args.baseline:
            d = drain(settings, "native", stream_a, put_a, cwd=args.baseline.resolve(), **noop)
            rows[BASELINE] = {"a": d.rate}
            print(f"(a) {BASELINE}: {d.rate:,.0f} records/s ({d.per_cpu_s:,.0f} per CPU second)", flush=True)
        print(f"(a) native / kcl: {rows['native']['a'] / rows['kcl']['a']:.2f}", flush=True)
    if "read2" in only:
        # the KCL runs one Python process per shard; the native engine scales by running more workers
        d = drain(settings, "native", stream_a, put_a, workers=2, **noop)
        rows[NATIVE_2]["a"] = d.rate
        print(f"(a) {NATIVE_2}: {d.rate:,.0f} records/s ({d.per_cpu_s:,.0f} per CPU second)", flush=True)

    if "gorse" in only:
        stream_b = f"bench-b-{tag}"
        ensure_stream(settings, stream_b, 2)
        feed = Feed(with_names(settings, stream_b, "unused"), stream_b, seed=3)
        feed.truncate()
        changes = feed.load(users=1000, movies=1500, ratings=5000) + feed.activity(args.gorse_backlog)
        mapper = feed.mapper
        put_b = Put()
        put_all(
            settings,
            stream_b,
            [(encode_record(r), mapper.partition_key(r.table, r.data)) for r in changes],
            put_b,
        )
        for name, engine, workers in (("native", "native", 1), ("kcl", "kcl", 1), (NATIVE_2, "native", 2)):
            await clear_gorse(settings)
            d = drain(settings, engine, stream_b, put_b, workers=workers)
            rows[name]["b"] = d.rate
            print(f"(b) {name}: {d.rate:,.0f} records/s ({put_b.total:,} changes, Gorse sink)", flush=True)
        feed.close()

    if "first" in only and not args.no_kcl_defaults:
        small = Put({k: v[:1] for k, v in put_a.by_shard.items()})
        c = first_record_s(settings, "kcl", stream_a, small, **noop, **defaults)
        rows["kcl (KCL defaults)"]["c"] = c
        print(f"(c) kcl with KCL's default intervals: first record after {c:.1f} s", flush=True)

    if "failover" in only:
        for name, engine, up_s, env in (
            ("native", "native", 5.0, {}),
            ("kcl", "kcl", 40.0, {}),
            ("kcl (KCL defaults)", "kcl", 150.0, defaults),
        ):
            if env and args.no_kcl_defaults:
                continue
            f = failover_s(settings, engine, up_s, **noop, **env)
            rows[name]["d"] = f
            print(f"(d) {name}: failover after kill -9 in {f:.1f} s", flush=True)

    if "fresh" in only:
        stream_e = f"bench-e-{tag}"
        ensure_stream(settings, stream_e, 2)
        feed_e = Feed(with_names(settings, stream_e, "unused"), stream_e, seed=4)
        feed_e.truncate()
        for engine in ENGINES:
            p50, p99 = await fresh(settings, engine, stream_e, feed_e, args.rate, args.seconds)
            rows[engine].update(e50=p50, e99=p99)
            print(
                f"(e) {engine}: commit -> readable at {args.rate:.0f}/s p50 {p50:.2f} s, p99 {p99:.2f} s",
                flush=True,
            )
        feed_e.close()

    rows = {k: v for k, v in rows.items() if v}
    print()
    print(table(rows))
    if args.png:
        chart(rows, args.png)
        print(f"chart: {args.png}")


if __name__ == "__main__":
    asyncio.run(main())
