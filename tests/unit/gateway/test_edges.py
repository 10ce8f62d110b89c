"""The gateway's edges, logic only: ids and categories, the cached readiness, the publisher's
partial failures, the failure bucket's peek, the demo page's storage, and the Gorse client's
adaptive limit when a caller gives up."""

from __future__ import annotations

import asyncio
import socket
from importlib import resources
from typing import Any

import pytest

from gateway.parts import Parts
from gateway.publisher import EventPublisher, EventsNotAcceptedError
from gateway.ratelimit import Buckets
from gateway.routes import valid_category, valid_id
from gorse_cdc.gorse.client import GorseClient


def test_ids_are_whole_values_and_genre_names_are_categories() -> None:
    assert valid_id("u1") and valid_id("user@example.com") and valid_id("a:b+c.d-e_f")
    for bad in ("u1\n", "u1\r\n", "\nu1", "a/b", "..", "x..y", "", "a b", "a\x00"):
        assert not valid_id(bad), repr(bad)  # was: "u1\n" passed (`$` before a final newline)
    for genre in ("Children's", "Film-Noir", "Sci-Fi", "(no genres listed)", "Action", "IMAX"):
        assert valid_category(genre), genre  # was: "Children's" was a 400
    for bad in ("a/b", "..", "Drama\n", "", "x" * 65, "<script>", "a%2Fb"):
        assert not valid_category(bad), repr(bad)


class CountingChecks:
    def __init__(self) -> None:
        self.calls = 0

    async def check(self) -> bool:
        self.calls += 1
        await asyncio.sleep(0.05)
        return True


async def test_readiness_is_computed_once_per_ttl_for_any_number_of_callers() -> None:
    """Was: every /readyz hit made three upstream calls (the ALB alone: every 15 s per task)."""
    now = [0.0]
    c = CountingChecks()
    parts = Parts(
        auth=None,  # type: ignore[arg-type]
        reads=None,  # type: ignore[arg-type]
        publisher=None,  # type: ignore[arg-type]
        metrics=None,  # type: ignore[arg-type]
        event_types=frozenset(),
        checks={"a": c.check, "b": c.check},
        ready_ttl_s=5.0,
        clock=lambda: now[0],
    )
    results = await asyncio.gather(*(parts.readiness() for _ in range(20)))
    assert results == [{"a": True, "b": True}] * 20 and c.calls == 2
    now[0] = 4.9
    await parts.readiness()
    assert c.calls == 2
    now[0] = 5.0
    await parts.readiness()
    assert c.calls == 4


class PartialKinesis:
    """Answers PutRecords as Kinesis does under throttling: FailedRecordCount and an ErrorCode
    per refused entry (the call itself succeeds)."""

    def __init__(self, refuse: list[set[int]]) -> None:
        self.refuse = refuse  # per call: the positions refused
        self.sent: list[list[Any]] = []

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append([r["Data"] for r in Records])
        refused = self.refuse.pop(0) if self.refuse else set()
        out = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"}
            if i in refused
            else {"SequenceNumber": "1", "ShardId": "s"}
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": len(refused), "Records": out}


async def test_only_the_refused_events_are_put_again() -> None:
    kinesis = PartialKinesis([{1, 3}, {0}])
    records = [{"Data": str(i).encode(), "PartitionKey": "u"} for i in range(5)]
    await EventPublisher(kinesis, "s", base_delay_s=0.001).put(records)
    assert kinesis.sent == [[b"0", b"1", b"2", b"3", b"4"], [b"1", b"3"], [b"1"]]


async def test_events_still_refused_after_the_attempts_raise_a_retriable_error() -> None:
    kinesis = PartialKinesis([{0}] * 4)
    with pytest.raises(EventsNotAcceptedError) as e:
        await EventPublisher(kinesis, "s", attempts=4, base_delay_s=0.001).put(
            [{"Data": b"a", "PartitionKey": "u"}, {"Data": b"b", "PartitionKey": "u"}]
        )
    assert e.value.retriable and "1 events" in str(e.value) and len(kinesis.sent) == 4


def test_the_failure_bucket_can_be_read_without_taking() -> None:
    b = Buckets()
    assert b.wait("addr", 1, 2, 0.0) == 0.0  # unknown: not failing
    b.take("addr", 1, 2, 0.0)
    b.take("addr", 1, 2, 0.0)
    assert b.wait("addr", 1, 2, 0.0) == pytest.approx(1.0)
    assert b.wait("addr", 1, 2, 0.0) == pytest.approx(1.0)  # reading takes nothing
    assert b.wait("addr", 1, 2, 1.0) == 0.0


def test_the_demo_page_keeps_the_key_for_the_tab_only_and_has_no_inline_script() -> None:
    static = resources.files("gateway").joinpath("static")
    page = static.joinpath("index.html").read_text()
    script = static.joinpath("app.js").read_text()
    assert "localStorage" not in page + script and "sessionStorage" in script
    assert (
        "<script>" not in page
        and "<style>" not in page
        and " on" not in page.split("<body>")[1].split(">")[0]
    )


async def test_a_caller_giving_up_does_not_halve_the_adaptive_limit() -> None:
    """Was: a cancelled call counted as a failed one, so abandoned requests halved the limit.
    Gorse here is a loopback socket that accepts and never answers (a hung server)."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        client = GorseClient(
            f"http://127.0.0.1:{hung.getsockname()[1]}", None, adaptive=True, max_connections=8
        )
        async with client:
            assert client.limit is not None
            for _ in range(3):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await client.health()
            assert client.limit.limit == 8 and client.limit.decreases == 0 and client.limit.in_flight == 0
