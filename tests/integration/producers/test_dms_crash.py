"""kill -9 of a running `gorse-cdc dms run`, then a restart: nothing is lost (duplicates are
allowed, as with DMS). The DMS runs as a real subprocess; the database keeps changing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.db import TABLES
from producers.synthetic import GeneratorConfig, generate

from .conftest import env_for
from .dms_reader import (
    as_text,
    dedupe,
    is_subsequence,
    journal_by_key,
    kinesis_cdc_by_key,
    kinesis_view,
    read_s3,
    read_stream,
    s3_cdc_by_key,
)

ROOT = Path(__file__).parents[3]


def _dms(s: Settings, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_for(s)}
    return subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "dms", "run", "--progress-seconds", "1", *extra],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _confirmed(s: Settings) -> int:
    with psycopg.connect(s.source_dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
            (s.source.slot_name,),
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def test_kill_9_and_restart_loses_nothing(dms_settings: Settings, tmp_path: Path) -> None:
    s = dms_settings
    generate(s, GeneratorConfig(users=200, movies=100, ratings=3000, seed=31), truncate=True)
    log = tmp_path / "dms.log"
    proc = _dms(s, log)
    try:
        deadline = time.monotonic() + 60
        while _confirmed(s) == 0:  # full load done and streaming
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        stop = threading.Event()
        result: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: result.update(a=run_activity(s, stop=stop, rate=1000, seed=32, record=True))
        )
        t.start()
        try:
            start_lsn = _confirmed(s)
            while _confirmed(s) == start_lsn:  # the DMS is acknowledging CDC: kill it mid-stream
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            time.sleep(1.0)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            time.sleep(1.5)  # changes keep coming while the DMS is down
        finally:
            stop.set()
            t.join()
        restarted = _dms(s, log, "--until-idle", "--idle-seconds", "1")
        assert restarted.wait(timeout=300) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "cdc" in log.read_text().splitlines()[-1]
    journal = result["a"].journal
    assert len(journal) > 500

    records = read_stream(s)
    want = journal_by_key(journal)
    got = kinesis_cdc_by_key(records)
    assert set(got) == set(want)
    duplicates = 0
    for key, recs in got.items():
        unique = dedupe(recs)
        duplicates += len(recs) - len(unique)
        assert [kinesis_view(r.record) for r in unique] == want[key], key
    print(f"{len(journal)} changes, {duplicates} redelivered after the restart")
    want_text = journal_by_key(journal, as_text)
    got_s3: dict[Any, Any] = {}
    for table in TABLES:
        got_s3.update(s3_cdc_by_key(table, read_s3(s, table)[1]))
    assert set(got_s3) == set(want_text)
    for key, ops in got_s3.items():
        assert is_subsequence(want_text[key], ops) and ops[-1] == want_text[key][-1], key
