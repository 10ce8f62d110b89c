"""Load test of the gateway next to Gorse called directly, in the same run, with locust
(headless, loopback only, bounded in time and rate), on the real local stack (`gorse-cdc stack
up` first). Same request shape both ways: a user's row of 10 recommendations, users drawn
uniformly from the seeded ones, at a steady total rate. The gateway is measured once per
``--workers`` count (a fresh `gorse-cdc gateway serve` each), one after the other in the run.
Prints, per target, the achieved rate, p50 / p99 latency and the error rate, the CPU per
request of the server (the gateway: its arbiter and every worker; the busiest worker apart),
of locust and of the whole machine during the phase, then each gateway's added latency.

    python bench/bench_gateway.py [--rate 500] [--seconds 20] [--locust-users 50] [--workers 1,2]
    (locust comes with the bench extra: .venv/bin/pip install -e '.[bench]')
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live children (a gateway's arbiter and its workers)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return [pid, *sorted(kids)]


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run_locust(
    target: str, host: str, key: str, args: argparse.Namespace, out: Path, pid: int, gorse_pid: int
) -> dict[str, float]:
    if importlib.util.find_spec("locust") is None:
        sys.exit("locust is not installed: .venv/bin/pip install -e '.[bench]'")
    prefix = out / target
    env = {
        **os.environ,
        "TARGET": "gorse" if target == "gorse" else "gateway",
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
    pids = process_tree(pid)
    cpu = [cpu_seconds(p) for p in pids]
    gorse_cpu = cpu_seconds(gorse_pid)
    locust_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, jiffies = machine_busy()
    load = os.getloadavg()[0]
    subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL, timeout=args.seconds + 60)
    busy, jiffies = machine_busy()[0] - busy, machine_busy()[1] - jiffies
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_s = after.ru_utime + after.ru_stime - locust_cpu.ru_utime - locust_cpu.ru_stime
    used = [cpu_seconds(p) - c for p, c in zip(pids, cpu, strict=True)]
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "row")
    total = int(row["Request Count"])
    return {
        "rps": float(row["Requests/s"]),
        "p50": float(row["50%"]),
        "p99": float(row["99%"]),
        "errors": int(row["Failure Count"]) / total if total else 1.0,
        "requests": total,
        "cpu_us": sum(used) / total * 1e6 if total else 0.0,  # the server's CPU per request
        "busiest_cores": max(used) / args.seconds,  # its busiest process, in cores
        "locust_cores": locust_s / args.seconds,
        "gorse_cores": (cpu_seconds(gorse_pid) - gorse_cpu) / args.seconds,
        "machine_busy": busy / jiffies if jiffies else 0.0,
        "load": load,
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
    ap.add_argument(
        "--workers", default="1,2", help="gateway worker counts to measure, one after the other (default 1,2)"
    )
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
    results = {
        "gorse direct": run_locust(
            "gorse",
            settings.gorse_url,
            settings.gorse.api_key.get_secret_value(),
            args,
            out,
            gorse_pid,
            gorse_pid,
        )
    }
    hits: dict[str, dict[str, float]] = {}
    for n in [int(w) for w in args.workers.split(",")]:
        name = f"gateway x{n}"
        gw = Gateway(settings, {**env, "GORSE_CDC_GATEWAY__WORKERS": str(n)}, free_port(), out / f"gw{n}.log")
        gw.start()
        try:
            key = gw.create_key(f"bench-{n}", "reader", rate=100_000, burst=100_000)["key"]
            wait_for_workers(gw.proc.pid, n)  # type: ignore[union-attr]
            results[name] = run_locust(f"gateway{n}", gw.url, key, args, out, gw.proc.pid, gorse_pid)  # type: ignore[union-attr]
            hits[name] = cache_hit_rates(gw, gw.create_key(f"bench-admin-{n}", "admin")["key"])
        finally:
            gw.stop()
    print(
        f"a user's row of 10, {args.rate:g} requests/s offered for {args.seconds} s, "
        f"{args.locust_users} locust users; CPU in cores over the phase"
    )
    print(
        f"{'target':14} {'req/s':>7} {'served':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} {'requests':>8} "
        f"{'server CPU/req':>14} {'busiest proc':>12} {'gorse':>6} {'locust':>7} {'machine':>8} {'load':>5}"
    )
    for name, r in results.items():
        print(
            f"{name:14} {r['rps']:7.0f} {r['rps'] / args.rate:7.0%} {r['p50']:7.0f} {r['p99']:7.0f} "
            f"{r['errors']:7.2%} "
            f"{r['requests']:8.0f} {r['cpu_us']:11.0f} us {r['busiest_cores']:12.2f} "
            f"{r['gorse_cores']:6.2f} {r['locust_cores']:7.2f} {r['machine_busy']:8.0%} {r['load']:5.1f}"
        )
    d = results["gorse direct"]
    for name, h in hits.items():
        g = results[name]
        print(
            f"{name} adds: p50 {g['p50'] - d['p50']:+.0f} ms, p99 {g['p99'] - d['p99']:+.0f} ms; "
            "cache hit rates: " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(h.items()))
        )


def wait_for_workers(pid: int, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(process_tree(pid)) < n + 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway did not start {n} workers")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
