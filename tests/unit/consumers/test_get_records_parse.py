"""consumers.kinesis.get_records: GetRecords parsed with orjson gives what botocore's parser
gives; errors and unexpected bodies still go through botocore. No Kinesis: the responses are
served to a real aiobotocore client through botocore's before-send event."""

from __future__ import annotations

import base64
import json
from datetime import UTC
from typing import Any

import botocore.session
import pytest
from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from hypothesis import given
from hypothesis import strategies as st

from consumers.kinesis.get_records import MEMBERS, parse_get_records, use_fast_parse
from consumers.kinesis.reader import ShardReader, StartPosition
from gorse_cdc.retry import RetryPolicy

OUTPUT = (
    botocore.session.get_session().get_service_model("kinesis").operation_model("GetRecords").output_shape
)


def body(records: list[dict[str, Any]], **top: Any) -> bytes:
    return json.dumps({"Records": records, **top}).encode()


def record(
    data: bytes, seq: str = "49590338271490256608559692538361571095921575989136588898", **kw: Any
) -> dict[str, Any]:
    return {
        "SequenceNumber": seq,
        "ApproximateArrivalTimestamp": 1764892800.123,
        "Data": base64.b64encode(data).decode(),
        "PartitionKey": "42",
        **kw,
    }


def botocore_parse(raw: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = create_parser("json").parse(
        {"status_code": 200, "headers": {}, "body": raw}, OUTPUT
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


def test_the_shape_has_one_blob_and_one_timestamp() -> None:
    """If botocore's model of GetRecordsOutput changes, the hand-written parse must too."""
    special: list[tuple[str, str]] = []

    def walk(shape: Any, path: str) -> None:
        if shape.type_name == "structure":
            for name, member in shape.members.items():
                walk(member, f"{path}.{name}")
        elif shape.type_name == "list":
            walk(shape.member, f"{path}[]")
        elif shape.type_name in ("blob", "timestamp"):
            special.append((path, shape.type_name))
        else:
            assert shape.type_name in ("string", "long", "integer"), (path, shape.type_name)

    walk(OUTPUT, "")
    assert tuple(OUTPUT.members) == MEMBERS
    assert special == [(".Records[].ApproximateArrivalTimestamp", "timestamp"), (".Records[].Data", "blob")]


CHILDREN = [
    {
        "ShardId": "shardId-000000000002",
        "ParentShards": ["shardId-000000000000"],
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "170141183460469231731687303715884105727"},
    }
]


@pytest.mark.parametrize(
    "raw",
    [
        body(
            [record(b'{"data": {"user_id": 1}}'), record(b"\x00\xff binary", seq="2", EncryptionType="NONE")],
            NextShardIterator="AAAA",
            MillisBehindLatest=1200,
        ),
        body([], NextShardIterator="AAAA", MillisBehindLatest=0),
        body([], NextShardIterator=None, MillisBehindLatest=0, ChildShards=CHILDREN),  # a closed shard's end
        body([record(b"x", ApproximateArrivalTimestamp=1764892800)]),  # an integer timestamp
        b'{"Records": [], "NextShardIterator": "A", "Unmodelled": 1}',
        b'{"Records": [{"Data": "QQ%=="}]}',  # non-base64 characters are skipped, as by b64decode
    ],
)
def test_equal_to_botocore(raw: bytes) -> None:
    assert parse_get_records(raw) == botocore_parse(raw)


@given(st.lists(st.binary(max_size=64), max_size=20), st.floats(0, 4e9, allow_nan=False))
def test_equal_to_botocore_for_any_data(payloads: list[bytes], ts: float) -> None:
    raw = body([record(p, seq=str(i), ApproximateArrivalTimestamp=ts) for i, p in enumerate(payloads)])
    assert parse_get_records(raw) == botocore_parse(raw)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"Records": 7}', b'{"Records": [7]}', b'{"Records": [{"Data": "QQ"}]}'],
)
def test_a_body_it_does_not_expect_is_left_to_botocore(raw: bytes) -> None:
    assert parse_get_records(raw) is None


# ---- through a real aiobotocore client --------------------------------------------------------


class Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


class Served:
    """Answers every request with (status, body) in turn, as botocore's before-send allows."""

    def __init__(self, *responses: tuple[int, bytes]) -> None:
        self.responses = list(responses)

    def __call__(self, request: Any, **_: Any) -> AioAWSResponse:
        status, data = self.responses.pop(0)
        headers = {"x-amzn-RequestId": "r", "Content-Type": "application/x-amz-json-1.1"}
        return AioAWSResponse(request.url, status, headers, Raw(data))


def kinesis_client() -> Any:
    return get_session().create_client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url="http://kinesis.invalid",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=AioConfig(retries={"total_max_attempts": 1}),  # no botocore retry
    )


async def call(served: Served, fast: bool) -> dict[str, Any]:
    async with kinesis_client() as client:
        client.meta.events.register("before-send.kinesis.GetRecords", served)
        if fast:
            use_fast_parse(client)
            use_fast_parse(client)  # idempotent
        resp: dict[str, Any] = await client.get_records(ShardIterator="it", Limit=10)
        return resp


async def test_a_client_returns_the_same_response() -> None:
    raw = body([record(b"one"), record(b"two", seq="3")], NextShardIterator="B", MillisBehindLatest=5)
    slow, fast = await call(Served((200, raw)), False), await call(Served((200, raw)), True)
    assert fast["ResponseMetadata"]["HTTPStatusCode"] == 200
    slow.pop("ResponseMetadata")
    fast.pop("ResponseMetadata")
    assert fast == slow and [r["Data"] for r in fast["Records"]] == [b"one", b"two"]
    # parsed here (botocore's timestamps are in the local zone)
    assert fast["Records"][0]["ApproximateArrivalTimestamp"].tzinfo is UTC


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "ExpiredIteratorException"),
        (400, "ProvisionedThroughputExceededException"),
        (400, "ResourceNotFoundException"),
        (500, "InternalFailure"),
    ],
)
async def test_errors_are_botocores(status: int, code: str) -> None:
    raw = json.dumps({"__type": code, "message": "m"}).encode()
    with pytest.raises(ClientError) as e:
        await call(Served((status, raw)), True)
    assert e.value.response["Error"]["Code"] == code


async def test_a_reader_reads_through_the_fast_parse() -> None:
    raw = body(
        [record(b"payload", seq="9")], NextShardIterator=None, MillisBehindLatest=0, ChildShards=CHILDREN
    )
    served = Served((200, b'{"ShardIterator": "it"}'), (200, raw))
    async with kinesis_client() as client:
        client.meta.events.register("before-send.kinesis.*", served)
        reader = ShardReader(client, "s", "shardId-0", StartPosition(), retry=RetryPolicy(0.001, 0.001))
        batch = await reader.next_batch(100)
    assert [(r.sequence_number, r.data, r.partition_key) for r in batch.records] == [("9", b"payload", "42")]
    arrived = batch.records[0].arrived_at
    assert arrived is not None and arrived.timestamp() == 1764892800.123
    assert batch.shard_ended and batch.child_shard_ids == ("shardId-000000000002",)
