"""Prometheus metrics of one consumer process, in its own registry (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "gorse_cdc"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ["table", "operation"]
        self.records_read = Counter(f"{PREFIX}_records_read", "Kinesis records read", ["shard"], registry=r)
        self.records_applied = Counter(
            f"{PREFIX}_records_applied", "records applied to Gorse", labels, registry=r
        )
        self.records_dead_lettered = Counter(
            f"{PREFIX}_records_dead_lettered", "records sent to the dead-letter store", labels, registry=r
        )
        self.records_skipped = Counter(
            f"{PREFIX}_records_skipped", "DMS control records (nothing to apply)", ["operation"], registry=r
        )
        self.millis_behind = Gauge(
            f"{PREFIX}_millis_behind_latest", "MillisBehindLatest of the last read", ["shard"], registry=r
        )
        self.gorse_latency = Histogram(
            f"{PREFIX}_gorse_request_seconds",
            "Gorse request latency, per call (method and route template)",
            ["call"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_records",
            "records per processed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=r,
        )
        self.freshness = Histogram(
            f"{PREFIX}_freshness_seconds",
            "source commit (or Kinesis arrival) to applied in Gorse",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.gorse_limit = Gauge(
            f"{PREFIX}_gorse_concurrency_limit",
            "requests to Gorse allowed in flight now (adaptive: falls when Gorse answers slowly)",
            registry=r,
        )
        self.events_refused_erased = Counter(
            f"{PREFIX}_events_refused_erased",
            "engagement events of erased (deleted) users, refused and never written",
            registry=r,
        )
        self.info = Gauge(
            f"{PREFIX}_consumer_info",
            "1, labelled with this process's worker id, stream and engine (gorse-cdc status joins "
            "its shards to the lease table's owners by it)",
            ["worker", "stream", "engine"],
            registry=r,
        )
        self.leases_held = Gauge(f"{PREFIX}_leases_held", "shard leases this worker holds", registry=r)
        self.gorse_retries = Counter(
            f"{PREFIX}_gorse_retries", "retriable Gorse failures (backoff, no progress)", registry=r
        )
        self.throttles = Counter(
            f"{PREFIX}_kinesis_throttles", "ProvisionedThroughputExceeded on reads", ["shard"], registry=r
        )
        self.checkpoints = Counter(f"{PREFIX}_checkpoints", "checkpoints written", ["shard"], registry=r)
        self.pipeline_blocked = Gauge(
            f"{PREFIX}_pipeline_blocked",
            "1 while writes cannot progress because of the pipeline itself (alert on it)",
            registry=r,
        )
        self.pipeline_errors = Counter(
            f"{PREFIX}_pipeline_errors",
            "failed writes that are the pipeline's fault: auth, routing, payload_too_large, connectivity",
            ["reason"],
            registry=r,
        )
        self.shard_stalled = Gauge(
            f"{PREFIX}_shard_stalled",
            "1 while a shard's batch has not applied for settings.consumer.stall_after_s (alert on it)",
            ["shard"],
            registry=r,
        )
        self.destructive_control_records = Counter(
            f"{PREFIX}_destructive_control_records",
            "DMS drop-table / truncate control records: Gorse is not changed; reconcile (alert on it)",
            ["operation", "table"],
            registry=r,
        )

    def observe_gorse(self, call: str, seconds: float) -> None:
        self.gorse_latency.labels(call).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
