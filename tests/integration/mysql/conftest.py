"""Fixtures of the MySQL-source tests: the stack's MariaDB source (started here if the stack
runs without it), and per test a private Kinesis stream, S3 prefix, task name and lease table,
an empty source database and an empty Gorse."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest

from entrypoints.stack.components import Stack
from entrypoints.stack.resources import ensure_bucket, ensure_stream
from gorse_cdc.settings import Settings
from gorse_cdc.source_db import connect_mysql
from producers.dms import run_dms
from producers.dms.mysql.snapshot import master_status
from producers.dms.runner import DmsSummary
from producers.dms.s3_sink import S3Sink
from tests.integration.consumers.conftest import with_names


def mysql_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"source": settings.source.model_copy(update={"engine": "mysql"})})


@pytest.fixture(scope="session")
def mysql_stack(settings: Settings, stack: object) -> Stack:
    s = Stack(mysql_settings(settings))
    s.start_mysql_source()
    return s


def empty_tables(s: Settings) -> None:
    conn = connect_mysql(s.source_dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            for t in ("ratings", "movies", "users"):
                cur.execute(f"DELETE FROM {t}")
    finally:
        conn.close()


@pytest.fixture
def my(settings: Settings, mysql_stack: Stack) -> Iterator[Settings]:
    """Settings for a MySQL source with a private stream (2 shards), prefix, task and leases."""
    tag = uuid.uuid4().hex[:8]
    s = with_names(mysql_settings(settings), f"my-{tag}", f"my-leases-{tag}")
    s = s.model_copy(
        update={
            "s3": s.s3.model_copy(update={"prefix": f"my-{tag}", "cdc_max_batch_interval_s": 0.5}),
            "source": s.source.model_copy(update={"slot_name": f"my_{tag}"}),
        }
    )
    ensure_stream(s, s.kinesis.stream_name, 2)
    ensure_bucket(s)
    empty_tables(s)
    yield s
    with contextlib.suppress(Exception):
        boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(
            StreamName=s.kinesis.stream_name
        )


def saved_position(s: Settings) -> tuple[str, int]:
    state = S3Sink(s).read_state(s.source.slot_name)
    return str(state.get("binlog_file", "")), int(state.get("binlog_pos", 0) or 0)


def source_end(s: Settings) -> tuple[str, int]:
    conn = connect_mysql(s.source_dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            return master_status(cur)
    finally:
        conn.close()


def wait_saved(s: Settings, timeout_s: float = 60.0) -> None:
    """Until the DMS saved a position at (or past) the binlog's end as of now."""
    end = source_end(s)
    deadline = time.monotonic() + timeout_s
    while saved_position(s) < end:
        assert time.monotonic() < deadline, f"DMS not caught up: saved {saved_position(s)}, end {end}"
        time.sleep(0.2)


@dataclass
class DmsThread:
    """The local DMS running in a thread (full load, then CDC) until stopped."""

    settings: Settings
    stop: threading.Event = field(default_factory=threading.Event)
    result: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def run() -> None:
            try:
                self.result["summary"] = run_dms(self.settings, stop=self.stop, progress_s=5.0)
            except BaseException as e:  # surfaced by close()
                self.result["error"] = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> DmsSummary:
        self.stop.set()
        self.thread.join(60)
        if "error" in self.result:
            raise self.result["error"]  # type: ignore[misc]
        return self.result["summary"]  # type: ignore[return-value]
