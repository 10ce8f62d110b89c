"""The lean PutRecords of the local DMS (producers.dms.kinesis_put) against a loopback HTTP
server standing in for the emulator: the request Kinesis expects, and failures as the same
botocore errors (so the one retry classification applies)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from gorse_cdc.retry import ErrorClass, classify
from producers.dms.kinesis_batch import Entry
from producers.dms.kinesis_put import LeanPutRecords, error_response, hash_key

pytestmark = pytest.mark.unit


class Emulator(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, bytes]] = []
    seen: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((dict(self.headers), body))
        status, answer = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def emulator() -> Iterator[str]:
    Emulator.answers, Emulator.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Emulator)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def lean(url: str) -> LeanPutRecords:
    return LeanPutRecords(url, "eu-west-1", Credentials("test", "test"))


def test_the_request_is_what_botocore_sends_and_the_answer_is_returned(emulator: str) -> None:
    answer = {
        "FailedRecordCount": 1,
        "Records": [{"SequenceNumber": "1", "ShardId": "s"}, {"ErrorCode": "X"}],
    }
    Emulator.answers.append((200, orjson.dumps(answer)))
    entries = [Entry('{"é":1}'.encode(), "7"), Entry(b"\x00\xff", "k")]
    put = lean(emulator)
    assert put("stream-1", entries) == answer
    headers, body = Emulator.seen[0]
    assert headers["X-Amz-Target"] == "Kinesis_20131202.PutRecords"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=test/")
    assert "/eu-west-1/kinesis/aws4_request" in headers["Authorization"]
    sent = orjson.loads(body)
    assert sent["StreamName"] == "stream-1"
    assert [(base64.b64decode(r["Data"]), r["PartitionKey"]) for r in sent["Records"]] == [
        (e.data, e.partition_key) for e in entries
    ]
    # the hash key Kinesis derives from the partition key itself: the same shard as without one
    for r in sent["Records"]:
        assert int(r["ExplicitHashKey"]) == int(hashlib.md5(r["PartitionKey"].encode()).hexdigest(), 16)
    put.close()


@pytest.mark.parametrize(
    ("status", "answer", "code", "kind"),
    [
        (
            400,
            {"__type": "ResourceNotFoundException", "message": "no stream"},
            "ResourceNotFoundException",
            None,
        ),
        (
            400,
            {"__type": "com.amazon#ProvisionedThroughputExceededException", "message": "slow down"},
            "ProvisionedThroughputExceededException",
            ErrorClass.RETRIABLE,
        ),
        (500, {"__type": "InternalFailure"}, "InternalFailure", ErrorClass.RETRIABLE),
        (503, None, "503", ErrorClass.RETRIABLE),
        (403, {"__type": "UnrecognizedClientException"}, "UnrecognizedClientException", ErrorClass.FATAL),
        (200, {"no": "records"}, "InvalidResponse", ErrorClass.PERMANENT),
    ],
)
def test_failures_are_botocore_client_errors(
    emulator: str, status: int, answer: Any, code: str, kind: ErrorClass | None
) -> None:
    Emulator.answers.append((status, b"<html>busy</html>" if answer is None else orjson.dumps(answer)))
    with pytest.raises(ClientError) as caught:
        lean(emulator)("s", [Entry(b"x", "1")])
    e = caught.value
    assert e.response["Error"]["Code"] == code
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert e.operation_name == "PutRecords"
    if kind is not None:
        assert classify(e) == kind


def test_error_response_keeps_the_message() -> None:
    got = error_response(400, {"__type": "ValidationException", "message": "too long"}, b"")
    assert got["Error"] == {"Code": "ValidationException", "Message": "too long"}
    assert error_response(502, None, b"bad gateway")["Error"] == {"Code": "502", "Message": "bad gateway"}


def test_the_hash_key_is_kinesis_md5_of_the_partition_key() -> None:
    assert hash_key("1") == str(int("c4ca4238a0b923820dcc509a6f75849b", 16))
    assert hash_key("Café") == str(int(hashlib.md5("Café".encode()).hexdigest(), 16))
    assert 0 <= int(hash_key("x" * 256)) < 2**128
