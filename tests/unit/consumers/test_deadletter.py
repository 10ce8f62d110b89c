from __future__ import annotations

from consumers.deadletter import DeadLetter
from consumers.deadletter_stores import s3_key


def test_binary_raw_is_base64_and_round_trips() -> None:
    d = DeadLetter(b"\xff\x00bad", "not JSON", "DmsDecodeError", "shardId-1", "123", None, None, "s")
    doc = d.to_json()
    assert doc["raw_encoding"] == "base64"
    back = DeadLetter.from_json(doc)
    assert back.raw == d.raw and back.reason == "not JSON"
    assert s3_key("dead-letters/", d) == "dead-letters/s/shardId-1/123.json"


def test_text_raw_stays_readable() -> None:
    d = DeadLetter(b'{"x": 1}', "r", "E", "s1", "9", "users", "insert")
    assert d.to_json()["raw"] == '{"x": 1}'
    assert d.to_json()["table"] == "users"


async def test_sqs_batches_are_sized_in_bytes_not_characters() -> None:
    from consumers.deadletter import DeadLetter
    from consumers.deadletter_stores import SQS_BATCH_BYTES, SqsDeadLetterStore

    class RecordingSqs:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        async def get_queue_url(self, QueueName: str) -> dict[str, str]:
            return {"QueueUrl": "q"}

        async def send_message_batch(
            self, QueueUrl: str, Entries: list[dict[str, str]]
        ) -> dict[str, list[object]]:
            self.batches.append([e["MessageBody"] for e in Entries])
            return {"Failed": []}

    sqs = RecordingSqs()
    letters = [
        DeadLetter(("é" * 30_000).encode(), "bad", "X", "shard-1", str(i), source="s") for i in range(8)
    ]
    await SqsDeadLetterStore(sqs, "dlq").put(letters)
    assert sum(len(b) for b in sqs.batches) == 8
    for batch in sqs.batches:
        assert sum(len(body.encode()) for body in batch) <= SQS_BATCH_BYTES
