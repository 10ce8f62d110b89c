"""The operator's view, pure: what was read (``Readings``) turned into rows and a verdict
(``assess``): the findings that need a person, each with where to look and what to do.

No I/O here: gorse_cdc.status.readers fills the readings from the lease tables, the consumers'
metrics endpoints, Kinesis, PostgreSQL, the S3 reports and dead letters, the gateway and Gorse.
A reading that could not be taken is kept with its error (``unreadable``): an unreadable part
is itself a finding, never silently healthy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    OK = "ok"
    WARN = "warn"  # worth a look, nobody needs to get up
    PAGE = "page"  # needs a person: exit code 1


@dataclass(frozen=True)
class Thresholds:
    """The bounds of the verdict; the alert rules (infra/prometheus/) use the same numbers."""

    behind_ms: float = 60_000  # a shard's oldest unapplied record older than this
    slot_lag_bytes: int = 1 << 30  # WAL the replication slot holds back (1 GiB)
    drift_keys: int = 100  # keys the last reconcile found drifted
    report_age_h: float = 36.0  # the last reconcile report older than this: the nightly job did not run
    error_rate: float = 0.05  # gateway 5xx share of requests
    throttle_rate: float = 0.20  # gateway 429 share of requests


@dataclass(frozen=True)
class ShardRow:
    stream: str
    shard: str
    owner: str | None
    engine: str  # native | kcl | "" (no owner)
    checkpoint: str
    ended: bool = False
    checkpoint_age_s: float | None = None  # age of the checkpointed record (Kinesis arrival)
    behind_ms: float | None = None  # age of the oldest record after the checkpoint (0: none)
    records_per_s: float | None = None  # read rate, from the owner's metrics
    stalled: bool = False
    blocked: str | None = None  # the owner's blocked reason (auth, routing, connectivity, ...)
    handoff_to: str | None = None


@dataclass(frozen=True)
class StreamReading:
    stream: str
    lease_table: str
    shards: list[ShardRow] = field(default_factory=list)
    open_shards: int | None = None  # shards Kinesis lists as open
    unreadable: str | None = None


@dataclass(frozen=True)
class ConsumerEndpoint:
    url: str
    ready: bool
    worker: str | None = None  # from gorse_cdc_consumer_info (None: a KCL processor, or older)
    stream: str | None = None
    blocked: str | None = None
    stalled: tuple[str, ...] = ()
    shards: tuple[str, ...] = ()  # shards it reports metrics for
    engine: str = "native"
    destructive_control_records: float = 0
    events_refused_erased: float = 0
    dead_lettered: float = 0
    reads: dict[str, float] = field(default_factory=dict)  # records read per shard (a counter)
    unreadable: str | None = None


@dataclass(frozen=True)
class SlotReading:
    name: str
    active: bool
    lag_bytes: int  # current WAL end minus what the DMS confirmed
    retained_bytes: int  # WAL kept for the slot (from restart_lsn)
    lag_s: float | None = None  # pg_stat_replication's replay_lag, while a walsender runs


@dataclass(frozen=True)
class SourceReading:
    slots: list[SlotReading] = field(default_factory=list)
    expected_slot: str = ""
    unreadable: str | None = None


@dataclass(frozen=True)
class DeadLetterReading:
    store: str  # s3://bucket/prefix or sqs:queue
    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    oldest_age_s: float | None = None
    newest_age_s: float | None = None
    sampled: int = 0  # letters read for their reason (S3: the newest ones)
    unreadable: str | None = None


@dataclass(frozen=True)
class ReconcileReading:
    key: str | None = None  # where the report was read; None: no report yet
    run_id: str | None = None
    finished_at: datetime | None = None
    age_h: float | None = None
    dry_run: bool | None = None
    drift_total: int | None = None
    exit_code: int | None = None
    refused: str | None = None
    unreadable: str | None = None


@dataclass(frozen=True)
class GatewayReading:
    url: str
    reachable: bool = False
    requests: float = 0  # totals since the gateway started
    errors_5xx: float = 0
    rate_limited: float = 0
    requests_per_s: float | None = None  # between two readings
    errors_per_s: float | None = None
    rate_limited_per_s: float | None = None
    unreadable: str | None = None


@dataclass(frozen=True)
class GorseReading:
    url: str
    reachable: bool = False
    ready: bool = False
    users: int | None = None
    items: int | None = None
    positive_feedback: int | None = None
    model_fit_at: str | None = None  # MatchingModelFitTime (None: never fitted)
    unreadable: str | None = None


@dataclass(frozen=True)
class Readings:
    at: datetime
    streams: list[StreamReading]
    consumers: list[ConsumerEndpoint]
    source: SourceReading | None
    dead_letters: DeadLetterReading | None
    reconcile: ReconcileReading | None
    gateway: GatewayReading | None
    gorse: GorseReading | None


@dataclass(frozen=True)
class Finding:
    severity: Severity
    what: str  # alert-like name (the Prometheus rule's, see infra/prometheus/rules.yml)
    where: str
    why: str
    do: str  # the runbook's first step (docs/operations.md#<what>)

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Verdict:
    findings: list[Finding]

    @property
    def severity(self) -> Severity:
        levels = [f.severity for f in self.findings]
        if Severity.PAGE in levels:
            return Severity.PAGE
        return Severity.WARN if levels else Severity.OK

    @property
    def exit_code(self) -> int:
        """0 healthy or only warnings, 1 something needs a person."""
        return 1 if self.severity is Severity.PAGE else 0


def _page(what: str, where: str, why: str, do: str) -> Finding:
    return Finding(Severity.PAGE, what, where, why, do)


def _warn(what: str, where: str, why: str, do: str) -> Finding:
    return Finding(Severity.WARN, what, where, why, do)


def _stream_findings(s: StreamReading, t: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    where = f"stream {s.stream}"
    if s.unreadable:
        return [_page("StatusUnreadable", where, s.unreadable, "check the lease table and Kinesis")]
    if not s.shards and s.open_shards:
        out.append(_warn("NoConsumer", where, "no lease yet: no consumer has run", "gorse-cdc consume"))
    live = [r for r in s.shards if not r.ended]
    for r in live:
        at = f"{where} shard {r.shard}"
        if r.blocked:
            out.append(
                _page(
                    "PipelineBlocked",
                    at,
                    f"writes are blocked by the pipeline itself: {r.blocked}",
                    "fix what the consumer's error line names (wrong Gorse key: rotate it)",
                )
            )
        if r.stalled:
            out.append(
                _page(
                    "ShardStalled",
                    at,
                    "its batch has not applied for consumer.stall_after_s",
                    "read the consumer's shard_stalled line: the call that keeps failing",
                )
            )
        if r.owner is None and (r.behind_ms or 0) > 0:
            out.append(
                _page("ShardUnowned", at, "records wait and no worker holds the lease", "start a consumer")
            )
        if r.behind_ms is not None and r.behind_ms > t.behind_ms:
            out.append(
                _page(
                    "ConsumerBehindLatest",
                    at,
                    f"the oldest unapplied record is {r.behind_ms / 1000:.0f} s old "
                    f"(bound {t.behind_ms / 1000:.0f} s)",
                    "add consumers or look at Gorse's latency",
                )
            )
    return out


def _consumer_findings(c: ConsumerEndpoint) -> list[Finding]:
    if c.unreadable:
        return []  # a scanned port nobody listens on is no finding; the shards say who is missing
    out = []
    if c.destructive_control_records > 0:
        out.append(
            _warn(
                "DestructiveControlRecord",
                f"consumer {c.url}",
                f"{c.destructive_control_records:.0f} DROP TABLE/TRUNCATE control records: "
                "Gorse was left as it was",
                "run the reconcile once the source is as intended",
            )
        )
    if c.events_refused_erased > 0:
        out.append(
            _warn(
                "EventsRefusedErasedUsers",
                f"consumer {c.url}",
                f"{c.events_refused_erased:.0f} events of erased users refused",
                "an app keeps posting for deleted users: tell its owners",
            )
        )
    return out


def _source_findings(s: SourceReading, t: Thresholds) -> list[Finding]:
    if s.unreadable:
        return [_page("StatusUnreadable", "source PostgreSQL", s.unreadable, "check the source database")]
    out = []
    names = {x.name for x in s.slots}
    if s.expected_slot and s.expected_slot not in names:
        out.append(
            _warn("ReplicationSlotMissing", f"slot {s.expected_slot}", "no such slot", "start the DMS task")
        )
    for slot in s.slots:
        if slot.retained_bytes > t.slot_lag_bytes:
            state = "active" if slot.active else "inactive: no DMS reads it"
            out.append(
                _page(
                    "ReplicationSlotHoldsWal",
                    f"slot {slot.name}",
                    f"it holds {slot.retained_bytes / 2**20:.0f} MiB of WAL ({state})",
                    "restart the DMS task; drop the slot only if the stream is to be rebuilt",
                )
            )
    return out


def _dead_letter_findings(d: DeadLetterReading) -> list[Finding]:
    if d.unreadable:
        return [_page("StatusUnreadable", d.store, d.unreadable, "check the dead-letter store")]
    if d.count == 0:
        return []
    reasons = ", ".join(f"{r} ({n})" for r, n in sorted(d.by_reason.items(), key=lambda x: -x[1])[:3])
    return [
        _warn(
            "DeadLettersStored",
            d.store,
            f"{d.count} dead letters" + (f": {reasons}" if reasons else ""),
            "fix the cause, then gorse-cdc replay dead-letters",
        )
    ]


def _reconcile_findings(r: ReconcileReading, t: Thresholds) -> list[Finding]:
    if r.unreadable:
        return [_warn("StatusUnreadable", "reconcile report", r.unreadable, "check the bucket")]
    if r.key is None:
        return [_warn("ReconcileReportMissing", "reports/", "no reconcile report yet", "gorse-cdc reconcile")]
    out = []
    if r.drift_total is not None and r.drift_total > t.drift_keys:
        out.append(
            _page(
                "ReconcileDrift",
                r.key,
                f"{r.drift_total} keys drifted (bound {t.drift_keys})",
                "read the report's samples; gorse-cdc reconcile (repair) once understood",
            )
        )
    if r.exit_code == 2 or r.refused:
        out.append(
            _page(
                "ReconcileFailed",
                r.key,
                r.refused or "the run failed (exit 2)",
                "read the job's log, run again",
            )
        )
    if r.age_h is not None and r.age_h > t.report_age_h:
        out.append(
            _warn("ReconcileStale", r.key, f"the last report is {r.age_h:.0f} h old", "check the schedule")
        )
    return out


def _gateway_findings(g: GatewayReading, t: Thresholds) -> list[Finding]:
    if not g.reachable:
        return [_warn("GatewayUnreachable", g.url, g.unreadable or "no answer", "gorse-cdc gateway serve")]
    out = []
    if g.requests_per_s and g.errors_per_s is not None and g.errors_per_s > t.error_rate * g.requests_per_s:
        out.append(
            _page(
                "Gateway5xxRate",
                g.url,
                f"{g.errors_per_s:.1f} 5xx/s of {g.requests_per_s:.1f} requests/s",
                "check Gorse, the key table and the events stream (/readyz)",
            )
        )
    if (
        g.requests_per_s
        and g.rate_limited_per_s is not None
        and g.rate_limited_per_s > t.throttle_rate * g.requests_per_s
    ):
        out.append(
            _warn(
                "Gateway429Rate",
                g.url,
                f"{g.rate_limited_per_s:.1f} 429/s of {g.requests_per_s:.1f} requests/s",
                "a key over its rate: raise --rate or talk to the app",
            )
        )
    return out


def _gorse_findings(g: GorseReading) -> list[Finding]:
    if not g.reachable:
        return [
            _page("GorseUnreachable", g.url, g.unreadable or "no answer", "restart Gorse; see 'Gorse lost'")
        ]
    if not g.ready:
        return [_page("GorseNotReady", g.url, "its data or cache store is not connected", "check its stores")]
    return []


def assess(r: Readings, t: Thresholds | None = None) -> Verdict:
    t = t or Thresholds()
    found: list[Finding] = []
    for s in r.streams:
        found += _stream_findings(s, t)
    for c in r.consumers:
        found += _consumer_findings(c)
    if r.source is not None:
        found += _source_findings(r.source, t)
    if r.dead_letters is not None:
        found += _dead_letter_findings(r.dead_letters)
    if r.reconcile is not None:
        found += _reconcile_findings(r.reconcile, t)
    if r.gateway is not None:
        found += _gateway_findings(r.gateway, t)
    if r.gorse is not None:
        found += _gorse_findings(r.gorse)
    order = {Severity.PAGE: 0, Severity.WARN: 1, Severity.OK: 2}
    return Verdict(sorted(found, key=lambda f: order[f.severity]))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(r: Readings, v: Verdict) -> dict[str, Any]:
    """The document of `gorse-cdc status --json` and of the gateway's /v1/status."""
    doc = _plain(asdict(r))
    doc["verdict"] = {
        "severity": v.severity.value,
        "exit_code": v.exit_code,
        "findings": [f.to_json() for f in v.findings],
    }
    return dict(doc)
