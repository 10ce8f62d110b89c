"""The Kinesis target: PutRecords in order, retrying per kinesis_batch's rule until accepted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings
from producers.dms import metrics
from producers.dms.kinesis_batch import Entry, check_size, chunks, to_resend

log = logging.getLogger(__name__)
FATAL_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException", "ValidationException"})


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
        self.max_backoff_s = max_backoff_s
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
        attempt = 0
        while batch:
            try:
                resp = self.client.put_records(
                    StreamName=self.stream,
                    Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in batch],
                )
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code in FATAL_CODES:
                    raise FatalError(f"Kinesis PutRecords on {self.stream}: {code}: {e}") from None
                failed = [True] * len(batch)
                log.warning("PutRecords failed (%s), retrying %d records", code, len(batch))
            except BotoCoreError as e:
                failed = [True] * len(batch)
                log.warning("PutRecords failed (%s), retrying %d records", e, len(batch))
            else:
                failed = ["ErrorCode" in r for r in resp["Records"]]
                metrics.KINESIS_RECORDS.inc(len(batch) - sum(failed))
                if not any(failed):
                    return
                log.info("PutRecords: %d of %d entries failed, resending", sum(failed), len(batch))
            metrics.KINESIS_RETRIES.inc(sum(failed))
            batch = to_resend(batch, failed)
            attempt += 1
            self.sleep(min(self.max_backoff_s, 0.05 * 2 ** min(attempt, 8)))
