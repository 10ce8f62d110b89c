"""Feedback write rate into Gorse on a SQL store: the old one-writer bound against concurrent
writers with the client's write locks (gorse_cdc.gorse.write_locks), and without either.

Usage: .venv/bin/python bench/bench_concurrent_writes.py [--store postgres|mariadb] [--seconds 20]
       [--writers 16] [--partitions 4] [--batch 500]
       [--repeat 3] [--no-unguarded] [--users-per-writer 200] [--hot-items 40]
Starts a gorse-in-one of its own on a fresh database (the stack's PostgreSQL, or the project's
MariaDB), never the stack's Gorse. The load is the deadlock test's (entrypoints.stack.sql_gorse):
writers with their own users rate 40 shared hot items and items another writer creates at the
same moment. Prints rows/s and the deadlock answers of each mode (all on the same Gorse).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from entrypoints.stack.sql_gorse import concurrent_load, gorse_on, mariadb_database, postgres_database
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings


async def run(
    url: str, key: str, args: argparse.Namespace, bound: int | None, partitions: int | None
) -> tuple[float, int, int]:
    client = GorseClient(
        url,
        key,
        max_connections=32,
        batch_size=args.batch,
        feedback_writers=bound,
        write_partitions=partitions,
    )
    async with client:
        load = await concurrent_load(
            client,
            writers=args.writers,
            seconds=args.seconds,
            batch=args.batch,
            users_per_writer=args.users_per_writer,
            hot_items=args.hot_items,
        )
    deadlocks = load.deadlocks + (client.write_locks.deadlocks if client.write_locks else 0)
    return load.rows_per_s, load.rows, deadlocks


async def measure(url: str, key: str, args: argparse.Namespace) -> None:
    """The two modes alternate ``--repeat`` times (a shared machine's load drifts); medians last.
    The unguarded mode runs once (its deadlocks make it slow)."""
    modes = {
        "one writer (old bound)": (1, None),
        f"{args.writers} writers, write locks ({args.partitions} partitions)": (None, args.partitions),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    print(f"{'mode':<46} {'rows/s':>9} {'rows':>9} {'deadlocks':>10}")
    for _ in range(args.repeat):
        for name, (bound, partitions) in modes.items():
            rate, rows, deadlocks = await run(url, key, args, bound, partitions)
            rates[name].append(rate)
            print(f"{name:<46} {rate:>9,.0f} {rows:>9} {deadlocks:>10}", flush=True)
    if args.unguarded:
        rate, rows, deadlocks = await run(url, key, args, None, None)
        print(f"{f'{args.writers} writers, no locks, no bound':<46} {rate:>9,.0f} {rows:>9} {deadlocks:>10}")
    for name, values in rates.items():
        print(f"median {name:<39} {statistics.median(values):>9,.0f} rows/s over {len(values)} runs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["postgres", "mariadb"], default="postgres")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--partitions", type=int, default=Settings().gorse.write_partitions or 4)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--users-per-writer", type=int, default=200, help="each batch rates all of them")
    ap.add_argument("--hot-items", type=int, default=40, help="the shared items batches rate")
    ap.add_argument("--unguarded", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    settings = Settings()
    database = postgres_database if args.store == "postgres" else mariadb_database
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(settings) as dsn,
        gorse_on(settings, dsn, Path(tmp)) as g,
    ):
        print(f"Gorse v0.5.11 gorse-in-one on {args.store} ({g.url}); {args.seconds:.0f} s per mode")
        asyncio.run(measure(g.url, settings.gorse.api_key.get_secret_value(), args))


if __name__ == "__main__":
    main()
