"""The pipeline on Gorse as its users run it: one gorse-master, two gorse-servers and a
gorse-worker on PostgreSQL (stack.gorse_topology = "cluster"), started by the stack's own code on
ports and databases of their own, beside the session's single Gorse. The consumer writes through
both servers; once the stream drains, `verify` (the master's bulk export) finds Gorse equal to
the database. A server stopped mid-stream sends its requests to the other one."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path

import aiohttp
import boto3
import pytest

from consumers.verify import render, verify
from entrypoints.stack.components import Stack
from entrypoints.stack.gorse import LocalGorse, server_name
from entrypoints.stack.processes import ProcessTable, wait_until
from entrypoints.stack.resources import ensure_stream
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings
from tests.integration.consumers.conftest import Env, running_consumer, wait_drained, with_names
from tests.integration.consumers.feed import Feed
from tests.integration.gateway.conftest import free_port

WRITES = re.compile(
    r'gorse_server_rest_api_request_seconds_count\{api="(PUT|POST|PATCH|DELETE) [^"]*"\} (\d+)'
)


def cluster_settings(settings: Settings, root: Path, source_db: str) -> Settings:
    st = settings.stack.model_copy(
        update={
            "dir": root,
            "port_offset": 0,
            "postgres_port": settings.stack.port("postgres"),  # the session's PostgreSQL
            "gorse_topology": "cluster",
            "gorse_http_port": free_port(),
            "gorse_grpc_port": free_port(),
            "gorse_server_ports": [free_port(), free_port()],
            "gorse_worker_port": free_port(),
            "gorse_database": f"gorse_cluster_{uuid.uuid4().hex[:8]}",
        }
    )
    # concurrent writes as configured (gorse.write_partitions: no deadlock on PostgreSQL)
    src = settings.source.model_copy(update={"database": source_db})
    return settings.model_copy(update={"stack": st, "source": src})


class Cluster:
    def __init__(self, settings: Settings, session_settings: Settings) -> None:
        self.settings = settings
        self.procs = ProcessTable(settings.stack.dir)
        self.gorse = LocalGorse(settings, settings.stack.dir, self.procs, Stack(session_settings).postgres)

    def wait(self, name: str, check: Callable[[], bool], what: str, timeout_s: float) -> None:
        def alive_and() -> bool:
            if self.procs.pid(name) is None:
                raise FatalError(f"{what} exited: {self.procs.log_file(name).read_text()[-2000:]}")
            return check()

        wait_until(alive_and, what, timeout_s, self.procs.log_file(name))

    async def writes_per_server(self, *urls: str) -> dict[str, int]:
        """Write requests each gorse-server answered, from its own Prometheus metrics."""
        out = {}
        async with aiohttp.ClientSession() as http:
            for url in urls or self.settings.gorse_urls:
                async with http.get(url + "/metrics") as resp:
                    text = await resp.text()
                out[url] = sum(int(n) for _, n in WRITES.findall(text))
        return out


@pytest.fixture(scope="module")
def cluster(settings: Settings, stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # a source database of its own too: other tests empty and fill the session's meanwhile
    source_db = f"ott_cluster_{uuid.uuid4().hex[:8]}"
    c = Cluster(cluster_settings(settings, tmp_path_factory.mktemp("gorse-cluster"), source_db), settings)
    pg, user = c.gorse.postgres, settings.source.user
    pg.psql(f"CREATE DATABASE {source_db} OWNER {user}")
    try:
        schema = resources.files("entrypoints.stack").joinpath("schema.sql").read_text("utf-8")
        pg.psql(f"SET ROLE {user}; {schema}", db=source_db)
        c.gorse.start(c.wait)
        yield c
    finally:
        c.gorse.stop()
        for db in (*c.gorse.databases, source_db):
            pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture
async def cluster_env(cluster: Cluster) -> AsyncIterator[Env]:
    await asyncio.to_thread(cluster.gorse.reset, cluster.wait)  # an empty Gorse
    tag = uuid.uuid4().hex[:8]
    stream, table = f"cluster-{tag}", f"leases-{tag}"
    s = with_names(cluster.settings, stream, table)
    ensure_stream(s, stream, 2)
    feed = Feed(s, stream)
    feed.truncate()
    yield Env(s, stream, table, feed)
    feed.close()
    with contextlib.suppress(Exception):
        boto3.client("kinesis", **s.aws_client_kwargs("kinesis")).delete_stream(StreamName=stream)


async def test_the_pipeline_writes_through_both_servers_and_verifies(
    cluster_env: Env, cluster: Cluster
) -> None:
    env = cluster_env
    assert len(env.settings.gorse_urls) == 2 and env.settings.gorse_url not in env.settings.gorse_urls
    env.feed.put(env.feed.load(users=150, movies=200, ratings=1500))
    async with running_consumer(env.settings):
        env.feed.put(env.feed.activity(3000))
        await wait_drained(env)
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)
    writes = await cluster.writes_per_server()
    assert all(n > 0 for n in writes.values()), writes
    low, high = min(writes.values()), max(writes.values())
    assert low >= high / 3, f"round-robin should balance the servers: {writes}"


async def test_a_stopped_server_hands_its_requests_to_the_other(cluster_env: Env, cluster: Cluster) -> None:
    env = cluster_env
    env.feed.put(env.feed.load(users=60, movies=80, ratings=600))
    first_url = env.settings.gorse_urls[0]
    async with running_consumer(env.settings):
        await wait_drained(env)
        before = (await cluster.writes_per_server())[first_url]
        cluster.procs.stop(server_name(1))
        try:
            env.feed.put(env.feed.activity(1500))
            await wait_drained(env)
            assert (await cluster.writes_per_server(first_url))[first_url] > before
        finally:
            await asyncio.to_thread(cluster.gorse.start, cluster.wait)  # starts only what is missing
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)
