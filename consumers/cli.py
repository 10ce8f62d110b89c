"""`gorse-cdc consume` and `gorse-cdc verify`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

import orjson

from gorse_cdc.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "consume",
        help="run the Kinesis -> Gorse consumer (near-real-time, lossless)",
        description=(
            "Read the DMS change records of the Kinesis stream, map them with the shared mapping "
            "and apply them to Gorse idempotently, checkpointing in a DynamoDB lease table (KCL "
            "schema; created if absent). Start as many workers as you like, on any hosts: they "
            "share the shards through the lease table. Records that can never apply go to the "
            "dead-letter store (settings.dead_letters: S3 prefix or SQS queue). SIGTERM stops "
            "reading, flushes, checkpoints and releases the leases. Metrics, /healthz and /readyz "
            "on settings.consumer.metrics_port."
        ),
        epilog="Example: GORSE_CDC_CONSUMER__GORSE_CONCURRENCY=16 gorse-cdc --json-logs consume",
    )
    c.add_argument(
        "--engine",
        choices=["native", "kcl"],
        help="native: the asyncio consumer (default settings.consumer.engine); kcl: the real KCL "
        "MultiLangDaemon (amazon-kclpy, Java 17) running the same record path on the same lease table",
    )
    c.add_argument("--stream", help="Kinesis stream name (default settings.kinesis.stream_name)")
    c.add_argument("--lease-table", help="DynamoDB lease table (default settings.leases.table)")
    c.add_argument("--worker-id", help="this worker's lease owner name (default host:pid:random)")
    c.add_argument("--metrics-port", type=int, help="0 disables the HTTP endpoint")
    c.add_argument(
        "--enhanced-fan-out",
        action="store_true",
        help="SubscribeToShard instead of GetRecords (real Kinesis only; untested on the emulators)",
    )
    c.set_defaults(func=run_consume)

    v = sub.add_parser(
        "verify",
        help="compare Gorse with the source database through the shared mapping",
        description=(
            "Read every mapped table of the source database (settings.source_dsn) in one snapshot, "
            "compute what Gorse should hold with the shared mapping (liked labels included), read "
            "Gorse (bulk export) and print the differences. Exit 0 when equal, 1 when they differ. "
            "Run it once the stream has drained."
        ),
    )
    v.add_argument("--json", action="store_true", help="print the differences as JSON")
    v.add_argument("--sample", type=int, default=10, help="keys shown per kind of difference")
    v.set_defaults(func=run_verify)


def consume_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The command line's flags folded into the one Settings object (flags win)."""
    kinesis, leases, consumer = {}, {}, {}
    if args.stream:
        kinesis["stream_name"] = args.stream
    if args.lease_table:
        leases["table"] = args.lease_table
    if args.worker_id:
        consumer["worker_id"] = args.worker_id
    if args.metrics_port is not None:
        consumer["metrics_port"] = args.metrics_port
    if args.enhanced_fan_out:
        consumer["enhanced_fan_out"] = True
    if args.engine:
        consumer["engine"] = args.engine
    return settings.model_copy(
        update={
            "kinesis": settings.kinesis.model_copy(update=kinesis),
            "leases": settings.leases.model_copy(update=leases),
            "consumer": settings.consumer.model_copy(update=consumer),
        }
    )


def run_consume(args: argparse.Namespace, settings: Settings) -> int:
    settings = consume_settings(args, settings)
    if settings.consumer.engine == "kcl":
        from consumers.kcl.daemon import run_daemon
        from consumers.service import default_worker_id

        flags = f"--log-level {args.log_level}" + (" --json-logs" if args.json_logs else "")
        return run_daemon(settings, settings.consumer.worker_id or default_worker_id(), flags)
    from consumers.wiring import open_consumer

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_consumer(settings) as consumer:
            # the start-up's objects (modules, clients, settings, the mapping) live as long as
            # the process: out of every collection from now on. The collector took a third of
            # the native read path's CPU draining a backlog; this halved it (bench_engines)
            gc.freeze()
            return await consumer.run(stop)

    return asyncio.run(main())


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.verify import render, verify

    drift = asyncio.run(verify(settings))
    if args.json:
        sys.stdout.write(orjson.dumps(drift.summary(args.sample), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(drift, args.sample))
    return 0 if drift.total == 0 else 1
