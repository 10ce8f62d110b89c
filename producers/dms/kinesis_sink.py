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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gorse_cdc.errors import FatalError, RetriableError
from gorse_cdc.retry import FailedAttempt, RetryPolicy, classify, error_code, retry_sync
from gorse_cdc.settings import Settings
from producers.dms import metrics
from producers.dms.kinesis_batch import MAX_RECORDS, Entry, check_size, chunks, lanes, to_resend
from producers.dms.kinesis_put import LeanPutRecords, PutRecords, client_put_records

log = logging.getLogger(__name__)
classify_put = functools.partial(classify, fatal={"ResourceNotFoundException"})


class PartialFailure(RetriableError):
    """Kinesis refused ``failed`` of the ``sent`` entries of one PutRecords call."""

    def __init__(self, failed: int, sent: int) -> None:
        super().__init__(f"PutRecords: {failed} of {sent} entries failed")
        self.failed = failed
        self.sent = sent


class KinesisSink:
    """add() buffers; flush() returns once Kinesis accepted every buffered entry. ``lanes``
    PutRecords calls run at once (kinesis_batch.lanes: per-key order kept)."""

    def __init__(
        self,
        settings: Settings,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        max_backoff_s: float = 5.0,
        lanes: int = 4,
    ) -> None:
        self.stream = settings.kinesis.stream_name
        self.client = client or boto3.client(
            "kinesis",
            config=Config(
                # the sink checks sizes itself (kinesis_batch.check_size) and Kinesis validates
                # again: botocore's own check of every entry cost ~3 us a record
                parameter_validation=False,
                retries={"max_attempts": 1},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=max(10, lanes),
            ),
            **settings.aws_client_kwargs("kinesis"),
        )
        # against the local emulator PutRecords skips botocore's per-entry (de)serialization
        self._lean = LeanPutRecords.for_settings(settings, max(10, lanes)) if client is None else None
        self.put_records: PutRecords = self._lean or client_put_records(self.client)
        self.sleep = sleep
        self.retry = RetryPolicy(base_s=0.1, cap_s=max_backoff_s)
        self.pending: list[Entry] = []
        self.sent = 0
        self.lanes = max(1, lanes)
        self._pool = (
            ThreadPoolExecutor(self.lanes, thread_name_prefix="kinesis-put") if self.lanes > 1 else None
        )
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="kinesis-send")
        self._inflight: Future[None] | None = None
        self._inflight_covers = self._inflight_n = 0
        self._accepted_lsn = 0

    def add(self, data: bytes, partition_key: str) -> None:
        self.pending.append(check_size(Entry(data, partition_key)))

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def full(self) -> bool:
        """Enough buffered for a full PutRecords call in every lane."""
        return len(self.pending) >= MAX_RECORDS * self.lanes

    def flush(self) -> int:
        """Send everything buffered (after any send in flight); returns once all is accepted."""
        self._wait()
        entries, self.pending = self.pending, []
        self._send(entries)
        self.sent += len(entries)
        return len(entries)

    def flush_in_background(self, covers: int) -> None:
        """Hand everything buffered to the sender thread and go on decoding; once accepted,
        accepted_lsn() is at least ``covers``. Waits for the previous handover first: sends
        run one at a time, in order (each one in lanes)."""
        self._wait()
        if self.pending:
            entries, self.pending = self.pending, []
            self._inflight, self._inflight_covers = self._sender.submit(self._send, entries), covers
            self._inflight_n = len(entries)

    @property
    def busy(self) -> bool:
        """A background send has not finished yet."""
        return self._inflight is not None and not self._inflight.done()

    @property
    def idle(self) -> bool:
        """Nothing buffered, nothing in flight."""
        return not self.pending and self._inflight is None

    def accepted_lsn(self) -> int:
        """How far finished sends cover; raises a send's failure (FatalError)."""
        if self._inflight is not None and self._inflight.done():
            self._wait()
        return self._accepted_lsn

    def _wait(self) -> None:
        flight, self._inflight = self._inflight, None
        if flight is not None:
            flight.result()
            self.sent += self._inflight_n
            self._accepted_lsn = max(self._accepted_lsn, self._inflight_covers)

    def _send(self, entries: list[Entry]) -> None:
        split = lanes(entries, self.lanes) if self._pool is not None else [entries]
        if len(split) <= 1:
            for batch in chunks(entries):
                self._put(batch)
            return
        assert self._pool is not None
        futures = [self._pool.submit(self._send_lane, lane) for lane in split]
        wait(futures)  # every lane ended (accepted or failed) before a failure is raised
        for f in futures:
            f.result()

    def _send_lane(self, lane: list[Entry]) -> None:
        for batch in chunks(lane):
            self._put(batch)

    def close(self) -> None:
        self._sender.shutdown(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._lean is not None:
            self._lean.close()

    def _put(self, batch: list[Entry]) -> None:
        unsent = batch

        def put() -> None:
            nonlocal unsent
            resp = self.put_records(self.stream, unsent)
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
