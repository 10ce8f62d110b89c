"""A gateway whose upstreams fail, against real processes: its Gorse a loopback socket that
accepts and never answers (a hung server), its events stream one the Kinesis emulator does not
have (every PutRecords refused). Reads answer 503 within the gateway's deadline, not Gorse's
30 s timeout; events answer 503 + Retry-After (send again), not 500."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.gateway.conftest import Gateway, free_port
from tests.integration.gateway.test_security import assert_problem, call, key


@pytest.fixture(scope="module")
def broken(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(128)  # connections complete in the kernel; nothing ever answers
        env = {
            **gateway.env,
            "GORSE_CDC_GORSE__URL": f"http://127.0.0.1:{hung.getsockname()[1]}",
            "GORSE_CDC_GATEWAY__EVENTS_STREAM": f"gw-missing-{uuid.uuid4().hex[:8]}",
        }
        g = Gateway(gateway.settings, env, free_port(), tmp_path_factory.mktemp("broken") / "gateway.log")
        g.keys = gateway.keys
        g.start()
        try:
            yield g
        finally:
            g.stop()


async def test_a_hung_gorse_is_503_within_the_deadline(broken: Gateway) -> None:
    """Was: the read waited for Gorse's 30 s timeout (and behind it, in the client's queue)."""
    started = time.monotonic()
    status, headers, body = await call(
        broken, "GET", "/v1/users/u1/recommendations", key=key(broken, "reader")
    )
    assert_problem(status, headers, body, 503)
    assert headers["Retry-After"] == "1" and time.monotonic() - started < 6
    status, _, body = await call(broken, "GET", "/readyz")
    assert status == 503 and body["checks"]["gorse"] is False


async def test_a_refused_publish_is_503_with_retry_after(broken: Gateway) -> None:
    """Was: 500 (gateway/publisher.py promised 503: the client sends the batch again)."""
    events = {"events": [{"user": "up-u1", "item": "up-i1", "type": "play"}]}
    status, headers, body = await call(broken, "POST", "/v1/events", key=key(broken, "ingest"), json=events)
    assert_problem(status, headers, body, 503)
    assert headers["Retry-After"] == "1" and body["type"].endswith("/events-not-accepted")
