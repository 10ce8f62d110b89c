"""End to end on the real stack: database changes -> DMS records in Kinesis -> consumer ->
Gorse; once the stream drains, `verify` finds Gorse equal to the database."""

from __future__ import annotations

import os

import pytest

from consumers.verify import render, verify
from gorse_cdc.gorse import GorseClient
from tests.integration.consumers.conftest import Env, running_consumer, wait_drained

CHANGES = int(os.environ.get("GORSE_CDC_TEST_CHANGES", "5000"))


async def test_load_then_activity_reaches_gorse_exactly(env: Env) -> None:
    env.feed.put(env.feed.load(users=150, movies=200, ratings=1500))
    async with running_consumer(env.settings):
        env.feed.put(env.feed.activity(CHANGES))
        await wait_drained(env)
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)


async def test_same_records_twice_change_nothing(env: Env) -> None:
    records = env.feed.load(users=30, movies=40, ratings=300) + env.feed.activity(500)
    env.feed.put(records)
    async with running_consumer(env.settings):
        await wait_drained(env)
        async with GorseClient.from_settings(env.settings) as g:
            before = sorted((f.key, f.value) for f in await g.export_feedback())
        env.feed.put(records)  # delivered again (Kinesis is at-least-once)
        await wait_drained(env)
    async with GorseClient.from_settings(env.settings) as g:
        after = sorted((f.key, f.value) for f in await g.export_feedback())
    assert after == before
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)


@pytest.mark.parametrize("env", [1], indirect=True)
async def test_verify_reports_a_difference(env: Env) -> None:
    env.feed.put(env.feed.load(users=5, movies=5, ratings=10))
    async with running_consumer(env.settings):
        await wait_drained(env)
    assert (await verify(env.settings)).total == 0
    async with GorseClient.from_settings(env.settings) as g:
        await g.delete_item("1")
    drift = await verify(env.settings)
    assert drift.items.missing == ["1"]
