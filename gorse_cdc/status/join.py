"""Pure joins: lease items, metrics text and Kinesis positions into the status rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gorse_cdc.status.model import ConsumerEndpoint, ShardRow

SHARD_END = "SHARD_END"
# what only KCL 3 writes on a lease item (shared/reference/kcl.md): the native engine never does
KCL_ONLY_ATTRIBUTES = ("throughputKBps",)

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class LeaseInfo:
    shard: str
    owner: str | None
    checkpoint: str
    engine: str
    handoff_to: str | None = None


def lease_info(item: Mapping[str, Any]) -> LeaseInfo:
    """One DynamoDB lease item (KCL schema, low-level attribute values)."""

    def s(name: str) -> str | None:
        v = item.get(name, {}).get("S")
        return str(v) if v else None

    owner = s("leaseOwner")
    engine = "kcl" if any(a in item for a in KCL_ONLY_ATTRIBUTES) else "native"
    return LeaseInfo(
        shard=s("leaseKey") or "?",
        owner=owner,
        checkpoint=s("checkpoint") or "TRIM_HORIZON",
        engine=engine if owner else "",
        handoff_to=s("handoffTo"),
    )


def parse_metrics(text: str) -> Samples:
    """Prometheus text -> {sample name: [(labels, value)]} (counters keep their _total name)."""
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), float(sample.value)))
    return dict(out)


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == x for k, x in match.items()))


def per_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, v in samples.get(name, []):
        out[labels.get(label, "")] += v
    return dict(out)


def consumer_endpoint(url: str, samples: Samples, ready: Mapping[str, Any] | None) -> ConsumerEndpoint:
    """A consumer's (or KCL processor's) metrics and /readyz answer."""
    ready = ready or {}
    shards = set(per_label(samples, "gorse_cdc_millis_behind_latest", "shard"))
    shards |= set(per_label(samples, "gorse_cdc_records_read_total", "shard"))
    stalled = tuple(sorted(s for s, v in per_label(samples, "gorse_cdc_shard_stalled", "shard").items() if v))
    info = samples.get("gorse_cdc_consumer_info", [])
    worker, stream, engine = (
        (info[0][0].get("worker"), info[0][0].get("stream"), info[0][0].get("engine"))
        if info
        else (None, None, None)
    )
    blocked = ready.get("blocked")
    if blocked is None and total(samples, "gorse_cdc_pipeline_blocked") > 0:
        blocked = "blocked"
    return ConsumerEndpoint(
        url=url,
        ready=bool(ready.get("gorse")) and blocked is None and not stalled,
        worker=worker,
        stream=stream,
        blocked=str(blocked) if blocked else None,
        stalled=tuple(sorted(set(stalled) | set(ready.get("stalled") or []))),
        shards=tuple(sorted(shards)),
        engine=engine or ("kcl" if "gorse_cdc_kcl_daemon_up" in samples else "native"),
        destructive_control_records=total(samples, "gorse_cdc_destructive_control_records_total"),
        events_refused_erased=total(samples, "gorse_cdc_events_refused_erased_total"),
        dead_lettered=total(samples, "gorse_cdc_records_dead_lettered_total"),
        reads=per_label(samples, "gorse_cdc_records_read_total", "shard"),
    )


def rates(before: Mapping[str, float], after: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Per-key rate of counters between two readings (a counter that went down restarted)."""
    if seconds <= 0:
        return {}
    return {
        k: max(v - before.get(k, 0.0), 0.0) / seconds if v >= before.get(k, 0.0) else v / seconds
        for k, v in after.items()
    }


@dataclass(frozen=True)
class Position:
    """Where a shard's checkpoint stands in Kinesis (gorse_cdc.status.readers.shard_position)."""

    checkpoint_age_s: float | None  # arrival age of the checkpointed record
    behind_ms: float | None  # arrival age of the first record after it (0: none waits)


def shard_rows(
    stream: str,
    leases: Iterable[LeaseInfo],
    endpoints: Iterable[ConsumerEndpoint],
    positions: Mapping[str, Position],
    read_rates: Mapping[str, float],
) -> list[ShardRow]:
    """One row per lease, joined with what its owner's endpoint reports for the shard: the
    endpoint whose worker id is the lease's owner, else (a KCL processor, which does not know
    its worker id) an endpoint of no named worker that reports the shard."""
    by_worker: dict[str, ConsumerEndpoint] = {}
    by_shard: dict[str, ConsumerEndpoint] = {}
    for e in endpoints:
        if e.worker is not None:
            if e.stream in (None, stream):
                by_worker[e.worker] = e
            continue
        for shard in (*e.shards, *e.stalled):
            by_shard.setdefault(shard, e)
    rows = []
    for lease in sorted(leases, key=lambda x: x.shard):
        ep = by_worker.get(lease.owner or "") or by_shard.get(lease.shard)
        pos = positions.get(lease.shard, Position(None, None))
        engine = lease.engine
        if ep is not None and ep.engine == "kcl" and engine:
            engine = "kcl"
        rows.append(
            ShardRow(
                stream=stream,
                shard=lease.shard,
                owner=lease.owner,
                engine=engine,
                checkpoint=lease.checkpoint,
                ended=lease.checkpoint == SHARD_END,
                checkpoint_age_s=pos.checkpoint_age_s,
                behind_ms=0.0 if lease.checkpoint == SHARD_END else pos.behind_ms,
                records_per_s=read_rates.get(lease.shard),
                stalled=ep is not None and lease.shard in ep.stalled,
                blocked=ep.blocked if ep is not None and lease.owner else None,
                handoff_to=lease.handoff_to,
            )
        )
    return rows
