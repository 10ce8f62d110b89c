"""Gorse's settings: where it is, its key, how the client writes."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class GorseSettings(BaseModel):
    url: str | None = Field(
        None,
        description="gorse-in-one, or the cluster's master (bulk export/import; the API when urls is empty)",
    )
    urls: list[str] = Field(
        default_factory=list,
        description="the REST servers (or one load balancer) that take the API calls, round-robin; "
        "empty: url, or the local stack's gorse-servers in the cluster topology",
    )
    api_key: SecretStr = SecretStr("gorse-cdc-local-api-key")
    batch_size: int = Field(500, ge=1, le=10_000)
    timeout_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_connections: int = Field(16, ge=1)
    verify_tls: bool = True
    adaptive_concurrency: bool = Field(
        True,
        description="requests in flight to Gorse adapt to its answers: +1/limit per answer within "
        "slow_call_s, halved on a slower answer, a 5xx or a timeout (gorse_cdc.gorse.limiter)",
    )
    slow_call_s: float = Field(1.0, gt=0, description="an answer slower than this halves the limit")
    feedback_writers: int | None = Field(
        None,
        ge=1,
        description="feedback PUTs in flight at once per process (None: unbounded). Not needed "
        "against deadlocks any more (write_partitions); a bound on load only",
    )
    write_partitions: int | None = Field(
        4,
        ge=1,
        description="items are split into this many partitions; concurrent writes of one process "
        "hold one partition and all their users each, so they share no key and cannot deadlock in "
        "a SQL store (gorse_cdc.gorse.write_locks). None: no discipline",
    )
