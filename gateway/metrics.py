"""The gateway's Prometheus metrics, on its own registry. Labels are bounded: routes are the
app's route templates (never raw paths), roles are the three roles (or "none"), statuses are
HTTP codes, keys are the ids the admins created (JWT callers count as "jwt")."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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
