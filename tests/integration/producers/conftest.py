"""Fixtures for the producers' integration tests: a private stream, S3 prefix and slot per
test, cleaned up afterwards, on the real local stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest

from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.settings import Settings
from producers.dms import slot


def drop_slot(settings: Settings) -> None:
    slot.drop_slot(settings.source_dsn, settings.source.slot_name)


@pytest.fixture
def dms_settings(settings: Settings, stack: object) -> Iterator[Settings]:
    name = uuid.uuid4().hex[:10]
    s = settings.model_copy(
        update={
            "kinesis": settings.kinesis.model_copy(
                update={"stream_name": f"dms-test-{name}", "shard_count": 2}
            ),
            "s3": settings.s3.model_copy(update={"prefix": f"test-{name}", "cdc_max_batch_interval_s": 0.5}),
            "source": settings.source.model_copy(update={"slot_name": f"test_{name}"}),
        }
    )
    ensure_stream(s)
    ensure_bucket(s)
    yield s
    drop_slot(s)
    boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(StreamName=s.kinesis.stream_name)


def env_for(s: Settings) -> dict[str, str]:
    """The same settings for a `gorse-cdc` subprocess."""
    return {
        "GORSE_CDC_KINESIS__STREAM_NAME": s.kinesis.stream_name,
        "GORSE_CDC_S3__PREFIX": s.s3.prefix,
        "GORSE_CDC_S3__CDC_MAX_BATCH_INTERVAL_S": str(s.s3.cdc_max_batch_interval_s),
        "GORSE_CDC_SOURCE__SLOT_NAME": s.source.slot_name,
    }
