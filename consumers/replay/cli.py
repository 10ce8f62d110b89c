"""`gorse-cdc replay kinesis | s3 | dead-letters`."""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import UTC, datetime

from consumers.kinesis.reader import StartPosition
from consumers.replay.checkpoints import ReplayCheckpoints
from consumers.replay.plan import RecordFilter, ReplaySummary, StopPoint
from consumers.replay.runner import Replay
from consumers.wiring import open_clients
from gorse_cdc.settings import Settings

REDRIVE = """A re-drive never applies a letter that would set its key back. Before writing, it removes
from the store (counted in the summary, "superseded"): letters of users in the erasure log (users,
ratings, events), letters older than another letter of the same key (only the newest of a key
is applied), and letters whose key has a change committed after the letter's in the CDC archive
(S3; for the newest minutes, the Kinesis stream). Letters without a commit time (those of an
archive replay) stay in the store: replay the archive for them. The re-drive is refused when the
archive or the stream cannot be read, or when the archive's rows carry no commit time
(settings.s3.timestamp_column), unless --unordered."""

EPILOG = (
    """examples:
  gorse-cdc replay kinesis                                   # every shard, TRIM_HORIZON -> tip
  gorse-cdc replay kinesis --from-timestamp 2026-11-24T00:00:00Z --tables ratings --dry-run
  gorse-cdc replay kinesis --shards shardId-000000000001 --after-sequence 4959... --rate 500
  gorse-cdc replay s3 --since 2026-11-01T00:00:00Z --until 2026-11-02T00:00:00Z
  gorse-cdc replay dead-letters                              # re-drive after a fix

Beside a live consumer, a Kinesis replay borrows each shard's lease (the consumer hands it
over after its current batch), reads only up to the consumer's checkpoint, writes each key's
final state once, and hands the lease back at that checkpoint: it never sets a key back, and
the shard's live processing pauses meanwhile. A replay keeps its own job positions (table
settings.replay.table, namespace --job): a shard written is not replayed again; kill it and run
the same command again to go on; --restart forgets the job's positions.
An archive replay (s3) or a re-drive (dead-letters) applies old records batch by batch and is
refused while a live consumer runs, unless --beside-live (then run the reconcile after it).

"""
    + REDRIVE
)


def _time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _seq(text: str) -> str:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a Kinesis sequence number is decimal digits, got {text!r}")
    return text


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="reprocess Kinesis shards, the S3 archive or the dead-letter store",
        description="Push history through the consumer's decode -> map -> write path again.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--job", help="checkpoint namespace (default settings.replay.job = 'replay')")
    common.add_argument("--restart", action="store_true", help="forget this job's positions first")
    common.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")
    common.add_argument(
        "--rate", type=float, help="max records/s (default settings.replay.max_records_per_s)"
    )
    common.add_argument("--tables", nargs="+", default=[], help="only these tables (e.g. ratings users)")
    common.add_argument(
        "--operations",
        nargs="+",
        default=[],
        choices=["load", "insert", "update", "delete"],
        help="only these",
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    common.add_argument(
        "--beside-live",
        action="store_true",
        help="s3 / dead-letters: run although a live consumer is running (may set keys back)",
    )
    ss = p.add_subparsers(dest="replay_source", required=True)

    k = ss.add_parser("kinesis", parents=[common], help="from the stream (within its retention)")
    start = k.add_mutually_exclusive_group()
    start.add_argument("--from-timestamp", type=_time, help="AT_TIMESTAMP (default TRIM_HORIZON)")
    start.add_argument("--at-sequence", type=_seq, help="AT_SEQUENCE_NUMBER (with one --shards)")
    start.add_argument("--after-sequence", type=_seq, help="AFTER_SEQUENCE_NUMBER (with one --shards)")
    stop = k.add_mutually_exclusive_group()
    stop.add_argument("--until-timestamp", type=_time, help="stop at records that arrived after this")
    stop.add_argument("--until-sequence", type=_seq, help="stop after this sequence number")
    k.add_argument("--shards", nargs="+", help="only these shards (default all; children after parents)")
    k.add_argument("--stream", help="stream name (default settings.kinesis.stream_name)")

    s3 = ss.add_parser("s3", parents=[common], help="from the DMS S3 archive (after Kinesis retention)")
    s3.add_argument("--since", type=_time, help="CDC files named at or after this time")
    s3.add_argument("--until", type=_time, help="CDC files named at or before this time")
    s3.add_argument("--include-load", action="store_true", help="replay the LOAD files first")

    d = ss.add_parser(
        "dead-letters",
        parents=[common],
        help="re-drive the dead-letter store",
        description=REDRIVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--limit", type=int, default=100_000, help="at most this many letters")
    d.add_argument(
        "--unordered",
        action="store_true",
        help="skip the check for later changes in the archive and on the stream (letters of "
        "erased users and older letters of a key are still removed): may set keys back; run the "
        "reconcile after",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    by_sequence = args.replay_source == "kinesis" and (args.at_sequence or args.after_sequence)
    if by_sequence and (not args.shards or len(args.shards) != 1):
        print("gorse-cdc replay: a sequence number start needs exactly one --shards")
        return 2
    replay = Replay(
        settings,
        job=args.job,
        dry_run=args.dry_run,
        rate=args.rate,
        record_filter=RecordFilter(frozenset(args.tables), frozenset(args.operations)),
        progress=not args.no_progress,
        beside_live=args.beside_live,
    )
    summary = asyncio.run(_main(args, settings, replay))
    print(("[dry-run] " if args.dry_run else "") + f"replay {replay.job}: {summary.line()}")
    return 1 if summary.dead_lettered else 0


async def _main(args: argparse.Namespace, settings: Settings, replay: Replay) -> ReplaySummary:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, replay.stop)
    if args.restart:
        import contextlib

        async with contextlib.AsyncExitStack() as stack:
            clients = await open_clients(stack, settings, replay.metrics)
            cps = ReplayCheckpoints(clients.dynamodb, settings.replay.table, replay.job)
            await cps.open()
            print(f"forgot {await cps.reset()} positions of job {replay.job}")
    if args.replay_source == "kinesis":
        if args.from_timestamp:
            start = StartPosition("AT_TIMESTAMP", timestamp=args.from_timestamp)
        elif args.at_sequence:
            start = StartPosition("AT_SEQUENCE_NUMBER", args.at_sequence)
        elif args.after_sequence:
            start = StartPosition("AFTER_SEQUENCE_NUMBER", args.after_sequence)
        else:
            start = StartPosition("TRIM_HORIZON")
        stop = StopPoint(args.until_timestamp, args.until_sequence)
        shards = set(args.shards) if args.shards else None
        return await replay.kinesis(start, stop, shards, args.stream)
    if args.replay_source == "s3":
        return await replay.archive(args.since, args.until, include_load=args.include_load)
    return await replay.dead_letters(args.limit, unordered=args.unordered)
