"""The local stack's settings (ports, folders, the source database's engine and DSN)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

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
