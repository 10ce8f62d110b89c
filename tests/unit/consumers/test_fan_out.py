"""The likers of an edited item are told in bounded steps, durably, and only when its label
values changed (issue 20, item 5). A fake stream (FakeKinesis) stands between the sink's
publisher and the sink: fan-out records the sink puts are read back as the next plans of the
item's shard, as the live consumer would. The real-stack version:
tests/integration/consumers/test_fan_out_live.py."""

from __future__ import annotations

import pytest

from consumers.coalesce import WritePlan, coalesce
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import build_mapper
from gorse_cdc.gorse.models import Feedback, Item
from gorse_cdc.mapping.ops import FanOutLikers, RefreshLiked
from gorse_cdc.refresh_records import RefreshPublisher, encode_fan_out
from gorse_cdc.settings import Settings
from tests.unit.consumers.test_gorse_sink_phases import RecordingGorse
from tests.unit.consumers.test_refresh_publisher import FakeKinesis, no_sleep


def edit(item_id: str, *genres: str) -> WritePlan:
    return WritePlan(upsert_items={item_id: Item(item_id, {"genres": list(genres)}, comment="t")})


class Harness:
    def __init__(self, likers: int, per_plan: int) -> None:
        self.gorse = RecordingGorse()
        self.gorse.likers["m1"] = [f"u{i:04d}" for i in range(likers)]
        self.kinesis = FakeKinesis(log=self.gorse.calls)  # one log: Kinesis puts among Gorse calls
        self.sink = self.new_sink(per_plan)
        self.told: list[str] = []
        self.plans = 0

    def new_sink(self, per_plan: int) -> GorseSink:
        """A worker (a restart: a cold cache)."""
        return GorseSink(
            self.gorse,  # type: ignore[arg-type]
            build_mapper(Settings()),
            publisher=RefreshPublisher(self.kinesis, "s", sleep=no_sleep),
            fan_out_records=True,
            fan_out_per_plan=per_plan,
        )

    async def drain(self) -> list[int]:
        """Read the fan-out records back as plans until none is left; likers told per plan."""
        per_plan = []
        pending = self.kinesis.taken()
        while fan_outs := [op for op in pending if isinstance(op, FanOutLikers)]:
            self.told += [op.user_id for op in pending if isinstance(op, RefreshLiked)]
            await self.sink.write(coalesce(fan_outs))
            self.plans += 1
            pending = self.kinesis.taken()
            per_plan.append(sum(isinstance(op, RefreshLiked) for op in pending))
        self.told += [op.user_id for op in pending if isinstance(op, RefreshLiked)]
        return per_plan


async def test_an_edit_tells_every_liker_once_in_bounded_steps() -> None:
    h = Harness(likers=250, per_plan=100)
    await h.sink.write(edit("m1", "Drama"))
    # the promise is on the stream before the item is written
    assert h.gorse.calls.index(("put_records", "m1")) < h.gorse.calls.index(("upsert_items", "m1"))
    assert h.kinesis.taken() == [FanOutLikers("m1")]
    h.kinesis.stored = [{"Data": encode_fan_out(FanOutLikers("m1"))}]  # read back
    assert await h.drain() == [100, 100, 50]
    assert sorted(h.told) == h.gorse.likers["m1"]  # every liker, exactly once


async def test_an_unchanged_item_tells_nobody_even_with_a_cold_cache() -> None:
    h = Harness(likers=50, per_plan=100)
    await h.sink.write(edit("m1", "Drama"))
    h.kinesis.taken()
    await h.sink.write(edit("m1", "Drama"))  # the same values: a table reload
    h.sink = h.new_sink(100)  # a restart: nothing cached, Gorse read instead
    await h.sink.write(edit("m1", "Drama"))
    assert h.kinesis.taken() == []
    await h.sink.write(edit("m1", "Comedy"))
    assert h.kinesis.taken() == [FanOutLikers("m1")]


async def test_a_worker_that_dies_after_writing_the_item_leaves_the_promise_on_the_stream() -> None:
    h = Harness(likers=30, per_plan=100)
    plan = edit("m1", "Drama")
    plan.put_feedback[("u9", "m2")] = Feedback("like", "u9", "m2")
    h.gorse.fail = "put_feedback"  # the plan fails after the item is written
    with pytest.raises(Exception, match="injected"):
        await h.sink.write(plan)
    h.gorse.fail = None
    h.sink = h.new_sink(100)  # it died; the next owner retries the batch with a cold cache
    await h.sink.write(plan)
    promises = [op for op in h.kinesis.taken() if isinstance(op, FanOutLikers)]
    assert promises == [FanOutLikers("m1")]  # made once, before the write, and kept
    await h.sink.write(coalesce(promises))
    assert (
        sorted(op.user_id for op in h.kinesis.taken() if isinstance(op, RefreshLiked)) == h.gorse.likers["m1"]
    )


async def test_a_deleted_items_likers_are_listed_and_told_in_steps() -> None:
    h = Harness(likers=230, per_plan=100)
    await h.sink.write(WritePlan(delete_items=["m1"]))
    listed = h.kinesis.taken()
    assert [(op.item_id, len(op.users or ())) for op in listed if isinstance(op, FanOutLikers)] == [
        ("m1", 230)
    ]
    assert h.gorse.calls.index(("put_records", "m1")) < h.gorse.calls.index(("delete_item", "m1"))
    h.gorse.likers.pop("m1")  # Gorse dropped them with the item
    h.kinesis.stored = [{"Data": encode_fan_out(op)} for op in listed if isinstance(op, FanOutLikers)]
    assert await h.drain() == [100, 100, 30]
    assert sorted(h.told) == [f"u{i:04d}" for i in range(230)]
