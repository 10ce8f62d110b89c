"""A re-drive never sets a key back (ARCHITECTURE.md, invariant 7), on the real stack: the local
DMS writes Kinesis and the S3 archive, the live consumer applies the stream to the real Gorse,
the erasure log is the DynamoDB table the consumer writes. A letter is the raw record the
stream carried, stored as the consumer stores a record it could not apply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import boto3
import orjson
import psycopg

from consumers.deadletter import DeadLetter
from consumers.deadletter_stores import s3_key
from consumers.replay.runner import Replay
from entrypoints.stack.components import Stack
from gorse_cdc.dms.record import DmsDecodeError, decode_record
from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings
from producers.dms.runner import run_dms
from tests.integration.consumers.conftest import drained, leases, running_consumer
from tests.integration.replay.test_replay import erase, last_sequences, wait_for


def stream_record(settings: Settings, match: Callable[[Any], bool]) -> tuple[str, str, bytes]:
    """(shard, sequence number, data) of the last record on the stream that ``match``es."""
    k = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
    found: tuple[str, str, bytes] | None = None
    for shard in k.list_shards(StreamName=settings.kinesis.stream_name)["Shards"]:
        it = k.get_shard_iterator(
            StreamName=settings.kinesis.stream_name,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10_000)
            for rec in r["Records"]:
                try:
                    dms = decode_record(rec["Data"])
                except DmsDecodeError:  # refresh records
                    continue
                if dms.is_data and match(dms):
                    found = (shard["ShardId"], rec["SequenceNumber"], rec["Data"])
            if not r["Records"] and not r.get("MillisBehindLatest"):
                break
            it = r.get("NextShardIterator")
    assert found is not None, "no such record on the stream"
    return found


def store_letter(settings: Settings, shard: str, sequence: str, raw: bytes, table: str, op: str) -> str:
    """Put a letter into the S3 dead-letter store as the consumer does; its key."""
    letter = DeadLetter(
        raw, "refused by Gorse (test)", "PermanentRecordError", shard, sequence, table, op, "live"
    )
    key = s3_key(settings.dead_letters.s3_prefix, letter)
    s3 = boto3.client("s3", **settings.aws_client_kwargs("s3"))
    s3.put_object(Bucket=settings.s3.bucket, Key=key, Body=letter.to_bytes())
    return key


def stored_keys(settings: Settings) -> list[str]:
    s3 = boto3.client("s3", **settings.aws_client_kwargs("s3"))
    resp = s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix=settings.dead_letters.s3_prefix + "/")
    return [o["Key"] for o in resp.get("Contents", [])]


def sql(settings: Settings, statement: str, *args: object) -> Any:
    with psycopg.connect(settings.source_dsn, autocommit=True) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchone() if cur.description else None


async def drain(settings: Settings) -> None:
    tips = last_sequences(settings)
    table = settings.leases.table
    await wait_for(lambda: drained(settings, table, tips), f"not drained: {leases(settings, table)}")


async def test_a_redriven_movie_update_never_sets_back_a_later_update(history: Settings) -> None:
    """Update 1 of a movie is dead-lettered; update 2 is applied by the live consumer; the
    re-drive (after the fix) must leave update 2, not put update 1 back."""
    Stack(history).reset_gorse()
    movie = sql(history, "SELECT movie_id FROM movies ORDER BY movie_id LIMIT 1")[0]
    async with running_consumer(history):
        sql(history, "UPDATE movies SET title = 'redrive: first' WHERE movie_id = %s", movie)
        await asyncio.to_thread(run_dms, history, until_idle=True, idle_s=1.0)
        first = stream_record(
            history, lambda d: d.table == "movies" and d.data.get("title") == "redrive: first"
        )
        key = store_letter(history, *first, "movies", "update")
        sql(history, "UPDATE movies SET title = 'redrive: second' WHERE movie_id = %s", movie)
        await asyncio.to_thread(run_dms, history, until_idle=True, idle_s=1.0)
        await drain(history)
    async with GorseClient.from_settings(history) as g:
        item = await g.get_item(str(movie))
        assert item is not None and item.comment == "redrive: second"

    summary = await Replay(history, progress=False).dead_letters()

    async with GorseClient.from_settings(history) as g:
        item = await g.get_item(str(movie))
    assert item is not None and item.comment == "redrive: second", "the re-drive set the movie back"
    assert summary.superseded_later == 1 and summary.redriven == 0
    assert key not in stored_keys(history)  # superseded: it leaves the store
    assert "1 by a later change" in summary.line()


async def test_a_redriven_letter_of_an_erased_user_never_brings_the_user_back(history: Settings) -> None:
    """A rating of a user is dead-lettered; the user is erased (the live consumer deletes the
    user in Gorse and logs the erasure); the re-drive must not bring the user back."""
    Stack(history).reset_gorse()
    user = sql(history, "SELECT user_id FROM ratings GROUP BY user_id ORDER BY count(*), user_id LIMIT 1")[0]
    letter = stream_record(
        history,
        lambda d: d.table == "ratings" and str(d.data.get("user_id")) == str(user) and not d.is_delete,
    )
    key = store_letter(history, *letter, "ratings", "insert")
    async with running_consumer(history):
        await asyncio.to_thread(erase, history, user)
        await asyncio.to_thread(run_dms, history, until_idle=True, idle_s=1.0)
        await drain(history)
    async with GorseClient.from_settings(history) as g:
        assert await g.get_user(str(user)) is None

    summary = await Replay(history, progress=False).dead_letters()

    async with GorseClient.from_settings(history) as g:
        assert await g.get_user(str(user)) is None, "the re-drive brought an erased user back"
        assert not [f for f in await g.export_feedback() if f.user_id == str(user)]
    assert summary.superseded_erased == 1 and summary.redriven == 0
    assert key not in stored_keys(history)
    assert str(user) not in orjson.dumps(summary.line()).decode()


async def test_a_later_change_not_in_the_archive_yet_is_found_on_the_stream(history: Settings) -> None:
    """DMS writes the archive every CdcMaxBatchInterval: the newest changes may be on the
    stream only. The archive file holding update 2 is removed (an archive that lags): the
    re-drive finds update 2 on the stream and still leaves it."""
    Stack(history).reset_gorse()
    movie = sql(history, "SELECT movie_id FROM movies ORDER BY movie_id DESC LIMIT 1")[0]
    async with running_consumer(history):
        sql(history, "UPDATE movies SET title = 'lagging: first' WHERE movie_id = %s", movie)
        await asyncio.to_thread(run_dms, history, until_idle=True, idle_s=1.0)
        first = stream_record(
            history, lambda d: d.table == "movies" and d.data.get("title") == "lagging: first"
        )
        store_letter(history, *first, "movies", "update")
        sql(history, "UPDATE movies SET title = 'lagging: second' WHERE movie_id = %s", movie)
        await asyncio.to_thread(run_dms, history, until_idle=True, idle_s=1.0)
        await drain(history)
    s3 = boto3.client("s3", **history.aws_client_kwargs("s3"))
    prefix = f"{history.s3.prefix}/{history.source.schema_name}/movies/"
    removed = 0
    for o in s3.list_objects_v2(Bucket=history.s3.bucket, Prefix=prefix).get("Contents", []):
        if b"lagging: second" in s3.get_object(Bucket=history.s3.bucket, Key=o["Key"])["Body"].read():
            s3.delete_object(Bucket=history.s3.bucket, Key=o["Key"])
            removed += 1
    assert removed == 1
    async with GorseClient.from_settings(history) as g:
        item = await g.get_item(str(movie))
        assert item is not None and item.comment == "lagging: second"

    summary = await Replay(history, progress=False).dead_letters()

    async with GorseClient.from_settings(history) as g:
        item = await g.get_item(str(movie))
    assert item is not None and item.comment == "lagging: second", "the re-drive set the movie back"
    assert summary.superseded_later == 1 and summary.redriven == 0
