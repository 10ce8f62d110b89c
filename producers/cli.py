"""`gorse-cdc data ...` (load MovieLens, generate, simulate activity) and `gorse-cdc dms run`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from gorse_cdc.settings import Settings
from producers.activity_events import EVENTS

log = logging.getLogger("producers")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_data(sub)
    _register_dms(sub)


# ---- data ---------------------------------------------------------------------------------------
def _register_data(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "data",
        help="put data into the source database: MovieLens 100K, synthetic data, live activity",
        description=(
            "Fill and change the source database (settings.source: PostgreSQL, or MySQL/MariaDB "
            "with source.engine = mysql). Tables: users, movies, ratings (entrypoints/stack/"
            "schema.sql, schema_mysql.sql). Bulk loads use COPY (multi-row INSERTs on MySQL)."
        ),
    )
    ds = p.add_subparsers(dest="data_cmd", required=True)
    ml = ds.add_parser(
        "load-movielens",
        help="load the MovieLens 100K files (u.user, u.item, u.genre, u.data) from DIR",
        description=(
            "Load the real MovieLens 100K files: u.user (user id|age|gender|occupation|zip), "
            "u.item (latin-1; title, release date like 01-Jan-1995 or empty, 19 genre flags named "
            "by u.genre) and u.data (tab-separated user, item, rating, unix time). Example: "
            "gorse-cdc data load-movielens ~/ml-100k --truncate"
        ),
    )
    ml.add_argument("dir", type=Path, help="the folder holding u.user, u.item, u.genre, u.data")
    ml.add_argument("--truncate", action="store_true", help="empty the tables first")
    gen = ds.add_parser(
        "generate",
        help="generate a synthetic MovieLens-shaped data set of any size (deterministic by seed)",
        description=(
            "Stream users, movies and ratings into the database with COPY in bounded memory: "
            "Zipf movie popularity, heavy and light raters, genres, demographics, release dates, "
            "rating times, and hidden user/genre tastes a recommender can learn. Same seed, same "
            "data. Example: gorse-cdc data generate --users 1000000 --movies 50000 "
            "--ratings 100000000 --seed 7"
        ),
    )
    gen.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    gen.add_argument("--movies", type=int, default=500, help="number of movies (default 500)")
    gen.add_argument("--ratings", type=int, default=20_000, help="number of ratings (default 20000)")
    gen.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    gen.add_argument("--first-id", type=int, default=1, help="first user/movie id (default 1)")
    gen.add_argument("--truncate", action="store_true", help="empty the tables first")
    act = ds.add_parser(
        "activity",
        help="change the database like an OTT platform does, at a target rate",
        description=(
            "New ratings, re-ratings across the like threshold (>= 4 is a like), deleted ratings, "
            "new users and movies, edited titles and genres, GDPR erasure of a user (the FK "
            "cascade deletes their ratings). Prints a progress line and a summary. Stops after "
            "--duration seconds or --changes changes, whichever comes first; Ctrl-C stops too. "
            "Example: gorse-cdc data activity --rate 200 --duration 60"
        ),
    )
    act.add_argument("--rate", type=float, default=100.0, help="changes per second; 0 = as fast as possible")
    act.add_argument("--duration", type=float, default=None, help="seconds to run")
    act.add_argument("--changes", type=int, default=None, help="stop after this many changes")
    act.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    act.add_argument(
        "--mix",
        type=_mix,
        default=None,
        metavar="KIND=PCT,...",
        help=(
            "the kinds of change and their weights instead of the default mix, e.g. "
            "new_rating=70,rerate=30; kinds: " + ", ".join(EVENTS)
        ),
    )
    p.set_defaults(func=_run_data)


def _mix(text: str) -> dict[str, float]:
    """'new_rating=70,rerate=30' -> every kind's weight (the kinds not named: 0)."""
    out = dict.fromkeys(EVENTS, 0.0)
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in EVENTS:
            raise argparse.ArgumentTypeError(f"unknown kind {kind!r}; kinds: {', '.join(EVENTS)}")
        try:
            out[kind] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind}: weight {weight!r} is not a number") from None
        if out[kind] < 0:
            raise argparse.ArgumentTypeError(f"{kind}: weight must be >= 0")
    if not any(out.values()):
        raise argparse.ArgumentTypeError("give at least one kind a positive weight")
    return out


def _run_data(args: argparse.Namespace, settings: Settings) -> int:
    if args.data_cmd == "load-movielens":
        from producers.movielens import load_movielens

        counts = load_movielens(settings, args.dir, truncate=args.truncate)
        print("loaded " + ", ".join(f"{n} {t}" for t, n in counts.items()))
        return 0
    if args.data_cmd == "generate":
        from producers.synthetic import GeneratorConfig, generate

        cfg = GeneratorConfig(args.users, args.movies, args.ratings, args.seed, args.first_id)
        gs = generate(settings, cfg, truncate=args.truncate, progress=True)
        print(gs.describe())
        return 0
    from producers.activity import run_activity

    if args.duration is None and args.changes is None:
        print("give --duration S and/or --changes N")
        return 2
    stop = threading.Event()
    _on_sigterm(stop)
    summary = run_activity(
        settings,
        changes=args.changes,
        duration_s=args.duration,
        rate=args.rate,
        seed=args.seed,
        weights=args.mix,
        stop=stop,
        progress_s=5.0,
    )
    print(summary.describe())
    return 0


# ---- dms ----------------------------------------------------------------------------------------
def _register_dms(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dms",
        help="the local AWS DMS: PostgreSQL logical replication or the MySQL binlog -> Kinesis and S3",
        description=(
            "A local stand-in for an AWS DMS task, writing byte-compatible DMS output to the "
            "Kinesis stream (settings.kinesis) and the S3 bucket (settings.s3)."
        ),
    )
    ds = p.add_subparsers(dest="dms_cmd", required=True)
    run = ds.add_parser(
        "run",
        help="run the replication task (full load + CDC, or CDC only)",
        description=(
            "Replicate settings.source through the logical slot settings.source.slot_name "
            "(wal2json). full-load-and-cdc: create the slot with an exported snapshot, emit every "
            "row as a 'load' record and LOAD files, then stream changes from exactly that point. "
            "cdc: stream from the slot only. The default, auto, resumes CDC when the slot exists "
            "and its full load finished, else does full-load-and-cdc. A MySQL source "
            "(source.engine = mysql): a consistent snapshot at a recorded binlog position, then the "
            "binlog from there; the position is saved in the task state (docs/mysql.md). "
            "At least once: the slot is "
            "acknowledged only after Kinesis and S3 accepted the records, so a crash and restart "
            "loses nothing. SIGTERM flushes, acknowledges and exits. Example: "
            "GORSE_CDC_S3__CDC_MAX_BATCH_INTERVAL_S=5 gorse-cdc dms run --metrics-port 9109"
        ),
    )
    run.add_argument("--mode", choices=["auto", "cdc", "full-load-and-cdc"], default="auto")
    run.add_argument("--until-idle", action="store_true", help="exit once caught up and idle (tests)")
    run.add_argument("--idle-seconds", type=float, default=2.0, help="idle time for --until-idle")
    run.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics here")
    run.add_argument("--progress-seconds", type=float, default=10.0, help="progress line interval")
    p.set_defaults(func=_run_dms)


def _on_sigterm(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        log.info("signal %d: finishing", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run_dms(args: argparse.Namespace, settings: Settings) -> int:
    from producers.dms import run_dms

    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=settings.stack.host if settings.local else "0.0.0.0")  # noqa: S104
    stop = threading.Event()
    _on_sigterm(stop)
    s = run_dms(
        settings,
        mode=args.mode,
        until_idle=args.until_idle,
        idle_s=args.idle_seconds,
        stop=stop,
        progress_s=args.progress_seconds,
    )
    print(
        f"dms {s.mode}: {s.loaded_tables} tables loaded, {s.changes} changes in {s.transactions} "
        f"transactions, {s.kinesis_records} Kinesis records, {s.s3_cdc_files} S3 CDC files, "
        f"acknowledged up to {s.acked_lsn}"
    )
    return 0
