"""Prometheus metrics of the local DMS (served with --metrics-port) and its progress line."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge

log = logging.getLogger("producers.dms")

CHANGES = Counter("gorse_cdc_dms_changes_total", "row changes captured", ["table", "operation"])
TRANSACTIONS = Counter("gorse_cdc_dms_transactions_total", "committed transactions decoded")
KINESIS_RECORDS = Counter("gorse_cdc_dms_kinesis_records_total", "records Kinesis accepted")
KINESIS_RETRIES = Counter("gorse_cdc_dms_kinesis_retried_total", "PutRecords entries sent again")
S3_FILES = Counter("gorse_cdc_dms_s3_files_total", "files written to S3", ["kind"])
S3_ROWS = Counter("gorse_cdc_dms_s3_rows_total", "rows written to S3", ["kind"])
CONFIRMED_LSN = Gauge("gorse_cdc_dms_confirmed_flush_lsn", "LSN acknowledged to the slot")
LAG_BYTES = Gauge("gorse_cdc_dms_lag_bytes", "server WAL end minus acknowledged LSN")
IGNORED = Counter("gorse_cdc_dms_ignored_total", "messages not replicated (truncate, ...)", ["kind"])


class ChangeTally:
    """CHANGES counted in a plain dict on the hot path, added to the counter by publish()
    (a prometheus_client inc takes a lock: ~0.3 us a change)."""

    OPERATIONS = {"I": "insert", "U": "update", "D": "delete"}

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, table: str, action: str) -> None:
        key = (table, action)
        self.counts[key] = self.counts.get(key, 0) + 1

    def publish(self) -> None:
        counts, self.counts = self.counts, {}
        for (table, action), n in counts.items():
            CHANGES.labels(table, self.OPERATIONS[action]).inc(n)


class Progress:
    """Logs one line every `every_s` seconds: changes, rate, acked LSN, lag."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.started = self.last = time.monotonic()
        self.changes = 0
        self._last_changes = 0

    def tick(self, acked: str, lag_bytes: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        rate = (self.changes - self._last_changes) / max(now - self.last, 1e-9)
        log.info(
            "dms: %d changes captured (%.0f/s), acked %s, lag %d bytes",
            self.changes,
            rate,
            acked,
            lag_bytes,
        )
        self.last, self._last_changes = now, self.changes
