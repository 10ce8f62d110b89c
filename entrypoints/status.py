"""`gorse-cdc status`: the operator's view in the terminal (rich), as JSON, or refreshed.

Exit code: 0 healthy (warnings allowed), 1 something needs a person (a finding of severity
"page"), 2 the command itself failed. The readings come from gorse_cdc.status.readers; the
verdict from gorse_cdc.status.model.assess (pure)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import orjson

from gorse_cdc.settings import Settings
from gorse_cdc.status.model import Readings, Severity, Thresholds, Verdict, assess, to_json
from gorse_cdc.status.readers import StatusReader, StatusSources

STYLE = {Severity.PAGE: "bold red", Severity.WARN: "yellow", Severity.OK: "green"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="is the pipeline healthy? shards, lag, dead letters, drift, gateway, Gorse (1: needs a person)",
        description=(
            "Reads the lease tables, Kinesis (one record per shard from its checkpoint), the "
            "consumers' /metrics and /readyz (the ports from consumer.metrics_port, or --metrics), "
            "pg_replication_slots, the dead-letter store, the newest reconcile report, the "
            "gateway's /metrics (with an admin key) and Gorse's API. Writes nothing. Exit 0 "
            "healthy, 1 something needs a person (docs/operations.md says what to do), 2 failed."
        ),
    )
    p.add_argument("--json", action="store_true", help="one JSON document (readings + verdict)")
    p.add_argument("--watch", type=float, nargs="?", const=5.0, metavar="S", help="refresh every S s (5)")
    p.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a consumer's metrics endpoint (repeatable); default: the known ports on this host",
    )
    p.add_argument(
        "--gateway", metavar="URL", help="the gateway (default: the local stack's, when a key is given)"
    )
    p.add_argument(
        "--gateway-key",
        default=os.environ.get("GORSE_CDC_STATUS_GATEWAY_KEY"),
        help="an admin key for the gateway's /metrics (or GORSE_CDC_STATUS_GATEWAY_KEY)",
    )
    p.add_argument(
        "--serve-metrics",
        type=int,
        metavar="PORT",
        help="serve the readings as Prometheus gauges on PORT (loopback), read every --every s",
    )
    p.add_argument("--every", type=float, default=15.0, help="seconds between reads with --serve-metrics")
    p.add_argument("--gateway-key-file", type=Path, help="read the admin key from this file (0600)")
    p.add_argument("--behind-s", type=float, default=60.0, help="a shard further behind needs a person (60)")
    p.add_argument("--drift", type=int, default=100, help="reconcile drift above this needs a person (100)")
    p.set_defaults(func=run)


def sources_from(args: argparse.Namespace, settings: Settings) -> StatusSources:
    gateway_url = args.gateway
    ca = None
    if args.gateway_key_file is not None and args.gateway_key_file.exists():
        args.gateway_key = args.gateway_key_file.read_text().strip()
    if args.gateway_key and not gateway_url:
        scheme = "https" if settings.gateway.tls else "http"
        gateway_url = f"{scheme}://{settings.gateway.host}:{settings.gateway_port}"
    if settings.local:
        local_ca = settings.stack.dir / "tls" / "ca.pem"
        ca = str(local_ca) if local_ca.exists() else None
    return StatusSources(
        metrics_urls=list(args.metrics),
        gateway_url=gateway_url,
        gateway_key=args.gateway_key,
        gateway_ca=ca,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    thresholds = Thresholds(behind_ms=args.behind_s * 1000, drift_keys=args.drift)
    return asyncio.run(_run(args, settings, thresholds))


async def _run(args: argparse.Namespace, settings: Settings, thresholds: Thresholds) -> int:
    if args.serve_metrics:
        return await _serve(args, settings, thresholds)
    async with StatusReader(settings, sources_from(args, settings)) as reader:
        while True:
            readings = await reader.read()
            verdict = assess(readings, thresholds)
            if args.json:
                sys.stdout.write(orjson.dumps(to_json(readings, verdict)).decode() + "\n")
                sys.stdout.flush()
            else:
                render(readings, verdict, clear=bool(args.watch))
            if not args.watch:
                return verdict.exit_code
            await asyncio.sleep(args.watch)


async def _serve(args: argparse.Namespace, settings: Settings, thresholds: Thresholds) -> int:
    """The exporter: gorse_cdc.status.export's gauges on /metrics and the status page's
    document (readings, verdict, the hour's points) on /status.json, read every args.every s."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from gorse_cdc.status.board import StatusBoard
    from gorse_cdc.status.export import StatusGauges

    gauges = StatusGauges()
    async with StatusReader(settings, sources_from(args, settings)) as reader:
        board = StatusBoard(
            reader.read, thresholds, min_interval_s=2.0, sample_s=args.every, on_read=gauges.update
        )

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(gauges.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def document(_: web.Request) -> web.Response:
            return web.Response(body=orjson.dumps(await board.snapshot()), content_type="application/json")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/status.json", document)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host = settings.stack.host if settings.local else "0.0.0.0"  # noqa: S104
        await web.TCPSite(runner, host, args.serve_metrics).start()
        try:
            await board.snapshot()  # the first reading, and the sampler from now on
            await asyncio.Event().wait()
        finally:
            await board.close()
            await runner.cleanup()
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(r: Readings, v: Verdict, *, clear: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if clear:
        console.clear()
    head = {Severity.PAGE: "NEEDS A PERSON", Severity.WARN: "healthy, with warnings", Severity.OK: "healthy"}
    console.print(f"[{STYLE[v.severity]}]{head[v.severity]}[/]  ({r.at:%Y-%m-%d %H:%M:%S} UTC)")

    shards = Table(title="shards", title_justify="left")
    for col in ("stream", "shard", "owner", "engine", "checkpoint age", "behind", "rec/s", "state"):
        shards.add_column(col)
    for s in r.streams:
        if s.unreadable:
            shards.add_row(s.stream, "-", "-", "-", "-", "-", "-", f"[red]unreadable: {s.unreadable}[/]")
        for row in s.shards:
            if row.ended:
                state = "[dim]ended[/]"
            elif row.blocked:
                state = f"[bold red]BLOCKED ({row.blocked})[/]"
            elif row.stalled:
                state = "[bold red]STALLED[/]"
            elif row.owner is None:
                state = "[yellow]no owner[/]"
            else:
                state = "[green]ok[/]" + (f" (moving to {row.handoff_to})" if row.handoff_to else "")
            behind = None if row.behind_ms is None else row.behind_ms / 1000
            shards.add_row(
                s.stream,
                row.shard,
                row.owner or "-",
                row.engine or "-",
                _age(row.checkpoint_age_s),
                _age(behind),
                _num(row.records_per_s),
                state,
            )
    console.print(shards)

    facts = Table(title="source, stores, gateway, Gorse", title_justify="left", show_header=False)
    facts.add_column("what")
    facts.add_column("reading")
    for what, reading in _facts(r):
        facts.add_row(what, reading)
    console.print(facts)

    if v.findings:
        found = Table(title="needs attention (docs/operations.md)", title_justify="left")
        for col in ("", "alert", "where", "why", "do"):
            found.add_column(col)
        for f in v.findings:
            found.add_row(f"[{STYLE[f.severity]}]{f.severity.value}[/]", f.what, f.where, f.why, f.do)
        console.print(found)


def _facts(r: Readings) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if r.source is not None:
        if r.source.unreadable:
            out.append(("replication slot", f"unreadable: {r.source.unreadable}"))
        for slot in r.source.slots:
            lag_s = f", {slot.lag_s:.1f} s" if slot.lag_s is not None else ""
            out.append(
                (
                    f"slot {slot.name}",
                    f"{'active' if slot.active else 'INACTIVE'}; lag {slot.lag_bytes:,} bytes{lag_s}; "
                    f"holds {slot.retained_bytes / 2**20:.1f} MiB of WAL",
                )
            )
    d = r.dead_letters
    if d is not None:
        text = d.unreadable or (
            f"{d.count} letters"
            + (f", oldest {_age(d.oldest_age_s)}, newest {_age(d.newest_age_s)}" if d.count else "")
            + ("; by reason (newest " + str(d.sampled) + "): " if d.by_reason else "")
            + ", ".join(f"{k} {n}" for k, n in d.by_reason.items())
        )
        out.append((f"dead letters {d.store}", text))
    rec = r.reconcile
    if rec is not None:
        if rec.unreadable:
            out.append(("last reconcile", f"unreadable: {rec.unreadable}"))
        elif rec.key is None:
            out.append(("last reconcile", "no report yet"))
        else:
            mode = "dry run" if rec.dry_run else "repair"
            out.append(
                (
                    "last reconcile",
                    f"{rec.drift_total} drifted keys ({mode}, exit {rec.exit_code}), "
                    f"{_age((rec.age_h or 0) * 3600)} ago; {rec.key}",
                )
            )
    g = r.gateway
    if g is not None:
        if not g.reachable:
            out.append(("gateway", f"unreachable: {g.unreadable}"))
        else:
            out.append(
                (
                    f"gateway {g.url}",
                    f"{_num(g.requests_per_s)} req/s, {_num(g.errors_per_s, '{:.2f}')} 5xx/s, "
                    f"{_num(g.rate_limited_per_s, '{:.2f}')} 429/s "
                    f"(since start: {g.requests:.0f} req, {g.errors_5xx:.0f} 5xx, {g.rate_limited:.0f} 429)",
                )
            )
    gorse = r.gorse
    if gorse is not None:
        if not gorse.reachable:
            out.append((f"Gorse {gorse.url}", f"UNREACHABLE: {gorse.unreadable}"))
        else:
            out.append(
                (
                    f"Gorse {gorse.url}",
                    f"{'ready' if gorse.ready else 'NOT READY'}; {gorse.users} users, {gorse.items} items, "
                    f"{gorse.positive_feedback} positive feedback; "
                    f"model fitted: {gorse.model_fit_at or 'never'}",
                )
            )
    for c in r.consumers:
        state = c.unreadable or (
            "blocked: " + c.blocked if c.blocked else "ready" if c.ready else "not ready"
        )
        who = f"{c.worker} ({c.engine}, {c.stream})" if c.worker else c.engine
        out.append((f"consumer {c.url}", f"{who}: {state}"))
    return out
