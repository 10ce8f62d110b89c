"""Engagement events through the real gateway, the events stream and the real consumer engine
into the real Gorse: visible quickly, never overwriting a rating's like, and nothing lost when
the gateway is killed right after it answered 202."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.models import Feedback
from gorse_cdc.settings import Settings
from tests.integration.gateway.conftest import Gateway, events_consumer


async def feedback_of(gorse: GorseClient, user: str) -> dict[tuple[str, str], Feedback]:
    return {(f.feedback_type, f.item_id): f for f in await gorse.user_feedback(user)}


async def wait_for(
    gorse: GorseClient, user: str, wanted: set[tuple[str, str]], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        have = set(await feedback_of(gorse, user))
        if wanted <= have:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"missing in Gorse after {timeout_s} s: {sorted(wanted - have)[:10]}")
        await asyncio.sleep(0.1)


@pytest.fixture
def consumer(gateway: Gateway, tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = events_consumer(gateway, tmp_path / "consumer.log")
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except Exception:
        proc.kill()


async def post(gw: Gateway, events: list[dict[str, object]], key: str) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/events", json={"events": events}, headers={"X-API-Key": key}, ssl=gw.ssl()) as r,
    ):
        return r.status


async def test_events_reach_gorse_as_their_own_types_and_never_touch_a_rating(
    gateway: Gateway, consumer: object, settings: Settings
) -> None:
    user = f"ev-{random.randrange(10**9)}"
    async with GorseClient.from_settings(settings) as gorse:
        # the database's rating, as the DMS stream wrote it: a like with value 5
        await gorse.put_feedback([Feedback("like", user, "m1", 5.0)])
        events = [
            {"user": user, "item": "m1", "type": "play"},
            {"user": user, "item": "m1", "type": "complete"},
            {"user": user, "item": "m2", "type": "dislike"},
        ]
        assert await post(gateway, events, gateway.keys["ingest"]["key"]) == 202
        await wait_for(gorse, user, {("play", "m1"), ("complete", "m1"), ("dislike", "m2")})
        fb = await feedback_of(gorse, user)
        assert fb[("like", "m1")].value == 5.0  # the rating is untouched
        assert set(fb) == {("like", "m1"), ("play", "m1"), ("complete", "m1"), ("dislike", "m2")}


async def test_nothing_acknowledged_is_lost_when_the_gateway_is_killed(
    gateway: Gateway, consumer: object, settings: Settings
) -> None:
    """Concurrent clients post; the gateway is SIGKILLed mid-stream. Every event of every
    request answered 202 must reach Gorse (requests cut off may or may not have)."""
    user_base = f"kill-{random.randrange(10**9)}"
    key = gateway.keys["ingest"]["key"]
    acked: list[list[dict[str, object]]] = []

    async def client(c: int) -> None:
        for n in range(1000):
            events = [{"user": f"{user_base}-{c}", "item": f"i{n}-{j}", "type": "play"} for j in range(5)]
            try:
                if await post(gateway, events, key) == 202:
                    acked.append(events)
            except (aiohttp.ClientError, OSError):
                return

    enough = asyncio.Event()

    async def watch() -> None:
        while len(acked) < 40:  # noqa: ASYNC110 (polling a list the clients fill)
            await asyncio.sleep(0.01)
        enough.set()

    tasks = [asyncio.create_task(client(c)) for c in range(8)]
    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(enough.wait(), 60)
    await watcher
    gateway.kill()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    killed_at = len(acked)
    gateway.start()  # for the next tests of the module
    assert killed_at >= 40
    async with GorseClient.from_settings(settings) as gorse:
        for c in range(8):
            wanted = {
                ("play", str(e["item"])) for batch in acked for e in batch if e["user"] == f"{user_base}-{c}"
            }
            if wanted:
                await wait_for(gorse, f"{user_base}-{c}", wanted, timeout_s=60)


async def test_a_posted_play_leaves_the_users_row_at_once(gateway: Gateway, settings: Settings) -> None:
    """The gateway that accepted the event filters the item out of the row before Gorse has it."""
    user = f"row-{random.randrange(10**9)}"
    reader = {"X-API-Key": gateway.keys["admin"]["key"]}
    async with aiohttp.ClientSession() as s:
        async with s.get(
            gateway.url + f"/v1/users/{user}/recommendations?n=20", headers=reader, ssl=gateway.ssl()
        ) as r:
            row = await r.json()
        assert r.status == 200 and row["source"] in ("popular", "latest")  # a new user: a row, not an error
        if not row["items"]:
            pytest.skip("Gorse has no items yet to recommend")  # pragma: no cover
        first = row["items"][0]["id"]
        assert (
            await post(gateway, [{"user": user, "item": first, "type": "play"}], gateway.keys["admin"]["key"])
            == 202
        )
        async with s.get(
            gateway.url + f"/v1/users/{user}/recommendations?n=20", headers=reader, ssl=gateway.ssl()
        ) as r:
            after = await r.json()
        assert first not in [i["id"] for i in after["items"]]
