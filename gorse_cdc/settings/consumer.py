"""The consumer's settings, its KCL engine's, the replay tool's and the mapping's."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class ConsumerSettings(BaseModel):
    engine: Literal["native", "kcl"] = Field(
        "native", description="native asyncio consumer, or the real KCL MultiLangDaemon (consumers.kcl)"
    )
    worker_id: str | None = None
    max_records_per_call: int = Field(10_000, ge=1, le=10_000)
    idle_pause_ms: int = Field(1000, ge=0)
    max_in_flight_records: int = Field(
        20_000,
        ge=1,
        description="bounds memory per worker: a shard's batch holds at most its share; with read_ahead "
        "a shard that is behind holds two (the one applying and the next)",
    )
    remember_likes: bool = Field(
        True,
        description="keep each own user's liked items in memory instead of reading them from Gorse per "
        "batch (the largest share of the consumer's Gorse calls). Exact because every other writer of "
        "feedback tells the user's shard (reread refresh records: the reconcile's repair, archive "
        "replays and re-drives run --beside-live) or takes the shard's lease (a Kinesis replay); on "
        "only when users are partitioned by their id",
    )
    read_ahead: bool = Field(True, description="a shard that is behind reads its next batch during the apply")
    gorse_concurrency: int = Field(8, ge=1)
    metrics_port: int = 9108
    enhanced_fan_out: bool = Field(False, description="SubscribeToShard instead of GetRecords")
    discard_writes: bool = Field(
        False, description="BENCHMARKS ONLY: write nothing to Gorse yet checkpoint (bench/bench_engines.py)"
    )
    metrics_host: str = Field("127.0.0.1", description="0.0.0.0 in containers (the images set it)")
    shutdown_timeout_s: float = 20.0
    stall_after_s: float = Field(
        60.0, gt=0, description="a shard whose batch has not applied for this long is reported stalled"
    )
    erasures_table: str = Field(
        "gorse-cdc-erasures",
        description="DynamoDB table of deleted users (sha256 of the id): their engagement events are refused",
    )
    erasure_guard: bool = Field(
        True, description="log user deletes and refuse events of logged users (consumers.sink.erasures)"
    )
    remembered_ttl_s: float = Field(
        600.0,
        gt=0,
        description="how long a worker trusts what it remembers of its own users (their likes and "
        "unlikes, demographics) before reading them again; every other writer tells the owner "
        "(reread refresh records), so this is a backstop, not what keeps it exact",
    )
    remembered_users: int = Field(
        200_000,
        ge=1,
        description="own users whose row (demographics) a worker remembers, ~300 bytes each (and "
        "as many ids, at least 500k, of users known to hold no feedback); below the users a full "
        "load writes, each user is read back from Gorse when their ratings come",
    )
    remembered_feedback_rows: int = Field(
        1_000_000,
        ge=1,
        description="like/unlike rows of its own users a worker remembers (~130 bytes each for "
        "users of ~10 rows, item ids shared: 127 MiB a million; users known to hold nothing cost "
        "an id); past it the least recently written users are read again from Gorse when needed",
    )
    item_cache_size: int = Field(50_000, ge=1, description="items whose labels the consumer caches")
    item_cache_ttl_s: float = Field(
        60.0,
        gt=0,
        description="bounds staleness of another worker's edit; its likers are told again after it",
    )


class KclSettings(BaseModel):
    """The KCL engine (``consume --engine kcl``): the MultiLangDaemon's properties come from
    these and the shared sections (stream, lease table, failover time, endpoints). ``None`` =
    KCL's own default."""

    java: str = Field("java", description="the Java 17+ executable")
    kinesis_endpoint_url: str | None = Field(
        None, description="Kinesis endpoint for the KCL (HTTP/2); locally the stack's h2c port"
    )
    tuned: bool = Field(
        True, description="false: KCL's own defaults for the four intervals below (start-up ~2 min)"
    )
    shard_sync_interval_ms: int | None = Field(1000, ge=100, description="KCL default 60000")
    lease_assignment_interval_ms: int | None = Field(1000, ge=100, description="KCL 3 default 2 x failover")
    idle_time_between_reads_ms: int | None = Field(200, ge=0, description="KCL default 1000 (polling)")
    max_records: int | None = Field(10_000, ge=1, le=10_000, description="GetRecords limit")
    extra_properties: dict[str, str] = Field(
        default_factory=dict, description="any other MultiLangDaemon property, verbatim"
    )


class ReplaySettings(BaseModel):
    table: str = Field("gorse-cdc-replay-leases", description="the replay tool's own checkpoint table")
    job: str = Field("replay", description="checkpoint namespace inside that table; resume by name")
    max_records_per_s: float = Field(2000.0, ge=0, description="0 = unlimited")
    batch_size: int = Field(1000, ge=1, le=10_000)


class MappingSettings(BaseModel):
    path: Path | None = Field(None, description="a mapping TOML; the seed's default when unset")
    zip_privacy: Literal["keep", "prefix3", "drop"] = "keep"
