"""The status page's points and hour of history, the board's shared reads, and the exporter's
gauges: pure, with readings made by hand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from gorse_cdc.status.board import History, Point, StatusBoard, point
from gorse_cdc.status.export import StatusGauges
from gorse_cdc.status.model import (
    DeadLetterReading,
    GatewayReading,
    GorseReading,
    Readings,
    ReconcileReading,
    ShardRow,
    SlotReading,
    SourceReading,
    StreamReading,
    assess,
)

AT = datetime(2026, 12, 4, 12, tzinfo=UTC)


def readings(at: datetime = AT) -> Readings:
    rows = [
        ShardRow("s", "shard-0", "w1", "native", "1", behind_ms=4000.0, records_per_s=10.0, blocked="auth"),
        ShardRow("s", "shard-1", "w1", "native", "2", behind_ms=500.0, records_per_s=5.0),
        ShardRow("s", "shard-p", None, "", "SHARD_END", ended=True, behind_ms=9e9),
    ]
    return Readings(
        at=at,
        streams=[StreamReading("s", "t", rows, 2)],
        consumers=[],
        source=SourceReading([SlotReading("slot", True, 100, 2000)], "slot"),
        dead_letters=DeadLetterReading("s3://b/dl/", 7, {"DmsDecodeError": 7}, 30.0, 1.0, 7),
        reconcile=ReconcileReading(key="s3://b/reports/r.json", drift_total=3, exit_code=1, age_h=2.0),
        gateway=GatewayReading("gw", True, 100, 2, 1, 10.0, 0.5, 0.25),
        gorse=GorseReading("g", reachable=True, ready=True),
    )


def test_a_point_takes_the_worst_live_shard_and_sums_the_rates() -> None:
    r = readings()
    p = point(r, assess(r))
    assert (p.behind_s, p.records_per_s, p.dead_letters, p.blocked) == (4.0, 15.0, 7, 1)
    assert (p.gateway_5xx_per_s, p.gateway_429_per_s, p.findings) == (0.5, 0.25, 1)


def test_history_keeps_one_hour() -> None:
    h = History()
    for minute in range(0, 90, 10):
        h.add(Point(AT.timestamp() + minute * 60, 0, 0, 0, 0, 0, 0, 0))
    ts = [p.t for p in h.points()]
    assert ts[0] == AT.timestamp() + 20 * 60 and ts[-1] == AT.timestamp() + 80 * 60


async def test_concurrent_snapshots_share_one_read_and_carry_the_history() -> None:
    reads = 0

    async def read() -> Readings:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)
        return readings(AT + timedelta(seconds=reads))

    seen = []
    board = StatusBoard(read, min_interval_s=60, sample_s=3600, on_read=lambda r, v: seen.append(v.exit_code))
    docs = await asyncio.gather(*(board.snapshot() for _ in range(5)))
    await board.close()
    assert reads == 1 and seen == [1]
    assert all(d["verdict"]["exit_code"] == 1 and len(d["history"]) == 1 for d in docs)


def test_the_exporter_gauges() -> None:
    g = StatusGauges()
    r = readings()
    g.update(r, assess(r))
    text = generate_latest(g.registry).decode()
    for line in (
        'gorse_cdc_slot_retained_bytes{slot="slot"} 2000.0',
        'gorse_cdc_dead_letters_stored{store="s3://b/dl/"} 7.0',
        "gorse_cdc_reconcile_drift_keys 3.0",
        'gorse_cdc_shard_behind_seconds{shard="shard-0",stream="s"} 4.0',
        "gorse_cdc_gorse_up 1.0",
        'gorse_cdc_status_findings{severity="page"} 1.0',
    ):
        assert line in text, line
    assert "shard-p" not in text  # an ended parent is no longer watched
