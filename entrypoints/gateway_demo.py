"""The demo's last step: the gateway (HTTPS) and a consumer of its events stream, left running
as parts of the local stack (`gorse-cdc stack down` stops them), a reader key, one real call
through the gateway, a like that reshapes the user's row (timed), and the curl line."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import time

import aiohttp

from entrypoints.demo_live import live_row
from entrypoints.stack.components import Stack
from entrypoints.stack.processes import ProcessSpec
from gateway.keys import Role
from gateway.wiring import key_store, open_aws
from gorse_cdc.settings import Settings


async def _demo_key(settings: Settings, role: Role = Role.READER) -> str:
    async with open_aws(settings, "dynamodb") as (dynamodb,):
        store = key_store(settings, dynamodb)
        await store.ensure_table()
        _, key = await store.create(role, 50.0, 100, "make demo")
        return key


async def _first_row(url: str, key: str, cafile: str) -> list[str]:
    context = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession() as s, s.get(url, headers={"X-API-Key": key}, ssl=context) as r:
        body = await r.json()
        if r.status != 200:
            raise SystemExit(f"gorse-cdc demo: the gateway answered {r.status}: {body}")
        return [f"{i['title']} ({', '.join(i['genres'])})" for i in body["items"]]


def start_gateway(settings: Settings, user: str = "1") -> None:
    stack = Stack(settings)
    cli = [sys.executable, "-m", "entrypoints.cli", "--json-logs"]
    stack.procs.start(ProcessSpec("gateway", [*cli, "gateway", "serve"]))
    events = settings.gateway.events_stream
    stack.procs.start(
        ProcessSpec(
            "events-consumer",
            [*cli, "consume", "--stream", events, "--lease-table", f"{events}-leases", "--metrics-port", "0"],
        )
    )
    port = settings.gateway_port
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((settings.gateway.host, port), 0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"gorse-cdc demo: the gateway did not start; see {stack.procs.log_file('gateway')}"
                ) from None
            time.sleep(0.2)
    if stack.procs.pid("gateway") is None:  # the port answered, but not our gateway
        raise SystemExit(f"gorse-cdc demo: the gateway exited; see {stack.procs.log_file('gateway')}")
    key = asyncio.run(_demo_key(settings))
    ca = settings.stack.dir / "tls" / "ca.pem"
    url = f"https://{settings.gateway.host}:{port}/v1/users/{user}/recommendations?n=5"
    asyncio.run(_first_row(url, key, str(ca)))  # the reader key works
    ingest = asyncio.run(_demo_key(settings, Role.INGEST))
    base = f"https://{settings.gateway.host}:{port}"
    live = asyncio.run(live_row(settings, base, key, ingest, str(ca), user))
    for line in live.describe():
        print(f"    {line}")
    if not live.ok:
        raise SystemExit("gorse-cdc demo: the personal row did not react to the like within 1 s")
    print("    try it (a reader key made for the demo; the gateway stays up until `gorse-cdc stack down`):")
    print(f"    curl --cacert {ca} -H 'X-API-Key: {key}' '{url}'")
    print(f"    home screen: https://{settings.gateway.host}:{port}/?user={user}")
    print(
        "    (paste an admin key in its key field, or append #key=KEY: a fragment never reaches a server;"
        " make one with gorse-cdc gateway keys create --role admin)"
    )
