"""AWS and the stream's resources: region and endpoints, Kinesis, S3, the lease table, the dead letters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


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
