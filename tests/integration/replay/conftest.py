"""A recorded history for the replay tests, made by the real parts: synthetic data in the real
PostgreSQL, the local DMS (full load + CDC) writing Kinesis and S3, then activity captured the
same way. Built once per module; each test then replays it into the real Gorse."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import boto3
import psycopg
import pytest

from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.dms.runner import run_dms
from producers.synthetic import generate
from producers.synthetic_model import GeneratorConfig
from tests.integration.producers.conftest import drop_slot


def replay_settings(settings: Settings, tag: str) -> Settings:
    return settings.model_copy(
        update={
            "kinesis": settings.kinesis.model_copy(update={"stream_name": f"replay-{tag}", "shard_count": 2}),
            "s3": settings.s3.model_copy(
                update={
                    "prefix": f"replay-{tag}",
                    "cdc_max_batch_interval_s": 0.5,
                    "timestamp_column": "commit_ts",
                }
            ),
            "source": settings.source.model_copy(update={"slot_name": f"replay_{tag}"}),
            "leases": settings.leases.model_copy(update={"table": f"leases-{tag}", "failover_ms": 3000}),
            "replay": settings.replay.model_copy(update={"table": f"replay-{tag}", "max_records_per_s": 0}),
            "dead_letters": settings.dead_letters.model_copy(update={"s3_prefix": f"dead-letters-{tag}"}),
            "consumer": settings.consumer.model_copy(
                update={
                    "metrics_port": 0,
                    "idle_pause_ms": 200,
                    "shutdown_timeout_s": 10.0,
                    "item_cache_ttl_s": ITEM_TTL_S,
                }
            ),
        }
    )


ITEM_TTL_S = 2.0  # genre edits are re-told to late likers after it (consumers.sink.gorse_sink)


@pytest.fixture(scope="module")
def history(settings: Settings, stack: object) -> Iterator[Settings]:
    s = replay_settings(settings, uuid.uuid4().hex[:8])
    ensure_stream(s)
    ensure_bucket(s)
    with psycopg.connect(s.source_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ratings; DELETE FROM movies; DELETE FROM users;")
    generate(s, GeneratorConfig(users=120, movies=80, ratings=1500, seed=11))
    run_dms(s, mode="full-load-and-cdc", until_idle=True, idle_s=1.0)
    run_activity(s, changes=1200, seed=12)
    run_dms(s, until_idle=True, idle_s=1.0)
    yield s
    drop_slot(s)
    with contextlib.suppress(Exception):
        boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(
            StreamName=s.kinesis.stream_name
        )
