"""`gorse-cdc stack up | down | status | logs`."""

from __future__ import annotations

import argparse
import time

from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_all
from gorse_cdc.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stack",
        help="run the local stack (PostgreSQL+wal2json, Gorse, Kinesis emulator, moto) on loopback",
        description=(
            "Install (once) and start the local stack on loopback. Idempotent: `up` twice is "
            "harmless. Data and logs live under settings.stack.dir (.stack/ by default); `down` "
            "stops exactly the processes recorded in its pid files. Ports and choices come from "
            "the settings (GORSE_CDC_STACK__*), e.g. GORSE_CDC_STACK__KINESIS_EMULATOR=kinesis-local."
        ),
    )
    ss = p.add_subparsers(dest="stack_cmd", required=True)
    up = ss.add_parser("up", help="install what is missing, start every part, wait until healthy")
    up.add_argument(
        "--source",
        choices=["postgres", "mysql"],
        default=None,
        help="the source database engine (default: settings.source.engine, GORSE_CDC_SOURCE__ENGINE); "
        "mysql also starts a MariaDB with the binlog set up for DMS",
    )
    down = ss.add_parser("down", help="stop the stack's processes")
    down.add_argument("--purge", action="store_true", help="also delete the stack's data directory")
    ss.add_parser("status", help="which parts run, with their pids and endpoints")
    logs = ss.add_parser("logs", help="print the last lines of a part's log")
    logs.add_argument(
        "part", help="postgres, moto, kinesis, gorse (single) or gorse-master, gorse-server-N, gorse-worker"
    )
    logs.add_argument("-n", type=int, default=50, help="number of lines (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "source", None):
        settings = settings.model_copy(
            update={"source": settings.source.model_copy(update={"engine": args.source})}
        )
    stack = Stack(settings)
    if args.stack_cmd == "up":
        started = time.monotonic()
        parts = stack.up()
        resources = ensure_all(settings)
        for part in parts:
            print(f"  {part.name:<28} {part.endpoint}")
        for what, name in resources.items():
            print(f"  {what:<28} {name}")
        print(f"stack up in {time.monotonic() - started:.1f} s (data and logs: {stack.root})")
        g = settings.gorse
        if settings.stack.gorse_store_kind == "postgres" and not (g.write_partitions or g.feedback_writers):
            print(
                "note: Gorse 0.5.11 deadlocks concurrent feedback batches on PostgreSQL (40P01): "
                "keep gorse.write_partitions set (gorse_cdc/gorse/write_locks.py)"
            )
        return 0
    if args.stack_cmd == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        if args.purge:
            import shutil

            stack.postgres.purge()  # its cluster may live outside the stack dir
            shutil.rmtree(stack.root, ignore_errors=True)
            print(f"removed {stack.root}")
        return 0
    if args.stack_cmd == "status":
        found = stack.status()
        print(f"  Gorse topology: {settings.stack.gorse_topology} ({settings.stack.gorse_store_kind} stores)")
        for name, pid in found.items():
            print(f"  {name:<15} {'running, pid ' + str(pid) if pid else 'stopped'}")
        return 0 if all(found[name] is not None for name in stack.part_names) else 3
    log = stack.procs.log_file(args.part)
    if not log.exists():
        print(f"no log yet for {args.part} ({log})")
        return 1
    print("\n".join(log.read_text(errors="replace").splitlines()[-args.n :]))
    return 0
