"""The Kinesis target: PutRecords in order, retrying per kinesis_batch's rule until accepted.

Retries follow gorse_cdc.retry (what is retriable; capped full-jitter backoff, no limit in
attempts). A partial failure is retriable too: only what kinesis_batch.to_resend says is sent
again. A failure that no retry can cure (missing stream, access, validation) raises
FatalError: the producer has no dead-letter store and must not acknowledge the slot past it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gorse_cdc.errors import FatalError, RetriableError
from gorse_cdc.retry import FailedAttempt, RetryPolicy, classify, error_code, retry_sync
from gorse_cdc.settings import Settings
from producers.dms import metrics
from producers.dms.kinesis_batch import Entry, check_size, chunks, to_resend

log = logging.getLogger(__name__)
classify_put = functools.partial(classify, fatal={"ResourceNotFoundException"})


class PartialFailure(RetriableError):
    """Kinesis refused ``failed`` of the ``sent`` entries of one PutRecords call."""

    def __init__(self, failed: int, sent: int) -> None:
        super().__init__(f"PutRecords: {failed} of {sent} entries failed")
        self.failed = failed
        self.sent = sent


class KinesisSink:
    """add() buffers; flush() returns once Kinesis accepted every buffered entry."""

    def __init__(
        self,
        settings: Settings,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.stream = settings.kinesis.stream_name
        self.client = client or boto3.client(
            "kinesis",
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
            **settings.aws_client_kwargs("kinesis"),
        )
        self.sleep = sleep
        self.retry = RetryPolicy(base_s=0.1, cap_s=max_backoff_s)
        self.pending: list[Entry] = []
        self.sent = 0

    def add(self, data: bytes, partition_key: str) -> None:
        self.pending.append(check_size(Entry(data, partition_key)))

    def __len__(self) -> int:
        return len(self.pending)

    def flush(self) -> int:
        n = len(self.pending)
        for batch in chunks(self.pending):
            self._put(batch)
        self.pending = []
        self.sent += n
        return n

    def _put(self, batch: list[Entry]) -> None:
        unsent = batch

        def put() -> None:
            nonlocal unsent
            resp = self.client.put_records(
                StreamName=self.stream,
                Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in unsent],
            )
            failed = ["ErrorCode" in r for r in resp["Records"]]
            metrics.KINESIS_RECORDS.inc(len(unsent) - sum(failed))
            if any(failed):
                sent, unsent = len(unsent), to_resend(unsent, failed)
                raise PartialFailure(sum(failed), sent)

        def on_retry(attempt: FailedAttempt) -> None:
            e = attempt.error
            if isinstance(e, PartialFailure):
                log.info("PutRecords: %d of %d entries failed, resending", e.failed, e.sent)
                metrics.KINESIS_RETRIES.inc(e.failed)
            else:
                log.warning("PutRecords failed (%s), retrying %d records", error_code(e) or e, len(unsent))
                metrics.KINESIS_RETRIES.inc(len(unsent))

        try:
            retry_sync(put, policy=self.retry, classify=classify_put, on_retry=on_retry, sleep=self.sleep)
        except (ClientError, BotoCoreError) as e:
            code = error_code(e) or type(e).__name__
            raise FatalError(f"Kinesis PutRecords on {self.stream}: {code}: {e}") from None
