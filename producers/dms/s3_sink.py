"""The S3 target: LOAD files during the full load, CDC files by interval or size, the table
definitions a reader needs (DMS CSVs have no header) and the task's state object.

CDC rows are buffered for every table; flush() writes one file per table that has rows and
returns only once S3 accepted them all. The runner acknowledges the slot only up to the last
transaction that flush() covered, so a crash loses nothing (rows may be written twice).

flush_in_background() hands the buffered rows to one writer thread instead, so a slow S3 does
not hold up the Kinesis target (AWS DMS runs the two targets as separate tasks). Writes run
one at a time in the order they were handed over; written_lsn() tells how far they got.
A put is retried under gorse_cdc.retry (capped full-jitter backoff, no limit in attempts)
until S3 takes it; a failure no retry can cure (no bucket, no access) raises FatalError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gorse_cdc.dms.s3files import (
    cdc_file_key,
    encode_csv,
    format_timestamp_column,
    load_file_key,
    state_key,
    table_definition_key,
)
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError
from gorse_cdc.retry import FailedAttempt, RetryPolicy, error_code, retry_sync
from gorse_cdc.settings import Settings
from producers.dms import metrics
from producers.dms.values import to_csv_value

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
LOAD_FILE_ROWS = 200_000  # a new LOAD file every this many rows (DMS splits by MaxFileSize)
PUT_RETRY = RetryPolicy(base_s=0.2, cap_s=5.0)


@dataclass
class _TableBuffer:
    definition: TableDefinition
    rows: list[list[Any]] = field(default_factory=list)
    last_key: str = ""
    # CdcMinFileSize: the rows' sizes are measured for the first SIZE_EXACT_ROWS rows of each
    # file, then every SIZE_SAMPLE_EVERY-th row; the others count as the measured mean
    measured_rows: int = 0
    measured_bytes: int = 0


SIZE_EXACT_ROWS = 64
SIZE_SAMPLE_EVERY = 16
_CSV_AS_IS = frozenset({int, str, float, bool, type(None)})


class S3Sink:
    def __init__(
        self,
        settings: Settings,
        client: Any = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        s = settings.s3
        self.bucket, self.prefix = s.bucket, s.prefix
        self.gzip = s.compression == "GZIP"
        self.data_format = s.data_format
        self.date_partition = s.date_partition
        self.timestamp_column = s.timestamp_column
        self.max_interval_s = s.cdc_max_batch_interval_s
        self.min_bytes = s.cdc_min_file_size_kb * 1024
        self.client = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 3}), **settings.aws_client_kwargs("s3")
        )
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep
        self.buffers: dict[tuple[str, str], _TableBuffer] = {}
        self.buffered_bytes = 0
        self.buffered_rows = 0
        self.first_buffered_at: float | None = None
        self.cdc_files = 0  # CDC files written so far
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="s3-writer")
        self._inflight: Future[int] | None = None
        self._inflight_covers = 0
        self._written_lsn = 0

    # ---- plumbing --------------------------------------------------------------------------
    def put(self, key: str, body: bytes) -> None:
        def on_retry(failed: FailedAttempt) -> None:
            log.warning("S3 put %s failed (%s), retry %d", key, failed.error, failed.number)

        try:
            retry_sync(
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=body),
                policy=PUT_RETRY,
                on_retry=on_retry,
                sleep=self.sleep,
            )
        except (ClientError, BotoCoreError) as e:
            code = error_code(e) or type(e).__name__
            raise FatalError(f"S3 put s3://{self.bucket}/{key}: {code}") from None

    def get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return body
        except ClientError as e:
            if error_code(e) in ("NoSuchKey", "404"):
                return None
            raise

    def _encode(self, definition: TableDefinition, rows: Sequence[Sequence[Any]], has_op: bool) -> bytes:
        if self.data_format == "parquet":
            from gorse_cdc.dms.parquet import encode_parquet

            return encode_parquet(rows, definition, has_op=has_op, timestamp_column=self.timestamp_column)
        return encode_csv(rows, gzip_=self.gzip)

    def _lead(self, op: str | None, when: datetime) -> list[Any]:
        lead: list[Any] = [op] if op else []
        if self.timestamp_column:
            lead.append(format_timestamp_column(when))
        return lead

    # ---- definitions and state ---------------------------------------------------------------
    def write_definition(self, definition: TableDefinition) -> None:
        key = table_definition_key(self.prefix, definition.schema, definition.table)
        self.put(key, definition.to_json())

    def read_state(self, task: str) -> dict[str, Any]:
        raw = self.get(state_key(self.prefix, task))
        return dict(orjson.loads(raw)) if raw else {}

    def write_state(self, task: str, state: dict[str, Any]) -> None:
        self.put(state_key(self.prefix, task), orjson.dumps(state, option=orjson.OPT_INDENT_2))

    # ---- full load ---------------------------------------------------------------------------
    def write_load_file(self, definition: TableDefinition, n: int, rows: Sequence[Sequence[Any]]) -> str:
        now = self.clock()
        lines = [self._lead(None, now) + [to_csv_value(v) for v in r] for r in rows]
        key = load_file_key(self.prefix, definition.schema, definition.table, n, self.data_format, self.gzip)
        self.put(key, self._encode(definition, lines, has_op=False))
        metrics.S3_FILES.labels("load").inc()
        metrics.S3_ROWS.labels("load").inc(len(rows))
        return key

    # ---- CDC ---------------------------------------------------------------------------------
    def add_cdc(self, definition: TableDefinition, op: str, values: Sequence[Any], when: datetime) -> None:
        k = (definition.schema, definition.table)
        buf = self.buffers.get(k)
        if buf is None or (buf.definition is not definition and buf.definition != definition):
            if buf is not None and buf.rows:
                self.flush()  # one file = one shape: flush before the definition changes
            last = buf.last_key if buf else ""
            buf = self.buffers[k] = _TableBuffer(definition, last_key=last)
        row = self._lead(op, when)
        row += [v if type(v) in _CSV_AS_IS else to_csv_value(v) for v in values]
        rows = buf.rows
        rows.append(row)
        self.buffered_rows += 1
        n = len(rows)
        if n <= SIZE_EXACT_ROWS or n % SIZE_SAMPLE_EVERY == 0:
            size = 8 + sum(len(str(v)) for v in row)
            buf.measured_rows += 1
            buf.measured_bytes += size
            self.buffered_bytes += size
        else:
            self.buffered_bytes += buf.measured_bytes // buf.measured_rows
        if self.first_buffered_at is None:
            self.first_buffered_at = time.monotonic()

    @property
    def empty(self) -> bool:
        """Nothing buffered and nothing being written."""
        return self.buffered_rows == 0 and self._inflight is None

    def due(self) -> bool:
        """Interval or size reached (CdcMaxBatchInterval / CdcMinFileSize)."""
        if self.first_buffered_at is None:
            return False
        age = time.monotonic() - self.first_buffered_at
        return age >= self.max_interval_s or self.buffered_bytes >= self.min_bytes

    def flush(self) -> int:
        """Write every table's buffered rows, one file each (after any write in flight);
        return the number of files."""
        self._wait()
        files = self._write(self._take())
        self.cdc_files += files
        return files

    def flush_in_background(self, covers: int) -> None:
        """Hand the buffered rows to the writer thread; once written, written_lsn() is at least
        ``covers``. Waits for the previous handover's write first (back-pressure)."""
        self._wait()
        taken = self._take()
        if taken:
            self._inflight, self._inflight_covers = self._writer.submit(self._write, taken), covers

    def written_lsn(self) -> int:
        """The LSN every finished background write covers; raises a write's failure."""
        if self._inflight is not None and self._inflight.done():
            self._wait()
        return self._written_lsn

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    def _wait(self) -> None:
        flight, self._inflight = self._inflight, None
        if flight is not None:
            self.cdc_files += flight.result()  # FatalError from the writer is raised here
            self._written_lsn = max(self._written_lsn, self._inflight_covers)

    def _take(self) -> list[tuple[_TableBuffer, list[list[Any]]]]:
        taken = [(buf, buf.rows) for buf in self.buffers.values() if buf.rows]
        for buf, _ in taken:
            buf.rows = []
        self.buffered_rows = self.buffered_bytes = 0
        self.first_buffered_at = None
        return taken

    def _write(self, taken: list[tuple[_TableBuffer, list[list[Any]]]]) -> int:
        now = self.clock()
        for buf, rows in taken:
            d = buf.definition
            key = self._cdc_key(d, now)
            while key <= buf.last_key:  # two files in one millisecond: keep names unique, ordered
                now += timedelta(milliseconds=1)
                key = self._cdc_key(d, now)
            self.put(key, self._encode(d, rows, has_op=True))
            metrics.S3_FILES.labels("cdc").inc()
            metrics.S3_ROWS.labels("cdc").inc(len(rows))
            buf.last_key = key
        return len(taken)

    def _cdc_key(self, d: TableDefinition, when: datetime) -> str:
        return cdc_file_key(
            self.prefix,
            d.schema,
            d.table,
            when,
            date_partition=self.date_partition,
            data_format=self.data_format,
            gzip_=self.gzip,
        )
