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
