"""The KCL record processor's order of things, with a fake runtime and checkpointer: a batch
is applied completely before its checkpoint; a failure ends the process without one."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
from amazon_kclpy import dispatch, kcl

from consumers.kcl.processor import GorseRecordProcessor
from consumers.records import ShardRecord


class FakeRuntime:
    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail
        self.applied: list[str] = []

    def open(self) -> None:
        self.log.append("open")

    def apply(self, records: Sequence[ShardRecord]) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.applied += [r.sequence_number for r in records]
        self.log.append(f"apply {records[0].sequence_number}..{records[-1].sequence_number}")

    def checkpointed(self, shard_id: str) -> None:
        pass

    def close(self) -> None:
        self.log.append("close")


class FakeCheckpointer:
    def __init__(self, log: list[str], errors: Sequence[str] = ()) -> None:
        self.log, self.errors = log, list(errors)

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        if self.errors:
            raise kcl.CheckpointError(self.errors.pop(0))
        self.log.append(f"checkpoint {sequence_number}")


def records(*seqs: str) -> list[dict[str, Any]]:
    return [
        {
            "action": "record",
            "sequenceNumber": s,
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": 1_700_000_000_000,
            "partitionKey": "1",
            "data": base64.b64encode(b"{}").decode(),
        }
        for s in seqs
    ]


def message(doc: dict[str, Any], checkpointer: FakeCheckpointer | None = None) -> Any:
    """A message as amazon-kclpy decodes it from the daemon's line."""
    msg = json.loads(json.dumps(doc), object_hook=dispatch.message_decode)
    msg._checkpointer = checkpointer
    return msg


def processor(log: list[str], fail: bool = False) -> tuple[GorseRecordProcessor, FakeRuntime]:
    rt = FakeRuntime(log, fail)
    p = GorseRecordProcessor(lambda: rt)  # type: ignore[arg-type, return-value]
    p.initialize(
        message(
            {"action": "initialize", "shardId": "shardId-1", "sequenceNumber": "5", "subSequenceNumber": 0}
        )
    )
    return p, rt


def batch(checkpointer: FakeCheckpointer, *seqs: str) -> Any:
    doc = {"action": "processRecords", "records": records(*seqs), "millisBehindLatest": 0}
    return message(doc, checkpointer)


def test_a_batch_is_applied_before_its_last_sequence_is_checkpointed() -> None:
    log: list[str] = []
    p, _rt = processor(log)
    p.process_records(batch(FakeCheckpointer(log), "10", "11", "12"))
    p.process_records(batch(FakeCheckpointer(log), "13"))
    assert log == ["open", "apply 10..12", "checkpoint 12", "apply 13..13", "checkpoint 13"]


def test_a_failed_apply_ends_the_process_without_a_checkpoint() -> None:
    log: list[str] = []
    p, _ = processor(log, fail=True)
    with pytest.raises(SystemExit):
        p.process_records(batch(FakeCheckpointer(log), "10"))
    assert not any(line.startswith("checkpoint") for line in log)


def test_throttled_checkpoints_are_retried_and_a_lost_lease_stops_processing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("consumers.kcl.processor.CHECKPOINT_BACKOFF_S", 0.0)
    log: list[str] = []
    p, rt = processor(log)
    p.process_records(batch(FakeCheckpointer(log, ["ThrottlingException"]), "10"))
    assert log[-1] == "checkpoint 10"
    p.process_records(batch(FakeCheckpointer(log, ["ShutdownException"]), "11"))
    assert p.lost and log[-1] == "apply 11..11"
    p.process_records(batch(FakeCheckpointer(log), "12"))  # lost: nothing more is applied
    assert rt.applied == ["10", "11"]


def test_shutdown_checkpoints_the_last_applied_record() -> None:
    log: list[str] = []
    p, _ = processor(log)
    p.process_records(batch(FakeCheckpointer(log), "10"))
    p.shutdown_requested(message({"action": "shutdownRequested"}, FakeCheckpointer(log)))
    assert log[-2:] == ["checkpoint 10", "close"]


def test_a_processor_whose_daemon_died_stops_without_a_checkpoint() -> None:
    from consumers.pipeline import Stopped

    log: list[str] = []
    p, rt = processor(log)

    def stopped(records: Sequence[ShardRecord]) -> None:
        raise Stopped

    rt.apply = stopped  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        p.process_records(batch(FakeCheckpointer(log), "10"))
    assert not any(line.startswith("checkpoint") for line in log)
