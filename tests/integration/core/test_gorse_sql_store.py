"""Gorse on a SQL data store, as the deployments run it (gorse.yaml: PostgreSQL or MySQL), not
the stack's SQLite: a second real gorse-in-one on a fresh database of the stack's PostgreSQL.

Gorse 0.5.11 inserts a feedback batch's users and items in Go map order, so concurrent batches
that share items deadlock there (500 "pq: deadlock detected (40P01)"); the freshness bench's
full load retried them for minutes. With ``gorse.feedback_writers = 1`` one process sends one
batch at a time and none deadlocks."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from entrypoints.stack import install
from entrypoints.stack.components import Stack
from entrypoints.stack.processes import http_ok
from gorse_cdc.errors import GorseRequestError
from gorse_cdc.gorse import Feedback, GorseClient
from gorse_cdc.settings import Settings
from tests.integration.gateway.conftest import free_port

CALLERS = 16


@pytest.fixture(scope="module")
def sql_gorse(settings: Settings, stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a gorse-in-one whose data and cache stores are a new PostgreSQL database."""
    st, src = settings.stack, settings.source
    db = f"gorse_sql_{uuid.uuid4().hex[:8]}"
    pg = Stack(settings).postgres
    pg.psql(f"CREATE DATABASE {db} OWNER {src.user}")
    d = tmp_path_factory.mktemp("gorse-sql")
    http, grpc = free_port(), free_port()
    text = (install.GORSE_MODULE_DIR / "config.toml").read_text("utf-8")
    text = re.sub(r"(?m)^port = \d+", f"port = {grpc}", text)
    text = re.sub(r"(?m)^http_port = \d+", f"http_port = {http}", text)
    text = re.sub(r'(?m)^(http_)?host = "[^"]*"', lambda m: f'{m.group(1) or ""}host = "127.0.0.1"', text)
    (d / "config.toml").write_text(text)
    dsn = (
        f"postgres://{src.user}:{src.password.get_secret_value()}@{st.host}:{st.port('postgres')}/{db}"
        "?sslmode=disable"
    )
    key = settings.gorse.api_key.get_secret_value()
    env = {
        **os.environ,
        "GORSE_DATA_STORE": dsn,
        "GORSE_CACHE_STORE": dsn,
        "GORSE_SERVER_API_KEY": key,
        "GORSE_ADMIN_API_KEY": key,
        "GORSE_DASHBOARD_USER_NAME": "gorse-cdc",
        "GORSE_DASHBOARD_PASSWORD": key,
    }
    (d / "cache").mkdir()
    binary = install.ensure_gorse(st.cache_dir, st.gorse_version)
    argv = [str(binary), "-c", str(d / "config.toml"), "--cache-path", str(d / "cache")]
    with (d / "gorse.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 90
        while not http_ok(url + "/api/health/ready"):
            assert proc.poll() is None, (d / "gorse.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Gorse on PostgreSQL not ready in 90 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def hammer(url: str, settings: Settings, feedback_writers: int | None) -> collections.Counter[str]:
    """CALLERS callers PUT batches of 100 likes over 40 shared items for 4 s; the errors."""
    tag = uuid.uuid4().hex[:6]
    errors: collections.Counter[str] = collections.Counter()
    g = settings.gorse
    client = GorseClient(url, g.api_key.get_secret_value(), feedback_writers=feedback_writers)
    async with client:
        end = time.monotonic() + 4.0

        async def caller(w: int) -> None:
            n = 0
            while time.monotonic() < end:
                n += 1
                batch = [
                    Feedback("like", f"{tag}-u{w}-{n}-{j % 25}", f"{tag}-i{j % 40}", 1.0) for j in range(100)
                ]
                try:
                    await client.put_feedback(batch)
                except GorseRequestError as e:
                    errors["deadlock" if "deadlock" in str(e) else str(e)[:80]] += 1

        await asyncio.gather(*(caller(w) for w in range(CALLERS)))
    return errors


async def test_one_feedback_writer_never_deadlocks_a_sql_store(sql_gorse: str, settings: Settings) -> None:
    assert await hammer(sql_gorse, settings, feedback_writers=1) == collections.Counter()
