"""The gateway's Prometheus metrics, on its own registry. Labels are bounded: routes are the
app's route templates (never raw paths), roles are the three roles (or "none"), statuses are
HTTP codes, keys are the ids the admins created (JWT callers count as "jwt")."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values


def use_multiprocess_values(directory: Path) -> None:
    """In a worker process, before its metrics are made: keep their values in files under
    ``directory`` (prometheus_client's multiprocess mode), which every worker's /metrics sums."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class GatewayMetrics:
    """``shared_dir``: the workers' multiprocess folder; /metrics then shows the sum over every
    worker (those that exited included), not this process's counts."""

    def __init__(self, registry: CollectorRegistry | None = None, shared_dir: Path | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.shared_dir = shared_dir
        r = self.registry
        self.requests = Counter(
            "gorse_cdc_gateway_requests",
            "requests by route, status and role",
            ["route", "status", "role"],
            registry=r,
        )
        self.latency = Histogram(
            "gorse_cdc_gateway_request_seconds",
            "request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.key_requests = Counter(
            "gorse_cdc_gateway_key_requests", "requests per API key id (usage)", ["key_id"], registry=r
        )
        self.rate_limited = Counter(
            "gorse_cdc_gateway_rate_limited", "requests refused with 429, by role", ["role"], registry=r
        )
        self.cache = Counter(
            "gorse_cdc_gateway_cache",
            "Gorse read cache lookups by cache and result",
            ["cache", "result"],
            registry=r,
        )
        self.events = Counter(
            "gorse_cdc_gateway_events", "events accepted by Kinesis, by type", ["type"], registry=r
        )
        self.gorse_errors = Counter(
            "gorse_cdc_gateway_gorse_errors", "failed Gorse calls by status", ["status"], registry=r
        )

    def cache_result(self, cache: str, hit: bool) -> None:
        self.cache.labels(cache, "hit" if hit else "miss").inc()

    def exposition(self) -> bytes:
        """The text for /metrics."""
        if self.shared_dir is None:
            return bytes(generate_latest(self.registry))
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, str(self.shared_dir))  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
