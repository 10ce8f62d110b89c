"""The AWS-side emulators and PostgreSQL logical replication, through the real clients."""

from __future__ import annotations

import uuid

import orjson
import psycopg
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings


async def test_kinesis_put_and_get_with_aiobotocore(stack: object, settings: Settings) -> None:
    name = ensure_stream(settings, f"itest-{uuid.uuid4().hex[:8]}", shards=1)
    async with get_session().create_client("kinesis", **settings.aws_client_kwargs("kinesis")) as k:
        entries = [{"Data": orjson.dumps({"n": i}), "PartitionKey": f"k{i % 7}"} for i in range(500)]
        resp = await k.put_records(StreamName=name, Records=entries)
        assert resp["FailedRecordCount"] == 0
        shard = (await k.list_shards(StreamName=name))["Shards"][0]["ShardId"]
        it = (await k.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"))[
            "ShardIterator"
        ]
        got: list[int] = []
        while len(got) < 500:
            r = await k.get_records(ShardIterator=it, Limit=1000)
            got += [orjson.loads(rec["Data"])["n"] for rec in r["Records"]]
            it = r["NextShardIterator"]
            if not r["Records"]:
                break
        assert got == list(range(500))
        await k.delete_stream(StreamName=name)


async def test_s3_object_and_dynamodb_conditional_write(stack: object, settings: Settings) -> None:
    session = get_session()
    async with session.create_client("s3", **settings.aws_client_kwargs("s3")) as s3:
        key = f"itest/{uuid.uuid4().hex}.txt"
        await s3.put_object(Bucket=settings.s3.bucket, Key=key, Body=b"hello")
        obj = await s3.get_object(Bucket=settings.s3.bucket, Key=key)
        assert await obj["Body"].read() == b"hello"
    async with session.create_client("dynamodb", **settings.aws_client_kwargs("dynamodb")) as ddb:
        table = f"itest-{uuid.uuid4().hex[:8]}"
        await ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        item = {"leaseKey": {"S": "shard-0"}, "leaseCounter": {"N": "1"}}
        await ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
        with pytest.raises(ClientError) as info:
            await ddb.put_item(
                TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)"
            )
        assert info.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        await ddb.update_item(
            TableName=table,
            Key={"leaseKey": {"S": "shard-0"}},
            UpdateExpression="SET leaseCounter = :new",
            ConditionExpression="leaseCounter = :old",
            ExpressionAttributeValues={":old": {"N": "1"}, ":new": {"N": "2"}},
        )
        await ddb.delete_table(TableName=table)


def test_logical_slot_returns_insert_as_wal2json(stack: object, settings: Settings) -> None:
    slot = f"itest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.source_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
        try:
            conn.execute(
                "INSERT INTO movies (movie_id, title, release_date, genres) VALUES (-42, 'Slot Test', "
                "'1999-03-31', 'Sci-Fi')"
            )
            conn.execute("DELETE FROM movies WHERE movie_id = -42")
            rows = conn.execute(
                "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, 'format-version', '2', "
                "'include-pk', '1')",
                (slot,),
            ).fetchall()
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    changes = [orjson.loads(r[0]) for r in rows]
    inserts = [c for c in changes if c["action"] == "I" and c["table"] == "movies"]
    assert len(inserts) == 1
    cols = {c["name"]: c["value"] for c in inserts[0]["columns"]}
    assert cols == {"movie_id": -42, "title": "Slot Test", "release_date": "1999-03-31", "genres": "Sci-Fi"}
    assert [c["action"] for c in changes if c["action"] in "IUD"] == ["I", "D"]
