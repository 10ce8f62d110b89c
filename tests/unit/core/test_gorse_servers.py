"""Round-robin over several Gorse servers, failover past an unreachable one, and the settings
that name them."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from gorse_cdc.errors import GorseRetriableError
from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.servers import ServerRing
from gorse_cdc.settings import Settings

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_round_robin_starts_each_order_at_the_next_server() -> None:
    ring = ServerRing(["http://a/", "http://b", "http://c"])
    assert [ring.order()[0] for _ in range(6)] == ["http://a", "http://b", "http://c"] * 2
    assert ring.order() == ["http://a", "http://b", "http://c"]


def test_an_unreachable_server_goes_last_until_its_cool_off_ends() -> None:
    clock = Clock()
    ring = ServerRing(["a", "b"], cool_off_s=5.0, clock=clock)
    ring.unreachable("a")
    assert [ring.order() for _ in range(2)] == [["b", "a"], ["b", "a"]]
    clock.now = 5.1
    assert {ring.order()[0] for _ in range(2)} == {"a", "b"}
    ring.unreachable("b")
    ring.reachable("b")
    assert not ring.is_down("b")


def test_all_down_still_tries_every_server_soonest_back_first() -> None:
    clock = Clock()
    ring = ServerRing(["a", "b", "c"], cool_off_s=5.0, clock=clock)
    ring.unreachable("b")
    clock.now = 1.0
    ring.unreachable("a")
    ring.unreachable("c")
    assert ring.order() == ["b", "a", "c"]


def test_duplicates_collapse_and_none_is_refused() -> None:
    assert ServerRing(["a", "a/", "b"]).urls == ["a", "b"]
    with pytest.raises(ValueError):
        ServerRing([])


def test_settings_name_the_servers_by_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gorse_urls == [Settings().gorse_url]  # single: gorse-in-one
    monkeypatch.setenv("GORSE_CDC_STACK__GORSE_TOPOLOGY", "cluster")
    monkeypatch.setenv("GORSE_CDC_STACK__PORT_OFFSET", "100")
    s = Settings()
    assert s.gorse_url == "http://127.0.0.1:18188"  # the master: bulk endpoints, dashboard
    assert s.gorse_urls == ["http://127.0.0.1:18187", "http://127.0.0.1:18197"]
    assert s.stack.gorse_store_kind == "postgres"
    # an explicit URL (a proxy, a deployment) wins over the derived local servers
    assert Settings(gorse={"url": "http://proxy:1"}).gorse_urls == ["http://proxy:1"]
    monkeypatch.setenv("GORSE_CDC_GORSE__URLS", '["http://lb:8087/"]')
    assert Settings().gorse_urls == ["http://lb:8087"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _server(name: str) -> tuple[web.AppRunner, str]:
    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"server": name})

    app = web.Application()
    app.router.add_get("/api/health/ready", ready)
    app.router.add_get("/api/bulk/users", ready)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_client_spreads_calls_and_fails_over_past_a_refused_server() -> None:
    (ra, a), (rb, b) = await _server("a"), await _server("b")
    dead = f"http://127.0.0.1:{_closed_port()}"
    try:
        async with GorseClient(a, None, servers=[a, b]) as client:
            got = [(await client.health())["server"] for _ in range(4)]
            assert got == ["a", "b", "a", "b"]
            assert await client._request("GET", "/api/bulk/users") == {"server": "a"}  # the master
        async with GorseClient(a, None, servers=[dead, b]) as client:
            assert [(await client.health())["server"] for _ in range(4)] == ["b"] * 4
            assert client.servers.is_down(dead) and client.served == {b: 4}
        async with GorseClient(dead, None, servers=[dead]) as client:
            with pytest.raises(GorseRetriableError):
                await client.health()
    finally:
        await ra.cleanup()
        await rb.cleanup()


def test_an_outage_is_reported_once_and_the_return_once() -> None:
    """The client warns when a server's outage begins and when it answers again, not at each
    retry past a cool-off (a server killed 60 s warned 12 times per client)."""
    clock = Clock()
    ring = ServerRing(["a", "b"], cool_off_s=5.0, clock=clock)
    assert ring.unreachable("a") is True
    clock.now = 6.0  # cooled off, tried again, still down
    assert ring.unreachable("a") is False
    assert ring.reachable("b") is False  # b never failed
    assert ring.reachable("a") is True and ring.reachable("a") is False
    assert ring.unreachable("a") is True  # a new outage
