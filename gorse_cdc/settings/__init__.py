"""The one settings object (its sections in the modules beside this one). Everything
configurable reads from here; nothing reads os.environ.

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

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gorse_cdc.settings.aws import AwsSettings, DeadLetterSettings, KinesisSettings, LeaseSettings, S3Settings
from gorse_cdc.settings.consumer import ConsumerSettings, KclSettings, MappingSettings, ReplaySettings
from gorse_cdc.settings.gateway import GatewaySettings
from gorse_cdc.settings.gorse import GorseSettings
from gorse_cdc.settings.reconcile import ReconcileSettings
from gorse_cdc.settings.stack import LOCAL_AWS_KEY, SourceSettings, StackSettings

__all__ = [
    "LOCAL_AWS_KEY",
    "AwsSettings",
    "ConsumerSettings",
    "DeadLetterSettings",
    "GatewaySettings",
    "GorseSettings",
    "KclSettings",
    "KinesisSettings",
    "LeaseSettings",
    "MappingSettings",
    "ReconcileSettings",
    "ReplaySettings",
    "S3Settings",
    "Settings",
    "SourceSettings",
    "StackSettings",
    "load_settings",
]


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
