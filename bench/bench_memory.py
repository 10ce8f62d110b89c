"""Consumer memory from an empty stream to a large backlog: the consumer (no-op sink,
consumer.discard_writes, so Gorse is not the limit) first idles on an empty private stream, then
--records DMS rating records are put and it drains them. Prints its RSS (from /proc) idle, at
every 10 % of the drain and at its peak, and the drain rate. Needs `gorse-cdc stack up`.

    python bench/bench_memory.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from bench_engines import synthetic

from consumers.metrics import Metrics
from consumers.wiring import open_consumer
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def put(settings: Settings, n: int) -> float:
    """Put n records (8 threads, 500 per call); returns the seconds it took."""
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    stream = settings.kinesis.stream_name
    started = time.monotonic()

    def chunk(start: int) -> None:
        rows = synthetic(min(500, n - start), seed=start)
        resp = k.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": p} for d, p in rows])
        assert resp["FailedRecordCount"] == 0, resp

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(chunk, range(0, n, 500)))
    return time.monotonic() - started


def read(metrics: Metrics) -> float:
    return sum(
        s.value for m in metrics.records_read.collect() for s in m.samples if s.name.endswith("_total")
    )


async def main(args: argparse.Namespace) -> None:
    base = Settings()
    tag = uuid.uuid4().hex[:8]
    s = base.model_copy(
        update={
            "kinesis": base.kinesis.model_copy(update={"stream_name": f"mem-{tag}", "shard_count": 2}),
            "leases": base.leases.model_copy(update={"table": f"mem-leases-{tag}"}),
            "consumer": base.consumer.model_copy(update={"metrics_port": 0, "discard_writes": True}),
        }
    )
    ensure_stream(s)
    metrics = Metrics()
    peak = 0.0
    try:
        async with open_consumer(s, metrics) as consumer:
            stop = asyncio.Event()
            task = asyncio.create_task(consumer.run(stop))
            await asyncio.sleep(10)
            idle = rss_mib()
            print(f"idle on an empty stream: RSS {idle:.0f} MiB")
            took = await asyncio.to_thread(put, s, args.records)
            print(f"put {args.records:,} records in {took:.0f} s (the consumer read along)")
            started, mark = time.monotonic(), 0.1
            while (done := read(metrics)) < args.records:
                await asyncio.sleep(1.0)
                peak = max(peak, rss_mib())
                if done >= mark * args.records:
                    print(f"  {done / args.records:4.0%} read: RSS {rss_mib():.0f} MiB")
                    mark = (int(done / args.records * 10) + 1) / 10
            rate = args.records / (time.monotonic() - started + took)
            now = rss_mib()
            print(
                f"drained: {rate:,.0f} records/s from the first put; RSS {now:.0f} MiB, peak {peak:.0f} MiB"
            )
            print(f"RSS peak / idle: {peak / idle:.2f}")
            stop.set()
            await task
    finally:
        boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(
            StreamName=s.kinesis.stream_name
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    asyncio.run(main(p.parse_args()))
