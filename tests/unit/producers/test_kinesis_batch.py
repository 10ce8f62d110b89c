"""PutRecords batching and the per-key order of retries."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.dms.kinesis_batch import (
    MAX_CALL_BYTES,
    Entry,
    RecordTooLargeError,
    check_size,
    chunks,
    to_resend,
)
from producers.dms.kinesis_sink import KinesisSink


def test_chunks_respect_count_and_bytes() -> None:
    small = [Entry(b"x", str(i)) for i in range(1201)]
    assert [len(c) for c in chunks(small)] == [500, 500, 201]
    big = [Entry(b"x" * (900 * 1024), str(i)) for i in range(12)]
    for c in chunks(big):
        assert sum(e.size for e in c) <= MAX_CALL_BYTES
    assert sum(len(c) for c in chunks(big)) == 12


def test_oversized_record_is_refused() -> None:
    with pytest.raises(RecordTooLargeError):
        check_size(Entry(b"x" * (1024 * 1024), "k"))


def test_resend_from_each_keys_first_failure() -> None:
    es = [Entry(b"a1", "a"), Entry(b"b1", "b"), Entry(b"a2", "a"), Entry(b"c1", "c"), Entry(b"a3", "a")]
    failed = [False, False, True, True, False]
    assert [e.data for e in to_resend(es, failed)] == [b"a2", b"c1", b"a3"]


@given(
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=2**32),
)
def test_delivery_keeps_per_key_last_occurrence_order(keys: list[str], seed: int) -> None:
    """Simulate Kinesis failing entries at random: per key, the last occurrence of every record
    is in commit order, and every record is delivered."""
    rnd = random.Random(seed)
    entries = [Entry(str(i).encode(), k) for i, k in enumerate(keys)]
    shard: list[Entry] = []
    batch = entries
    for _ in range(200):
        failed = [rnd.random() < 0.3 for _ in batch]
        shard += [e for e, bad in zip(batch, failed, strict=True) if not bad]
        batch = to_resend(batch, failed)
        if not batch:
            break
    assert not batch
    for k in set(keys):
        seen = [int(e.data) for e in shard if e.partition_key == k]
        want = [i for i, kk in enumerate(keys) if kk == k]
        last: dict[int, int] = {v: pos for pos, v in enumerate(seen)}
        assert sorted(last) == want
        assert sorted(want, key=lambda v: last[v]) == want
        assert seen[-1] == want[-1]


class FakeKinesis:
    """Fails the entries whose index is in the plan for each call (pure logic test)."""

    def __init__(self, plan: list[set[int]]) -> None:
        self.plan = plan
        self.calls: list[list[str]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        bad = self.plan.pop(0) if self.plan else set()
        self.calls.append([r["Data"].decode() for r in Records])
        return {
            "Records": [
                {"ErrorCode": "ProvisionedThroughputExceededException"}
                if i in bad
                else {"SequenceNumber": "1"}
                for i in range(len(Records))
            ]
        }


def test_sink_retries_until_accepted(settings: Any) -> None:
    fake = FakeKinesis([{1}, set()])
    sink = KinesisSink(settings, client=fake, sleep=lambda s: None, lanes=1)
    for i, k in enumerate("abab"):
        sink.add(f"{k}{i}".encode(), k)
    assert sink.flush() == 4 and len(sink) == 0
    assert fake.calls == [["a0", "b1", "a2", "b3"], ["b1", "b3"]]


def test_lanes_keep_each_key_in_one_lane_in_its_order() -> None:
    from producers.dms.kinesis_batch import lanes

    entries = [Entry(f"{k}{i}".encode(), k) for i, k in enumerate("abcdefgabcdefgaaa")]
    split = lanes(entries, 4)
    assert 1 < len(split) <= 4 and sum(map(len, split)) == len(entries)
    for key in "abcdefg":
        holding = [lane for lane in split if any(e.partition_key == key for e in lane)]
        assert len(holding) == 1
        assert [e for e in holding[0] if e.partition_key == key] == [
            e for e in entries if e.partition_key == key
        ]


def test_a_sink_with_lanes_sends_every_key_in_order_and_retries_per_lane(settings: Any) -> None:
    import threading

    class ThreadSafeFake(FakeKinesis):
        def __init__(self) -> None:
            super().__init__([{0}])  # the first call made has its first entry refused once
            self.lock = threading.Lock()

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            with self.lock:
                return super().put_records(StreamName, Records)

    fake = ThreadSafeFake()
    sink = KinesisSink(settings, client=fake, sleep=lambda s: None, lanes=4)
    sent = [(f"{k}-{i}", k) for i in range(2500) for k in (f"user{i % 37}",)]
    for data, key in sent:
        sink.add(data.encode(), key)
    assert sink.full and sink.flush() == 2500
    for key in {k for _, k in sent}:
        # the last occurrence of each record, per key, is in commit order (kinesis_batch's rule)
        seen = [d for call in fake.calls for d in call if d.rsplit("-", 1)[0] == key]
        last: dict[str, int] = {d: i for i, d in enumerate(seen)}
        ordered = sorted(last, key=last.__getitem__)
        assert ordered == [d for d, k in sent if k == key]


def test_the_change_tally_adds_to_the_counter_once_published() -> None:
    from producers.dms import metrics

    child = metrics.CHANGES.labels("tally_test", "delete")
    before = child._value.get()
    tally = metrics.ChangeTally()
    for _ in range(3):
        tally.count("tally_test", "D")
    assert child._value.get() == before
    tally.publish()
    tally.publish()
    assert child._value.get() == before + 3
