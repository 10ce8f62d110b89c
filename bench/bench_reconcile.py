"""Reconcile time on this machine for 100k and 1M ratings, split by phase (read S3, compute,
export Gorse, diff, repair). Needs the local stack (gorse-cdc stack up).

The DMS input is generated here in the DMS S3 format (gzip CSV LOAD files of <= 200k rows,
plus one CDC file with updates and deletes) into the stack's S3 (moto), streamed in chunks so
memory stays flat. Two runs per size:
  cold   -- Gorse holds none of it: the repair writes every user, item and rating;
  steady -- Gorse already equal: the nightly case (read, compute, export, diff; no writes).
The reconcile owns the Gorse it points at: run this on a stack of your own.

    python bench/bench_reconcile.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glue.job import ReconcileOptions, run_reconcile
from glue.spark import local_session
from gorse_cdc.settings import Settings
from tests.unit.glue.dmsdata import DmsWriter, s3_put

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "War", "Animation", "Crime"]
CHUNK = 200_000


def generate(settings: Settings, prefix: str, n_ratings: int, seed: int = 1) -> dict[str, int]:
    rng = random.Random(seed)
    s3 = boto3.client("s3", **settings.aws_client_kwargs("s3"))
    w = DmsWriter(s3_put(s3, settings.s3.bucket), prefix=prefix, gzip_=True)
    w.definitions()
    n_users, n_movies = max(100, n_ratings // 20), max(100, n_ratings // 100)
    w.load(
        "users",
        [
            [u, rng.randint(18, 70), rng.choice("MF"), f"job{u % 21}", f"{rng.randint(0, 99999):05d}"]
            for u in range(1, n_users + 1)
        ],
    )
    w.load(
        "movies",
        [
            [
                m,
                f"Movie {m}",
                f"{rng.randint(1950, 2020)}-01-01",
                "|".join(rng.sample(GENRES, rng.randint(1, 3))),
            ]
            for m in range(1, n_movies + 1)
        ],
    )
    seen: set[tuple[int, int]] = set()
    base = datetime(2020, 1, 1)
    batch: list[list[object]] = []
    while len(seen) < n_ratings:
        u, m = rng.randint(1, n_users), rng.randint(1, n_movies)
        if (u, m) in seen:
            continue
        seen.add((u, m))
        batch.append([u, m, rng.randint(1, 5), base + timedelta(seconds=len(seen))])
        if len(batch) >= CHUNK:
            w.load("ratings", batch)
            batch = []
    if batch:
        w.load("ratings", batch)
    sample = rng.sample(sorted(seen), min(len(seen), n_ratings // 100))
    changes = [("U", [u, m, rng.randint(1, 5), base + timedelta(days=400)]) for u, m in sample[::2]]
    changes += [("D", [u, m, None, None]) for u, m in sample[1::2]]
    w.cdc("ratings", changes, datetime.now(UTC))
    return {"users": n_users, "movies": n_movies, "ratings": n_ratings, "cdc_changes": len(changes)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--skip-cold", action="store_true", help="only the steady run (Gorse must already match)")
    args = ap.parse_args()
    # the bench owns its Gorse: the cold run may delete most of what an earlier size left
    base = Settings(reconcile={"force_deletes": True})
    spark = local_session(args.master, shuffle_partitions=4, driver_memory="3g")
    spark.sparkContext.setLogLevel("ERROR")
    phases = ["read_s3", "compute", "export_gorse", "diff", "repair"]
    print(
        f"{'ratings':>9} {'run':>6} " + " ".join(f"{p:>12}" for p in phases) + f" {'total':>8} {'drift':>9}"
    )
    for n in args.sizes:
        prefix = f"bench-{n}-{int(time.time())}"
        settings = base.model_copy(update={"s3": base.s3.model_copy(update={"prefix": prefix})})
        t0 = time.perf_counter()
        sizes = generate(settings, prefix, n)
        print(f"# generated {sizes} in {time.perf_counter() - t0:.1f} s", flush=True)
        for run in ["cold", "steady"] if not args.skip_cold else ["steady"]:
            out = run_reconcile(
                spark, settings, ReconcileOptions(progress=False, report_dir=Path("/tmp/bench-reports"))
            )
            t = out.phases_s
            print(
                f"{n:>9} {run:>6} " + " ".join(f"{t[p]:>11.1f}s" for p in phases)
                + f" {sum(t.values()):>7.1f}s {out.report['drift']['total']:>9}", flush=True,
            )  # fmt: skip
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
