"""PostgreSQL -> local DMS -> Kinesis and S3, checked against what the database committed."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.db import TABLES
from producers.dms import run_dms
from producers.synthetic import GeneratorConfig, generate

from .dms_reader import (
    as_json,
    as_text,
    db_rows,
    dedupe,
    journal_by_key,
    key_of,
    kinesis_cdc_by_key,
    kinesis_view,
    read_s3,
    read_stream,
    s3_cdc_by_key,
)

# the 100,000 changes (~70 s here); GORSE_CDC_TEST_DMS_CHANGES=20000 for a quicker run
CHANGES = int(os.environ.get("GORSE_CDC_TEST_DMS_CHANGES", "100000"))
PARTITION = {"users": "user_id", "movies": "movie_id", "ratings": "user_id"}


def _seed_db(s: Settings, seed: int) -> dict[str, dict[tuple[str, ...], dict[str, Any]]]:
    generate(s, GeneratorConfig(users=300, movies=150, ratings=6000, seed=seed), truncate=True)
    return {t: db_rows(s, t) for t in TABLES}


def test_every_change_reaches_kinesis_and_s3_in_commit_order(dms_settings: Settings) -> None:
    s = dms_settings
    snapshot = _seed_db(s, 11)
    first = run_dms(s, mode="full-load-and-cdc", until_idle=True, idle_s=1.0)
    assert first.mode == "full-load-and-cdc" and first.loaded_tables == 3
    activity = run_activity(s, changes=CHANGES, seed=12, record=True)
    assert activity.journal is not None and len(activity.journal) >= CHANGES
    second = run_dms(s, until_idle=True, idle_s=1.0)
    assert second.mode == "cdc" and second.changes == len(activity.journal)

    records = read_stream(s)
    controls = {r.record.table for r in records if r.record.record_type == "control"}
    assert controls == set(TABLES)
    for r in records:
        if r.record.is_data:
            assert r.partition_key == str(r.record.data[PARTITION[r.record.table]])

    # full load: every row of the snapshot, once, on both targets
    for t in TABLES:
        loads = [r.record.data for r in records if r.record.operation == "load" and r.record.table == t]
        assert len(loads) == len(snapshot[t])
        assert {key_of(t, d): d for d in loads} == {k: as_json(v) for k, v in snapshot[t].items()}
        s3_load, _ = read_s3(s, t)
        assert len(s3_load) == len(snapshot[t])
        assert {key_of(t, d): d for d in s3_load} == {k: as_text(v) for k, v in snapshot[t].items()}

    # CDC on Kinesis: per key, exactly the committed changes, in commit order, one shard
    want = journal_by_key(activity.journal)
    got = kinesis_cdc_by_key(records)
    assert set(got) == set(want)
    for key, recs in got.items():
        assert len({r.shard for r in recs}) == 1, key
        assert len(dedupe(recs)) == len(recs), f"duplicates in a clean run: {key}"
        assert [kinesis_view(r.record) for r in recs] == want[key], key
        positions = [r.record.stream_position or "" for r in recs]
        assert positions == sorted(positions), key

    # CDC on S3: per key, the same changes in the same order (U = after-row, D = key only)
    want_text = journal_by_key(activity.journal, as_text)
    got_s3: dict[Any, Any] = {}
    for t in TABLES:
        got_s3.update(s3_cdc_by_key(t, read_s3(s, t)[1]))
    assert set(got_s3) == set(want_text)
    for key, ops in got_s3.items():
        assert ops == want_text[key], key


def _replay(row: dict[str, Any] | None, changes: list[tuple[str, Any]]) -> dict[str, Any] | None:
    for op, after in changes:
        row = None if op == "delete" else after
    return row


def test_full_load_snapshot_and_cdc_meet_exactly(dms_settings: Settings) -> None:
    """Changes run WHILE the full load reads: every change is either in the snapshot or in
    the CDC, never both, never neither."""
    s = dms_settings
    before = _seed_db(s, 21)
    stop = threading.Event()
    result: dict[str, Any] = {}

    def activity() -> None:
        result["a"] = run_activity(s, stop=stop, rate=1500, seed=22, record=True)

    t = threading.Thread(target=activity)
    t.start()
    try:
        time.sleep(0.5)
        dms = threading.Thread(target=lambda: result.update(d=run_dms(s, until_idle=True, idle_s=1.0)))
        dms.start()
        time.sleep(3.0)
    finally:
        stop.set()
        t.join()
    dms.join(timeout=300)
    assert result["d"].mode == "full-load-and-cdc" and result["d"].changes > 0
    journal = result["a"].journal
    records = read_stream(s)
    want = journal_by_key(journal)
    got = kinesis_cdc_by_key(records)
    loads: dict[Any, Any] = {
        (r.record.table, key_of(r.record.table, r.record.data)): r.record.data
        for r in records
        if r.record.operation == "load"
    }
    keys = set(want) | set(loads) | {(t, k) for t in TABLES for k in before[t]}
    in_snapshot = in_cdc = 0
    for key in keys:
        j = want.get(key, [])
        c = [kinesis_view(r.record) for r in got.get(key, [])]
        assert c == j[len(j) - len(c) :], f"CDC of {key} is not a suffix of what was committed"
        prefix = j[: len(j) - len(c)]
        start = before[key[0]].get(key[1])
        assert loads.get(key) == _replay(as_json(start) if start else None, prefix), key
        in_snapshot += len(prefix)
        in_cdc += len(c)
    assert in_snapshot > 0 and in_cdc > 0, (in_snapshot, in_cdc)  # the load really overlapped
