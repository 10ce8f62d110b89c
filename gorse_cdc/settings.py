"""The one settings object. Everything configurable reads from here; nothing reads os.environ.

Sources, highest priority first: constructor arguments, environment variables prefixed
``GORSE_CDC_`` (nested with ``__``, e.g. ``GORSE_CDC_GORSE__API_KEY``), the TOML file named by
``GORSE_CDC_CONFIG`` (default ``gorse-cdc.toml`` if it exists), then the defaults below.

With ``local = true`` (the default) every endpoint that is not set explicitly points at the
local stack on loopback (``gorse-cdc stack up``). With ``local = false`` unset AWS endpoints
mean the real AWS services, and the Gorse URL and source DSN must be given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LOCAL_AWS_KEY = "test"  # the emulators accept any credentials; never used with local = false


class StackSettings(BaseModel):
    """The local stack: where it keeps data and logs, and the loopback ports it listens on."""

    dir: Path = Path(".stack")
    host: str = "127.0.0.1"
    port_offset: int = Field(0, description="added to every port, to run several stacks side by side")
    postgres_port: int = 15432
    gorse_http_port: int = 18088
    gorse_grpc_port: int = 18086
    gorse_server_ports: list[int] = Field(
        default_factory=lambda: [18087, 18097],
        description="one gorse-server per port (cluster topology); clients spread requests over them",
    )
    gorse_worker_port: int = Field(18089, description="the gorse-worker's metrics port (cluster topology)")
    kinesis_port: int = 14567
    kinesis_h2c_port: int = Field(
        14568, description="kinesalite served again over cleartext HTTP/2, for the KCL (which forces HTTP/2)"
    )
    moto_port: int = 15000
    status_exporter_port: int = Field(
        9121,
        description="gorse-cdc status --serve-metrics: gauges for Prometheus, the status page's document",
    )
    mariadb_port: int = Field(13306, description="MariaDB (tests of Gorse on a MySQL store only)")
    mysql_source_port: int = Field(
        13316, description="the MariaDB source database (source.engine = mysql; binlog on, ROW, FULL)"
    )
    kinesis_emulator: Literal["kinesalite", "kinesis-local"] = "kinesalite"
    gorse_topology: Literal["single", "cluster"] = Field(
        "single",
        description="single: one gorse-in-one; cluster: gorse-master (on gorse_http/gorse_grpc ports), "
        "a gorse-server per gorse_server_ports and a gorse-worker, on PostgreSQL stores",
    )
    gorse_store: Literal["sqlite", "postgres"] | None = Field(
        None, description="Gorse's data and cache stores; None: sqlite for single, postgres for cluster"
    )
    gorse_database: str = Field(
        "gorse", description="PostgreSQL stores: the databases <this>_data and <this>_cache (stack's cluster)"
    )
    gorse_worker_interval_s: float = Field(
        5.0, gt=0, description="the gorse-worker's --interval: how often it rebuilds changed users' lists"
    )
    gorse_worker_jobs: int = Field(1, ge=1, description="the gorse-worker's --jobs")
    gorse_fit_period: str | None = Field(
        None,
        pattern=r"^\d+[smh]$",
        description="Gorse's loop period (collaborative and ranker fit_period; docker/gorse/config.toml: "
        "1m). Each loop reloads the dataset and rewrites every item's neighbours: on the SQLite "
        "gorse-in-one that holds the store for minutes under load (bench/bench_freshness.py)",
    )
    gorse_version: str = "v0.5.11"
    cache_dir: Path = Field(
        Path.home() / ".cache" / "gorse-cdc",
        description="where built binaries and npm packages are cached across stacks",
    )

    def port(self, name: str) -> int:
        return int(getattr(self, f"{name}_port")) + self.port_offset

    @property
    def server_ports(self) -> list[int]:
        """The cluster's gorse-server ports, port_offset added."""
        return [p + self.port_offset for p in self.gorse_server_ports]

    @property
    def gorse_store_kind(self) -> Literal["sqlite", "postgres"]:
        if self.gorse_store is not None:
            return self.gorse_store
        return "postgres" if self.gorse_topology == "cluster" else "sqlite"


class SourceSettings(BaseModel):
    """The source database (RDS in AWS, the stack's PostgreSQL or MariaDB locally)."""

    engine: Literal["postgres", "mysql"] = Field(
        "postgres",
        description="postgres: logical replication (wal2json); mysql: the binlog (MySQL, MariaDB, "
        "RDS MySQL/MariaDB, Aurora MySQL). DSN forms: postgresql://... or mysql://user:pw@host:port/db",
    )
    dsn: SecretStr | None = None
    database: str = "ott"
    user: str = "gorse_cdc"
    password: SecretStr = SecretStr("gorse_cdc")
    schema_name: str = Field(
        "public", description="PostgreSQL's schema; a MySQL source's schema is its database (source_schema)"
    )
    slot_name: str = Field(
        "gorse_cdc_dms",
        description="PostgreSQL: the replication slot; MySQL: the name its binlog position is saved under",
    )


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


class AwsSettings(BaseModel):
    region: str = "us-east-1"
    endpoint_url: str | None = Field(None, description="S3/DynamoDB/SQS endpoint (moto, LocalStack)")
    kinesis_endpoint_url: str | None = Field(None, description="Kinesis endpoint (emulator)")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class KinesisSettings(BaseModel):
    stream_name: str = "gorse-cdc-dms"
    shard_count: int = Field(2, ge=1)
    message_format: Literal["json", "json-unformatted"] = "json-unformatted"
    include_transaction_details: bool = True
    include_before_image: bool = True


class S3Settings(BaseModel):
    bucket: str = "gorse-cdc-dms"
    prefix: str = "dms"
    compression: Literal["NONE", "GZIP"] = "NONE"
    data_format: Literal["csv", "parquet"] = "csv"
    date_partition: bool = False
    timestamp_column: str | None = None
    cdc_max_batch_interval_s: float = 60.0
    cdc_min_file_size_kb: int = 32_000


class LeaseSettings(BaseModel):
    table: str = "gorse-cdc-leases"
    failover_ms: int = Field(10_000, ge=1000)
    max_leases_to_steal: int = Field(1, ge=0)


class DeadLetterSettings(BaseModel):
    kind: Literal["s3", "sqs"] = "s3"
    s3_prefix: str = "dead-letters"
    sqs_queue: str = "gorse-cdc-dead-letters"


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
        description="own users whose row (demographics) a worker remembers, ~300 bytes each; below "
        "the users a full load writes, each user is read back from Gorse when their ratings come",
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


class ReconcileSettings(BaseModel):
    """The nightly reconcile's safety knobs (glue/)."""

    source_check: bool | None = Field(
        None,
        description="re-read drifted keys from the source DB around each repair write; None = on "
        "when repairing and a source DSN is available (local, or source.dsn set), off otherwise",
    )
    max_delete_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="refuse the repair when its planned deletes of a kind exceed this share of "
        "Gorse's current rows of that kind (1.0 = no cap)",
    )
    delete_cap_min_rows: int = Field(
        100,
        ge=0,
        description="deletes up to this many rows per kind are never refused by the share cap "
        "(a small Gorse would otherwise refuse any delete)",
    )
    force_deletes: bool = Field(
        False, description="repair even when the delete cap or a partial LOAD folder would refuse it"
    )
    relist_interval_s: float = Field(
        10.0,
        ge=0,
        description="during the repair, list the CDC folders again (to defer keys changed meanwhile) "
        "at most this often; 0 = before every chunk",
    )
    tell_owners: bool = Field(
        True,
        description="after each repaired chunk of users or feedback, put a reread refresh record per "
        "user on the DMS stream (kinesis.stream_name): its live owner forgets what it remembers of "
        "them (consumer.remember_likes needs it); off only when no consumer reads that stream",
    )


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GORSE_CDC_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    local: bool = True
    stack: StackSettings = StackSettings()
    source: SourceSettings = SourceSettings()
    gorse: GorseSettings = GorseSettings()
    aws: AwsSettings = AwsSettings()
    kinesis: KinesisSettings = KinesisSettings()
    s3: S3Settings = S3Settings()
    leases: LeaseSettings = LeaseSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    kcl: KclSettings = KclSettings()
    replay: ReplaySettings = ReplaySettings()
    mapping: MappingSettings = MappingSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    gateway: GatewaySettings = GatewaySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("GORSE_CDC_CONFIG", "gorse-cdc.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    # ---- derived endpoints -------------------------------------------------------------
    def _loopback(self, name: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.stack.host}:{self.stack.port(name)}"

    @property
    def gorse_url(self) -> str:
        if self.gorse.url:
            return self.gorse.url.rstrip("/")
        if not self.local:
            raise ValueError("gorse.url must be set when local = false (GORSE_CDC_GORSE__URL)")
        return self._loopback("gorse_http")

    @property
    def gorse_urls(self) -> list[str]:
        """Where the API calls go (round-robin): gorse.urls; else the local cluster's servers
        (when gorse.url is not set); else gorse_url."""
        if self.gorse.urls:
            return [u.rstrip("/") for u in self.gorse.urls]
        if self.local and not self.gorse.url and self.stack.gorse_topology == "cluster":
            return [f"http://{self.stack.host}:{p}" for p in self.stack.server_ports]
        return [self.gorse_url]

    @property
    def source_dsn(self) -> str:
        if self.source.dsn is not None:
            return self.source.dsn.get_secret_value()
        if not self.local:
            raise ValueError("source.dsn must be set when local = false (GORSE_CDC_SOURCE__DSN)")
        scheme, port = (
            ("mysql", "mysql_source") if self.source.engine == "mysql" else ("postgresql", "postgres")
        )
        return (
            f"{scheme}://{self.source.user}:{self.source.password.get_secret_value()}"
            f"@{self.stack.host}:{self.stack.port(port)}/{self.source.database}"
        )

    @property
    def source_schema(self) -> str:
        """The schema-name DMS writes (and the S3 folder): PostgreSQL's schema, or for a MySQL
        source its database (the DSN's, else source.database)."""
        if self.source.engine != "mysql":
            return self.source.schema_name
        if self.source.dsn is not None:
            from urllib.parse import urlsplit

            path = urlsplit(self.source.dsn.get_secret_value()).path.strip("/")
            if path:
                return path
        return self.source.database

    @property
    def has_source_dsn(self) -> bool:
        """A source DSN is configured (or derivable: the local stack's PostgreSQL)."""
        return self.source.dsn is not None or self.local

    @property
    def aws_endpoint_url(self) -> str | None:
        if self.aws.endpoint_url:
            return self.aws.endpoint_url
        return self._loopback("moto") if self.local else None

    @property
    def kinesis_endpoint_url(self) -> str | None:
        if self.aws.kinesis_endpoint_url:
            return self.aws.kinesis_endpoint_url
        if not self.local:
            return self.aws_endpoint_url
        return self._loopback("kinesis")

    @property
    def gateway_port(self) -> int:
        """The gateway's port (the local stack's offset added when local)."""
        return self.gateway.port + (self.stack.port_offset if self.local else 0)

    def aws_client_kwargs(self, service: str) -> dict[str, str]:
        """Keyword arguments for boto3/aiobotocore ``create_client(service, **kwargs)``."""
        kwargs: dict[str, str] = {"region_name": self.aws.region}
        endpoint = self.kinesis_endpoint_url if service == "kinesis" else self.aws_endpoint_url
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if self.aws.access_key_id and self.aws.secret_access_key:
            kwargs["aws_access_key_id"] = self.aws.access_key_id.get_secret_value()
            kwargs["aws_secret_access_key"] = self.aws.secret_access_key.get_secret_value()
        elif self.local:
            kwargs["aws_access_key_id"] = LOCAL_AWS_KEY
            kwargs["aws_secret_access_key"] = LOCAL_AWS_KEY
        return kwargs


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
