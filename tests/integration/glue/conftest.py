from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from entrypoints.stack.resources import ensure_stream
from glue.spark import local_session
from gorse_cdc.settings import Settings


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark for the whole test session (start-up is slow)."""
    session = local_session("local[2]", shuffle_partitions=4, driver_memory="1g")
    yield session
    session.stop()


def private_pipeline(settings: Settings, tag: str, **update: object) -> tuple[dict[str, str], Settings]:
    """A pipeline of its own on the shared stack (S3 prefix, stream, lease table, slot named
    ``tag``-<random>): the environment for `gorse-cdc` subprocesses and the same settings
    in-process (``update``: more sections to replace), with its stream created."""
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    over = {
        "GORSE_CDC_S3__PREFIX": run,
        "GORSE_CDC_S3__CDC_MAX_BATCH_INTERVAL_S": "2",
        "GORSE_CDC_KINESIS__STREAM_NAME": run,
        "GORSE_CDC_LEASES__TABLE": run,
        "GORSE_CDC_SOURCE__SLOT_NAME": run.replace("-", "_"),
    }
    s = settings.model_copy(
        update={
            "s3": settings.s3.model_copy(update={"prefix": run, "cdc_max_batch_interval_s": 2.0}),
            "kinesis": settings.kinesis.model_copy(update={"stream_name": run}),
            **update,
        }
    )
    ensure_stream(s)
    return {**os.environ, **over}, s
