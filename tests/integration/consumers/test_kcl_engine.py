"""The KCL engine end to end on the real stack: the real MultiLangDaemon (amazon-kclpy's KCL
multilang 3.1.3 jars) reads kinesalite over h2c, keeps its leases in moto's DynamoDB, and its
Python processors run gorse-cdc's record path into the real Gorse. The same feed + verify as
the native engine's test_end_to_end."""

from __future__ import annotations

import os
from pathlib import Path

from consumers.verify import render
from tests.integration.consumers.conftest import Env, converged, leases
from tests.integration.consumers.kcl_engine import kcl_process, log_events, started, stop, tail

CHANGES = int(os.environ.get("GORSE_CDC_TEST_CHANGES", "3000"))


async def test_kcl_engine_load_then_activity_reaches_gorse_exactly(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "kcl.log"
    env.feed.put(env.feed.load(users=150, movies=200, ratings=1500))
    proc = kcl_process(env, "kcl-a", log)
    try:
        await started(proc, log, shards=2)
        env.feed.put(env.feed.activity(CHANGES))
        drift = await converged(env)
        assert proc.poll() is None, tail(log)
    finally:
        code = stop(proc)
    assert drift.total == 0, render(drift)
    assert code == 0, tail(log)
    # the real KCL owned the leases (in the same table the native engine uses)
    assert {le.lease_owner for le in leases(env.settings, env.lease_table)} == {"kcl-a"}
    assert {str(e["shard"]) for e in log_events(log, "KCL first batch")} == {
        "shardId-000000000000",
        "shardId-000000000001",
    }
