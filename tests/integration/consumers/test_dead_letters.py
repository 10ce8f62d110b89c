"""1,000 malformed records of several kinds mixed into the stream: every one lands in the real
dead-letter store (S3 on moto, or SQS) with its reason, shard and sequence number; every good
record is applied; the metric counts them."""

from __future__ import annotations

import random

import orjson
from aiobotocore.session import get_session

from consumers.deadletter_stores import S3DeadLetterStore
from consumers.metrics import Metrics
from consumers.verify import render, verify
from gorse_cdc.dms.record import DmsRecord, encode_record
from tests.integration.consumers.conftest import Env, running_consumer, wait_drained


def malformed(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    def data(table: str, row: dict[str, object], op: str = "insert") -> bytes:
        return encode_record(DmsRecord("data", op, "public", table, row))

    kinds = {
        "binary": lambda i: bytes([0xFF, 0xFE, i % 256]),
        "not-json": lambda i: b"{not json " + str(i).encode(),
        "json-array": lambda i: orjson.dumps([i]),
        "no-metadata": lambda i: orjson.dumps({"data": {"user_id": i}}),
        "unknown-operation": lambda i: orjson.dumps(
            {"data": {}, "metadata": {"record-type": "data", "operation": "upsert", "table-name": "users"}}
        ),
        "unknown-table": lambda i: data("payments", {"id": i}),
        "missing-key": lambda i: data("ratings", {"user_id": 1, "rating": 4, "rated_at": "2024-01-01"}),
        "bad-value": lambda i: data(
            "ratings", {"user_id": 1, "movie_id": 1, "rating": "five", "rated_at": "2024-01-01"}
        ),
        "id-gorse-rejects": lambda i: data("users", {"user_id": f"a/{i}", "age": 3}),
        "bad-date": lambda i: data("movies", {"movie_id": 10**6 + i, "title": "x", "release_date": "soon"}),
    }
    names = sorted(kinds)
    return [(names[i % len(names)], kinds[names[i % len(names)]](i)) for i in range(n)]


async def test_malformed_records_go_to_the_dead_letter_store(env: Env) -> None:
    rng = random.Random(5)
    good = env.feed.load(users=40, movies=50, ratings=300) + env.feed.activity(1000)
    bad = malformed(rng, 1000)
    stream: list[DmsRecord | bytes] = [*good, *(raw for _, raw in bad)]
    rng.shuffle(stream)  # shuffling good records breaks commit order: keep theirs
    it = iter(good)
    stream = [next(it) if isinstance(x, DmsRecord) else x for x in stream]
    for start in range(0, len(stream), 200):
        chunk = stream[start : start + 200]
        goods = [x for x in chunk if isinstance(x, DmsRecord)]
        bads = [x for x in chunk if isinstance(x, bytes)]
        env.feed.put(goods)
        env.feed.put(bads)
    metrics = Metrics()
    async with running_consumer(env.settings, metrics=metrics):
        await wait_drained(env)
    drift = await verify(env.settings)
    assert drift.total == 0, render(drift)

    s = env.settings
    async with get_session().create_client("s3", **s.aws_client_kwargs("s3")) as s3:
        store = S3DeadLetterStore(s3, s.s3.bucket, f"{s.dead_letters.s3_prefix}/{env.stream}")
        letters = await store.list()
    assert sorted(x.raw for x in letters) == sorted(raw for _, raw in bad)
    assert all(x.reason and x.shard_id and x.sequence_number.isdigit() for x in letters)
    by_table = {x.table for x in letters}
    assert {"payments", "ratings", "users", "movies"} <= by_table
    counted = sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "gorse_cdc_records_dead_lettered"
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    assert counted == 1000
