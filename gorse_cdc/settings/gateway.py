"""The gateway's settings (gateway/)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class GatewaySettings(BaseModel):
    """The API for OTT apps (gateway/): reads from Gorse, engagement events onto Kinesis."""

    host: str = "127.0.0.1"
    port: int = Field(18443, description="plus stack.port_offset when local")
    keys_table: str = Field("gorse-cdc-gateway-keys", description="DynamoDB table of hashed API keys")
    key_pepper: SecretStr = Field(
        SecretStr("gorse-cdc-local-pepper"),
        description="HMAC secret for key hashes at rest (set your own outside the local stack)",
    )
    key_cache_ttl_s: float = Field(
        2.0, ge=0, description="a looked-up key is trusted this long (revocation lag)"
    )
    events_stream: str = Field("gorse-cdc-events", description="the engagement events' own Kinesis stream")
    events_shard_count: int = Field(1, ge=1)
    max_events_per_batch: int = Field(500, ge=1, le=500)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    cache_ttl_s: float = Field(30.0, ge=0, description="Gorse reads cached this long (0 = off)")
    cache_size: int = Field(10_000, ge=1)
    fresh_ttl_s: float = Field(0.5, ge=0, description="a user's feedback is re-read from Gorse this often")
    item_ttl_s: float = Field(300.0, ge=0, description="titles and genres cached this long")
    rec_depth: int = Field(100, ge=1, le=1000, description="recommendations fetched per user (n+offset cap)")
    positive_feedback_types: list[str] = Field(
        default_factory=lambda: ["like", "complete"],
        description="a user with one of these gets Gorse's own row (else popular, then latest)",
    )
    popular_recommender: str = Field("most_liked_weekly", description="Gorse non-personalized name")
    genres_label: str = "genres"
    tls: bool = Field(True, description="serve HTTPS only (plain HTTP refused)")
    tls_cert: Path | None = Field(None, description="PEM certificate chain; local: made under stack.dir/tls")
    tls_key: Path | None = None
    tls_self_signed: bool = Field(
        False, description="behind an ALB that does not check target certificates: make one at start"
    )
    jwks_url: str | None = Field(None, description="OAuth2/JWT bearer tokens verified against it (Cognito)")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_role_claim: str = Field("cognito:groups", description="claim holding reader/ingest/admin")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed")
    status_url: str | None = Field(
        None,
        description="the status exporter's document (gorse-cdc status --serve-metrics PORT: "
        "http://host:PORT/status.json), shown to admin keys on /status; local: the stack's exporter",
    )
    default_rate_per_s: float = Field(50.0, gt=0)
    default_burst: int = Field(100, ge=1)
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="worker processes on the one port (gunicorn's arbiter, aiohttp workers); key rate "
        "limits and failed-authentication budgets are shared by them; 0 = one per CPU this process may use",
    )
    shutdown_timeout_s: int = Field(
        25, gt=0, description="on SIGTERM: how long the workers may finish their requests, then killed"
    )

    @property
    def worker_count(self) -> int:
        """``workers``, or one per CPU this process may run on."""
        return self.workers or len(os.sched_getaffinity(0))
