"""Several workers on one host: the second takes the next free metrics port and says so."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from consumers.health import PORT_TRIES, HealthServer
from consumers.metrics import Metrics
from gorse_cdc.errors import FatalError


async def _ready() -> bool:
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_second_server_on_the_same_port_takes_the_next_one(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    first = HealthServer(Metrics(), lambda: True, _ready, port=port)
    second = HealthServer(Metrics(), lambda: True, _ready, port=port)
    await first.start()
    try:
        await second.start()
        try:
            assert first.port == port and second.port > port
            assert f"metrics port {port} is taken" in caplog.text
            async with aiohttp.ClientSession() as http:
                for server in (first, second):
                    async with http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
                        assert resp.status == 200
        finally:
            await second.stop()
    finally:
        await first.stop()


def _hold_range(count: int) -> tuple[int, list[socket.socket]]:
    """Listen on ``count`` consecutive free ports (a few tries to find such a range)."""
    for _ in range(20):
        base, held = _free_port(), []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
                s.listen()
            return base, held
        except OSError:
            for s in held:
                s.close()
    raise AssertionError("no range of free ports found")


async def test_when_every_port_is_taken_the_error_says_what_to_set() -> None:
    base, held = _hold_range(PORT_TRIES)
    try:
        server = HealthServer(Metrics(), lambda: True, _ready, port=base)
        with pytest.raises(FatalError, match="GORSE_CDC_CONSUMER__METRICS_PORT"):
            await server.start()
    finally:
        for s in held:
            s.close()
