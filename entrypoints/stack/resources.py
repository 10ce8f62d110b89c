"""Create the AWS-side resources the pipeline expects on the emulators: the Kinesis stream,
the S3 bucket and the SQS dead-letter queue. Idempotent. (In AWS the CloudFormation
templates create them; the consumer creates its own lease table in both.)"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from gorse_cdc.retry import error_code
from gorse_cdc.settings import Settings


def kinesis_client(settings: Settings) -> Any:
    return boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))


def ensure_stream(settings: Settings, name: str | None = None, shards: int | None = None) -> str:
    name = name or settings.kinesis.stream_name
    client = kinesis_client(settings)
    try:
        client.create_stream(StreamName=name, ShardCount=shards or settings.kinesis.shard_count)
    except ClientError as e:
        if error_code(e) != "ResourceInUseException":
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return name
        time.sleep(0.2)
    raise TimeoutError(f"stream {name} not ACTIVE after 30 s")


def ensure_bucket(settings: Settings) -> str:
    s3 = boto3.client("s3", **settings.aws_client_kwargs("s3"))
    try:
        s3.create_bucket(Bucket=settings.s3.bucket)
    except ClientError as e:
        if error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return settings.s3.bucket


def ensure_queue(settings: Settings) -> str:
    sqs = boto3.client("sqs", **settings.aws_client_kwargs("sqs"))
    url: str = sqs.create_queue(QueueName=settings.dead_letters.sqs_queue)["QueueUrl"]
    return url


def ensure_all(settings: Settings) -> dict[str, str]:
    return {
        "kinesis stream": ensure_stream(settings),
        "events stream": ensure_stream(
            settings, settings.gateway.events_stream, settings.gateway.events_shard_count
        ),
        "s3 bucket": ensure_bucket(settings),
        "sqs dead-letter queue": ensure_queue(settings),
    }
