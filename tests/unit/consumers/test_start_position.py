"""StartPosition from a lease checkpoint, and the GetShardIterator arguments it makes."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.kinesis.reader import StartPosition


def test_from_checkpoint() -> None:
    assert StartPosition.from_checkpoint(None) == StartPosition("TRIM_HORIZON")
    assert StartPosition.from_checkpoint("") == StartPosition("TRIM_HORIZON")
    assert StartPosition.from_checkpoint("TRIM_HORIZON") == StartPosition("TRIM_HORIZON")
    assert StartPosition.from_checkpoint("LATEST") == StartPosition("LATEST")
    assert StartPosition.from_checkpoint("AT_TIMESTAMP") == StartPosition("AT_TIMESTAMP")
    assert StartPosition.from_checkpoint("4960") == StartPosition("AFTER_SEQUENCE_NUMBER", "4960")


def test_api_kwargs() -> None:
    assert StartPosition().api_kwargs() == {"ShardIteratorType": "TRIM_HORIZON"}
    assert StartPosition("AT_SEQUENCE_NUMBER", "7").api_kwargs() == {
        "ShardIteratorType": "AT_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "7",
    }
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert StartPosition("AT_TIMESTAMP", timestamp=at).api_kwargs() == {
        "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": at,
    }
