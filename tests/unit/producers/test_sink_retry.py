"""The producers' Kinesis and S3 sinks on failure: retried, or stopped with FatalError."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings
from producers.dms.kinesis_sink import KinesisSink
from producers.dms.s3_sink import S3Sink
from tests.unit.aws_errors import aws_error


class FakeKinesis:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[list[bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([r["Data"] for r in Records])
        if self.errors:
            raise self.errors.pop(0)
        return {"Records": [{"SequenceNumber": "1"} for _ in Records]}


def kinesis_sink(settings: Settings, fake: FakeKinesis, slept: list[float]) -> KinesisSink:
    sink = KinesisSink(settings, client=fake, sleep=slept.append, max_backoff_s=2.0)
    sink.add(b"a", "1")
    sink.add(b"b", "2")
    return sink


def test_kinesis_throttling_and_network_errors_are_retried(settings: Settings) -> None:
    fake = FakeKinesis(
        aws_error("ProvisionedThroughputExceededException", 400, op="PutRecords"),
        EndpointConnectionError(endpoint_url="http://kinesis"),
        aws_error("InternalFailure", 500, op="PutRecords"),
    )
    slept: list[float] = []
    assert kinesis_sink(settings, fake, slept).flush() == 2
    assert len(fake.calls) == 4 and fake.calls[-1] == [b"a", b"b"]
    assert len(slept) == 3 and all(0 <= s <= 2.0 for s in slept)


@pytest.mark.parametrize(
    "error",
    [
        aws_error("ResourceNotFoundException", 400, op="PutRecords"),
        aws_error("AccessDeniedException", 400, op="PutRecords"),
        aws_error("ValidationException", 400, op="PutRecords"),
        NoCredentialsError(),
    ],
)
def test_kinesis_what_no_retry_cures_stops_the_producer(settings: Settings, error: Exception) -> None:
    fake = FakeKinesis(error)
    slept: list[float] = []
    with pytest.raises(FatalError, match="PutRecords"):
        kinesis_sink(settings, fake, slept).flush()
    assert len(fake.calls) == 1 and slept == []


class FakeS3:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.puts: list[str] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.puts.append(Key)
        if self.errors:
            raise self.errors.pop(0)


def test_s3_put_retries_slow_down_and_lost_connections(settings: Settings) -> None:
    fake = FakeS3(aws_error("SlowDown", 503, op="PutObject"), OSError("reset"))
    slept: list[float] = []
    S3Sink(settings, client=fake, sleep=slept.append).put("k", b"x")
    assert fake.puts == ["k", "k", "k"] and len(slept) == 2


@pytest.mark.parametrize(("code", "status"), [("NoSuchBucket", 404), ("AccessDenied", 403)])
def test_s3_put_no_bucket_or_no_access_is_fatal(settings: Settings, code: str, status: int) -> None:
    fake = FakeS3(aws_error(code, status, op="PutObject"))
    with pytest.raises(FatalError, match=code):
        S3Sink(settings, client=fake, sleep=lambda s: None).put("k", b"x")
    assert fake.puts == ["k"]
