"""kill -9 of a running `gorse-cdc dms run` on a MySQL source mid-CDC, then a restart: every
committed change is on Kinesis and in S3 (duplicates allowed, as with DMS), in commit order per
key. The DMS runs as a real subprocess; the database keeps changing meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gorse_cdc.settings import Settings
from gorse_cdc.source_db import connect_mysql
from producers.activity import Change, run_activity
from producers.db import TABLES
from producers.synthetic import GeneratorConfig, generate
from tests.integration.mysql.conftest import saved_position
from tests.integration.producers.conftest import env_for
from tests.integration.producers.dms_reader import (
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
    env = {**os.environ, **env_for(s), "GORSE_CDC_SOURCE__ENGINE": "mysql"}
    return subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "dms", "run", "--progress-seconds", "1", *extra],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _movies(s: Settings) -> dict[tuple[str, tuple[Any, ...]], dict[str, Any]]:
    conn = connect_mysql(s.source_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM movies")
            names = [d[0] for d in cur.description]
            return {("movies", (r[0],)): dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    finally:
        conn.close()


def logged(journal: list[Change], start: dict[tuple[str, tuple[Any, ...]], dict[str, Any]]) -> list[Change]:
    """The changes a binlog holds: MySQL writes no row for an UPDATE that changes nothing (a
    title or genre edit to what it was); PostgreSQL logs it anyway."""
    last: dict[tuple[str, tuple[Any, ...]], dict[str, Any] | None] = dict(start)
    out = []
    for ch in journal:
        k = (ch.table, ch.key)
        if ch.op == "update" and last.get(k) == ch.row:
            continue
        last[k] = ch.row
        out.append(ch)
    return out


def test_kill_9_and_restart_loses_nothing(my: Settings, tmp_path: Path) -> None:
    s = my
    generate(s, GeneratorConfig(users=150, movies=100, ratings=2000, seed=51))
    movies = _movies(s)
    log = tmp_path / "dms.log"
    proc = _dms(s, log)
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while not saved_position(s)[0]:  # full load done, CDC started
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        start = saved_position(s)
        stop = threading.Event()
        t = threading.Thread(
            target=lambda: result.update(a=run_activity(s, stop=stop, rate=400, seed=52, record=True))
        )
        t.start()
        try:
            while saved_position(s) == start:  # the DMS is saving CDC positions: kill it mid-stream
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            time.sleep(1.0)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            killed_at = saved_position(s)
            time.sleep(1.5)  # changes keep coming while the DMS is down
        finally:
            stop.set()
            t.join()
        restarted = _dms(s, log, "--until-idle", "--idle-seconds", "1")
        assert restarted.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    last = log.read_text().splitlines()[-1]
    assert last.startswith("dms cdc:"), last
    assert killed_at > start  # it was killed after saving CDC progress, before the end
    journal = logged(result["a"].journal, movies)
    assert len(journal) > 300

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
