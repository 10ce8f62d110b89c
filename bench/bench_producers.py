"""Producers benchmark: generator rows/s, activity changes/s, and the local DMS's capture
throughput (full load and CDC, every change into both Kinesis and S3). Prints figures; no
asserts. Needs the local stack (gorse-cdc stack up; with --engine mysql or both, the stack's
MariaDB source too: gorse-cdc stack up --source mysql); uses a private stream, prefix and slot.

    GORSE_CDC_STACK__DIR=... .venv/bin/python bench/bench_producers.py [--ratings 300000] [--changes 30000]
    .venv/bin/python bench/bench_producers.py --engine both   # MySQL's rates beside PostgreSQL's

Besides the rates it prints the CPU each captured change cost: the local DMS (its process, every
thread), the stack's Kinesis emulator (its pid file) and PostgreSQL's walsender decoding the
slot. On a shared machine the rates vary with the load; these costs much less.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from pathlib import Path

import boto3
import psycopg

from entrypoints.stack.processes import ProcessTable
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.dms import run_dms
from producers.dms.slot import drop_slot
from producers.synthetic import GeneratorConfig, generate


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, this one by default; 0 if it is gone."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU used during a block: this process, the Kinesis emulator, and (PostgreSQL) the
    walsender of the slot, found once it is active."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.emulator = ProcessTable(s.stack.dir.resolve()).pid("kinesis")
        self.walsender: int | None = None
        self._stop = threading.Event()

    def __enter__(self) -> CpuWatch:
        self.own0, self.emu0 = cpu_s(), cpu_s(self.emulator) if self.emulator else 0.0
        self.wal0 = self.wal1 = 0.0
        if self.s.source.engine == "postgres":
            threading.Thread(target=self._walsender, daemon=True).start()
        return self

    def _walsender(self) -> None:
        with psycopg.connect(self.s.source_dsn, autocommit=True) as q:
            while not self._stop.is_set() and self.walsender is None:
                row = q.execute(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                    (self.s.source.slot_name,),
                ).fetchone()
                if row and row[0]:
                    self.walsender = int(row[0])
                    self.wal0 = cpu_s(self.walsender)
                self._stop.wait(0.01)
            while not self._stop.wait(0.05):
                self.wal1 = cpu_s(self.walsender) or self.wal1

    def __exit__(self, *exc: object) -> None:
        self.own = cpu_s() - self.own0
        self.emu = cpu_s(self.emulator) - self.emu0 if self.emulator else 0.0
        self._stop.set()
        self.wal = max(0.0, self.wal1 - self.wal0)

    def describe(self, n: int) -> str:
        if not n:
            return ""
        us = 1e6 / n
        parts = [f"local DMS {self.own * us:.0f} us"]
        if self.emulator:
            parts.append(f"Kinesis emulator {self.emu * us:.0f} us")
        if self.walsender and self.wal > 0:
            parts.append(f"walsender {self.wal * us:.0f} us")
        return "CPU a change: " + ", ".join(parts)


def bench(base: Settings, engine: str, args: argparse.Namespace) -> dict[str, float]:
    name = uuid.uuid4().hex[:8]
    s = base.model_copy(
        update={
            "kinesis": base.kinesis.model_copy(update={"stream_name": f"bench-{name}", "shard_count": 4}),
            "s3": base.s3.model_copy(update={"prefix": f"bench-{name}", "cdc_max_batch_interval_s": 5}),
            "source": base.source.model_copy(update={"slot_name": f"bench_{name}", "engine": engine}),
        }
    )
    print(f"== {engine} source ({s.source_dsn.split('@')[-1]})")
    ensure_stream(s)
    ensure_bucket(s)
    try:
        g = generate(s, GeneratorConfig(args.users, args.movies, args.ratings, seed=1), truncate=True)
        print(f"generator:  {g.describe()}")

        t0 = time.monotonic()
        with CpuWatch(s) as load_cpu:
            load = run_dms(s, mode="full-load-and-cdc", until_idle=True, idle_s=0.5)
        load_s = time.monotonic() - t0
        rows = g.users + g.movies + g.ratings
        print(
            f"full load:  {rows} rows -> {load.kinesis_records} Kinesis records + LOAD files "
            f"in {load_s:.1f} s "
            f"({rows / load_s:,.0f} rows/s, idle wait included)"
        )
        print(f"            {load_cpu.describe(rows).replace('a change', 'a row')}")

        a = run_activity(s, changes=args.changes, seed=2)
        print(f"activity:   {a.describe()}")

        t0 = time.monotonic()
        with CpuWatch(s) as cdc_cpu:
            cdc = run_dms(s, until_idle=True, idle_s=0.5)
        dt = time.monotonic() - t0 - 0.5
        print(
            f"CDC:        {cdc.changes} changes in {cdc.transactions} transactions -> Kinesis "
            f"({cdc.kinesis_records} records) and S3 ({cdc.s3_cdc_files} files) in {dt:.1f} s: "
            f"{cdc.changes / dt:,.0f} changes/s"
        )
        print(f"            {cdc_cpu.describe(cdc.changes)}")
        return {"load_rows_s": rows / load_s, "cdc_changes_s": cdc.changes / dt, "changes": cdc.changes}
    finally:
        if engine == "postgres":
            drop_slot(s.source_dsn, s.source.slot_name)
        boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(
            StreamName=s.kinesis.stream_name
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--movies", type=int, default=2000)
    ap.add_argument("--ratings", type=int, default=300_000)
    ap.add_argument("--changes", type=int, default=30_000, help="activity events for the CDC run")
    ap.add_argument(
        "--engine",
        choices=["postgres", "mysql", "both"],
        default="postgres",
        help="the source: PostgreSQL (wal2json), MySQL (MariaDB binlog; the stack's mysql-source), or both",
    )
    args = ap.parse_args()
    base = Settings()
    engines = ["postgres", "mysql"] if args.engine == "both" else [args.engine]
    results = {e: bench(base, e, args) for e in engines}
    print("\nsource      full load (rows/s)   CDC capture (changes/s)")
    for e, r in results.items():
        print(f"{e:<11} {r['load_rows_s']:>18,.0f}   {r['cdc_changes_s']:>23,.0f}")


if __name__ == "__main__":
    main()
