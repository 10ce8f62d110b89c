"""A hung DynamoDB (behind a proxy that answers nothing) must not keep a shard's write in
flight past the lease's write deadline: the lease cannot be renewed, so another worker may
take the shard at the failover time, and the old owner must have stopped writing before. The
write in flight (held in Gorse's proxy) is cancelled at the deadline, nothing is checkpointed,
and once DynamoDB answers again the same consumer takes its leases back and catches up exactly
(issue 20, item 6). Against the real moto server, Kinesis emulator and Gorse."""

from __future__ import annotations

import asyncio

from consumers.leases.coordinator import WRITE_DEADLINE
from consumers.verify import render
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import Env, converged, drained, running_consumer, wait_drained
from tests.integration.consumers.proxy import hanging_proxy


def behind(settings: Settings, aws_url: str, gorse_url: str) -> Settings:
    return settings.model_copy(
        update={
            "aws": settings.aws.model_copy(
                update={"endpoint_url": aws_url, "kinesis_endpoint_url": settings.kinesis_endpoint_url}
            ),
            "gorse": settings.gorse.model_copy(update={"url": gorse_url}),
        }
    )


async def until(check: object, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_write_in_flight_is_cancelled_at_the_deadline_while_dynamodb_hangs(env: Env) -> None:
    env.feed.put(env.feed.load(users=10, movies=10, ratings=40))
    failover_s = env.settings.leases.failover_ms / 1000
    async with (
        hanging_proxy(env.settings.aws_endpoint_url or "") as ddb,
        hanging_proxy(env.settings.gorse_url) as gorse,
    ):
        s = behind(env.settings, ddb.url, gorse.url)
        async with running_consumer(s) as consumer:
            await wait_drained(env)
            await until(lambda: len(consumer.workers) == 2, 10, "both shards held")
            gorse.hold = True  # the next write stays in flight
            env.feed.put(env.feed.activity(40))
            await until(lambda: gorse.held > 0, 10, "no write reached Gorse")
            await asyncio.sleep(0.1)
            ddb.hold = True  # DynamoDB stops answering: no renewal, no checkpoint, no Scan
            loop = asyncio.get_running_loop()
            hung_at = loop.time()
            renewed = dict(consumer.coordinator.renewed_at)
            tasks = {shard: task for shard, (_, task) in consumer.workers.items()}
            limit = failover_s * WRITE_DEADLINE + 0.5
            await until(lambda: all(t.done() for t in tasks.values()), limit + 1.0, "writes not cancelled")
            stopped_at = loop.time()
            # every worker stopped by its deadline (renewed at most failover/3 before the hang),
            # before any other worker could take the lease (the failover time)
            assert stopped_at - hung_at < limit, stopped_at - hung_at
            assert stopped_at - hung_at < failover_s
            assert {t.result().value for t in tasks.values()} == {"lease_lost"}
            assert consumer.coordinator.held == {}
            # the calls in flight at Gorse were given up (their connections closed), in time
            await until(lambda: gorse.abandoned > 0, 2.0, "Gorse calls still in flight")
            assert all(at - hung_at < limit for at in gorse.abandoned_at)
            assert set(renewed) == set(tasks)
            assert not drained(env.settings, env.lease_table, env.feed.last_sequence)
            await asyncio.sleep(failover_s / 2)
            ddb.hold = gorse.hold = False  # back: the consumer takes its leases again
            drift = await converged(env)
            assert drift.total == 0, render(drift)
