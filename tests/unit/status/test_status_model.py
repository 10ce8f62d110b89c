"""The operator's view, pure: lease items, metrics text and positions joined into rows; the
verdict (what needs a person) from the readings."""

from __future__ import annotations

from datetime import UTC, datetime

from gorse_cdc.status.join import (
    LeaseInfo,
    Position,
    consumer_endpoint,
    lease_info,
    parse_metrics,
    rates,
    shard_rows,
)
from gorse_cdc.status.model import (
    ConsumerEndpoint,
    DeadLetterReading,
    GatewayReading,
    GorseReading,
    Readings,
    ReconcileReading,
    Severity,
    SlotReading,
    SourceReading,
    StreamReading,
    Thresholds,
    assess,
    to_json,
)

METRICS = """
# TYPE gorse_cdc_consumer_info gauge
gorse_cdc_consumer_info{engine="native",stream="gorse-cdc-dms",worker="w1"} 1.0
# TYPE gorse_cdc_records_read counter
gorse_cdc_records_read_total{shard="shardId-000000000000"} 120.0
gorse_cdc_records_read_total{shard="shardId-000000000001"} 30.0
# TYPE gorse_cdc_shard_stalled gauge
gorse_cdc_shard_stalled{shard="shardId-000000000001"} 1.0
# TYPE gorse_cdc_pipeline_blocked gauge
gorse_cdc_pipeline_blocked 0.0
# TYPE gorse_cdc_destructive_control_records counter
gorse_cdc_destructive_control_records_total{operation="drop-table",table="movies"} 2.0
"""


def readings(**kw: object) -> Readings:
    base: dict[str, object] = {
        "at": datetime(2026, 12, 4, tzinfo=UTC),
        "streams": [],
        "consumers": [],
        "source": None,
        "dead_letters": None,
        "reconcile": None,
        "gateway": None,
        "gorse": GorseReading("http://gorse", reachable=True, ready=True),
    }
    base.update(kw)
    return Readings(**base)  # type: ignore[arg-type]


def test_a_lease_item_says_owner_checkpoint_and_engine() -> None:
    native = lease_info(
        {
            "leaseKey": {"S": "s0"},
            "leaseOwner": {"S": "w1"},
            "checkpoint": {"S": "495"},
            "leaseCounter": {"N": "3"},
        }
    )
    assert native == LeaseInfo("s0", "w1", "495", "native")
    kcl = lease_info({"leaseKey": {"S": "s1"}, "leaseOwner": {"S": "k"}, "throughputKBps": {"N": "1"}})
    assert kcl.engine == "kcl" and kcl.checkpoint == "TRIM_HORIZON"
    assert lease_info({"leaseKey": {"S": "s2"}}).engine == ""


def test_an_endpoint_is_joined_to_its_owners_leases_by_worker_id() -> None:
    e = consumer_endpoint(
        "http://c:9108", parse_metrics(METRICS), {"gorse": True, "blocked": None, "stalled": []}
    )
    assert e.worker == "w1" and e.stream == "gorse-cdc-dms"
    assert e.stalled == ("shardId-000000000001",) and not e.ready
    assert e.destructive_control_records == 2
    other = ConsumerEndpoint("http://c:9109", True, worker="w2", stream="gorse-cdc-dms", blocked="auth")
    leases = [
        LeaseInfo("shardId-000000000000", "w1", "495", "native"),
        LeaseInfo("shardId-000000000001", "w1", "496", "native"),
        LeaseInfo("shardId-000000000002", "w2", "497", "native"),
        LeaseInfo("shardId-000000000003", None, "TRIM_HORIZON", ""),
    ]
    rows = shard_rows(
        "gorse-cdc-dms",
        leases,
        [e, other],
        {"shardId-000000000000": Position(3.0, 0.0)},
        {"shardId-000000000000": 12.0},
    )
    assert [(r.shard[-1], r.stalled, r.blocked, r.records_per_s) for r in rows] == [
        ("0", False, None, 12.0),
        ("1", True, None, None),
        ("2", False, "auth", None),
        ("3", False, None, None),
    ]
    # the same shard ids of another stream are not this worker's
    assert not any(r.stalled for r in shard_rows("gorse-cdc-events", leases[:2], [e], {}, {}))


def test_rates_between_two_readings_survive_a_restarted_counter() -> None:
    assert rates({"a": 10, "b": 50}, {"a": 30, "b": 5}, 2.0) == {"a": 10.0, "b": 2.5}
    assert rates({}, {"a": 1}, 0) == {}


def shard(**kw: object) -> StreamReading:
    from gorse_cdc.status.model import ShardRow

    row = ShardRow(
        **{"stream": "s", "shard": "shardId-0", "owner": "w1", "engine": "native", "checkpoint": "1", **kw}
    )  # type: ignore[arg-type]
    return StreamReading("s", "t", [row], 1)


def whats(r: Readings, t: Thresholds | None = None) -> list[tuple[str, Severity]]:
    return [(f.what, f.severity) for f in assess(r, t).findings]


def test_healthy_is_exit_0() -> None:
    v = assess(readings(streams=[shard(behind_ms=10.0, records_per_s=5.0)]))
    assert v.findings == [] and v.exit_code == 0 and v.severity is Severity.OK


def test_blocked_stalled_and_behind_shards_need_a_person() -> None:
    assert whats(readings(streams=[shard(blocked="auth")])) == [("PipelineBlocked", Severity.PAGE)]
    assert whats(readings(streams=[shard(stalled=True)])) == [("ShardStalled", Severity.PAGE)]
    behind = readings(streams=[shard(behind_ms=61_000.0)])
    assert whats(behind) == [("ConsumerBehindLatest", Severity.PAGE)]
    assert whats(behind, Thresholds(behind_ms=120_000)) == []
    assert assess(behind).exit_code == 1
    # an ended parent is never behind, stalled or blocked
    assert whats(readings(streams=[shard(ended=True, stalled=True, behind_ms=1e9)])) == []
    assert whats(readings(streams=[shard(owner=None, engine="", behind_ms=5.0)])) == [
        ("ShardUnowned", Severity.PAGE)
    ]


def test_an_unreadable_part_is_a_finding_not_healthy() -> None:
    r = readings(
        streams=[StreamReading("s", "t", unreadable="ResourceNotFound")],
        source=SourceReading(unreadable="connection refused"),
        gorse=GorseReading("http://gorse", unreadable="refused"),
    )
    assert whats(r) == [
        ("StatusUnreadable", Severity.PAGE),
        ("StatusUnreadable", Severity.PAGE),
        ("GorseUnreachable", Severity.PAGE),
    ]


def test_the_slot_holding_wal_dead_letters_drift_and_gateway_rates() -> None:
    gib = 1 << 30
    r = readings(
        source=SourceReading([SlotReading("gorse_cdc_dms", False, gib + 1, gib + 1)], "gorse_cdc_dms"),
        dead_letters=DeadLetterReading("s3://b/dl/", 3, {"PermanentRecordError": 3}, 60.0, 5.0, 3),
        reconcile=ReconcileReading(key="s3://b/reports/x.json", drift_total=101, exit_code=1, age_h=40.0),
        gateway=GatewayReading("https://gw", True, 1000, 60, 300, 100.0, 6.0, 30.0),
    )
    assert sorted(whats(r)) == sorted(
        [
            ("ReplicationSlotHoldsWal", Severity.PAGE),
            ("ReconcileDrift", Severity.PAGE),
            ("Gateway5xxRate", Severity.PAGE),
            ("DeadLettersStored", Severity.WARN),
            ("ReconcileStale", Severity.WARN),
            ("Gateway429Rate", Severity.WARN),
        ]
    )
    assert [f.severity for f in assess(r).findings][:3] == [Severity.PAGE] * 3  # pages first


def test_the_json_document_is_plain() -> None:
    import orjson

    r = readings(consumers=[ConsumerEndpoint("http://c", True, destructive_control_records=1)])
    doc = orjson.loads(orjson.dumps(to_json(r, assess(r))))
    assert doc["verdict"]["findings"][0]["what"] == "DestructiveControlRecord"
    assert doc["verdict"]["exit_code"] == 0 and doc["at"].startswith("2026-12-04")
