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
    sink = KinesisSink(settings, client=fake, sleep=slept.append, max_backoff_s=2.0, lanes=1)
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


def test_s3_writes_in_the_background_in_order_and_reports_how_far_they_got(settings: Settings) -> None:
    import threading
    from datetime import UTC, datetime

    from gorse_cdc.dms.tables import TableDefinition

    class GatedS3(FakeS3):
        def __init__(self, *errors: Exception) -> None:
            super().__init__(*errors)
            self.gate = threading.Event()

        def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
            assert self.gate.wait(5)
            super().put_object(Bucket, Key, Body)

    d = TableDefinition("public", "ratings", (("user_id", "int4"), ("rating", "int4")), ("user_id",))
    fake = GatedS3()
    sink = S3Sink(settings, client=fake, sleep=lambda s: None)
    sink.add_cdc(d, "I", [1, 5], datetime.now(UTC))
    sink.flush_in_background(covers=100)  # returns at once: S3 is slow, the caller goes on
    assert sink.written_lsn() == 0 and not sink.empty
    sink.add_cdc(d, "I", [2, 4], datetime.now(UTC))
    fake.gate.set()
    sink.flush_in_background(covers=200)  # waits for the first write: one at a time, in order
    assert sink.written_lsn() in (100, 200)
    sink.flush()
    assert sink.written_lsn() == 200 and sink.empty and sink.cdc_files == 2
    assert fake.puts == sorted(fake.puts) and len(fake.puts) == 2
    sink.close()


def test_a_failed_background_write_surfaces_and_moves_nothing(settings: Settings) -> None:
    from datetime import UTC, datetime

    from gorse_cdc.dms.tables import TableDefinition

    d = TableDefinition("public", "ratings", (("user_id", "int4"),), ("user_id",))
    sink = S3Sink(
        settings, client=FakeS3(aws_error("AccessDenied", 403, op="PutObject")), sleep=lambda s: None
    )
    sink.add_cdc(d, "I", [1], datetime.now(UTC))
    sink.flush_in_background(covers=100)
    with pytest.raises(FatalError, match="AccessDenied"):
        sink.flush()
    assert sink.written_lsn() == 0
    sink.close()
