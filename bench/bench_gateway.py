"""Load test of the gateway next to Gorse called directly, in the same run, with locust
(headless, loopback only, bounded in time and rate), on the real local stack (`gorse-cdc stack
up` first). Same request shape both ways: a user's row of 10 recommendations, users drawn
uniformly from the seeded ones, at a steady total rate. Prints, per target, the achieved rate,
p50 / p99 latency and the error rate, then the gateway's added latency (p50 and p99 deltas).

    python bench/bench_gateway.py [--rate 500] [--seconds 20] [--locust-users 50]
    (locust comes with the bench extra: .venv/bin/pip install -e '.[bench]')
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_gateway_freshness import seed
from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings
from tests.integration.gateway.conftest import Gateway, free_port

HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_locust(
    target: str, host: str, key: str, args: argparse.Namespace, out: Path, pid: int
) -> dict[str, float]:
    prefix = out / target
    env = {
        **os.environ,
        "TARGET": target,
        "BENCH_KEY": key,
        "USERS_PREFIX": "bu",
        "USERS": str(args.users),
        "RATE_PER_USER": str(args.rate / args.locust_users),
    }
    argv = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile_gateway.py"), "--headless",
        "-u", str(args.locust_users), "-r", str(args.locust_users), "-t", f"{args.seconds}s",
        "--host", host, "--csv", str(prefix), "--only-summary", "--loglevel", "ERROR",
    ]  # fmt: skip
    cpu = cpu_seconds(pid)
    subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL, timeout=args.seconds + 60)
    cpu = cpu_seconds(pid) - cpu
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "row")
    total = int(row["Request Count"])
    return {
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p99": float(row["99%"]),
        "errors": int(row["Failure Count"]) / total if total else 1.0,
        "requests": total,
        "cpu_us": cpu / total * 1e6 if total else 0.0,  # the server's CPU per request
    }


def cache_hit_rates(gw: Gateway, admin_key: str) -> dict[str, float]:
    """From the gateway's own /metrics: hits / lookups per cache."""
    import re
    import ssl
    import urllib.request

    req = urllib.request.Request(gw.url + "/metrics", headers={"X-API-Key": admin_key})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(gw.ca))) as r:
        text = r.read().decode()
    counts: dict[str, dict[str, float]] = {}
    for cache, result, value in re.findall(
        r'gorse_cdc_gateway_cache_total\{cache="(\w+)",result="(\w+)"\} ([0-9.e+]+)', text
    ):
        counts.setdefault(cache, {})[result] = float(value)
    return {c: v.get("hit", 0) / max(1.0, v.get("hit", 0) + v.get("miss", 0)) for c, v in counts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="total requests/s (default 500)")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--locust-users", type=int, default=50)
    ap.add_argument("--users", type=int, default=60, help="distinct app users read")
    args = ap.parse_args()
    settings = Settings()
    asyncio.run(seed(settings, 300, args.users))
    suffix = uuid.uuid4().hex[:6]
    stream = f"bench-events-{suffix}"
    ensure_stream(settings, stream, 1)
    env = {
        **os.environ,
        "GORSE_CDC_GATEWAY__KEYS_TABLE": f"bench-keys-{suffix}",
        "GORSE_CDC_GATEWAY__EVENTS_STREAM": stream,
    }
    out = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    gorse_pid = Stack(settings).procs.pid("gorse")
    if gorse_pid is None:
        raise SystemExit("the stack's Gorse is not running: gorse-cdc stack up")
    gw = Gateway(settings, env, free_port(), out / "gateway.log")
    gw.start()
    try:
        key = gw.create_key("bench", "reader", rate=100_000, burst=100_000)["key"]
        results = {
            "gorse direct": run_locust(
                "gorse", settings.gorse_url, settings.gorse.api_key.get_secret_value(), args, out, gorse_pid
            ),
            "gateway": run_locust("gateway", gw.url, key, args, out, gw.proc.pid),  # type: ignore[union-attr]
        }
        admin = gw.create_key("bench-admin", "admin")["key"]
        hits = cache_hit_rates(gw, admin)
    finally:
        gw.stop()
    print(
        f"a user's row of 10, {args.rate:g} requests/s offered for {args.seconds} s, "
        f"{args.locust_users} locust users"
    )
    print(
        f"{'target':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>8} {'requests':>9} "
        f"{'server CPU/req':>15}"
    )
    for name, r in results.items():
        print(
            f"{name:14} {r['rps']:8.0f} {r['p50']:8.0f} {r['p99']:8.0f} {r['errors']:8.2%} "
            f"{r['requests']:9.0f} {r['cpu_us']:12.0f} us"
        )
    print("gateway cache hit rates: " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(hits.items())))
    g, d = results["gateway"], results["gorse direct"]
    print(f"gateway adds: p50 {g['p50'] - d['p50']:+.0f} ms, p99 {g['p99'] - d['p99']:+.0f} ms")


if __name__ == "__main__":
    main()
