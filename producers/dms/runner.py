"""The local DMS task: slot -> (full load) -> CDC to Kinesis and S3, at least once.

Acknowledgement rule (what DMS guarantees, and what a crash test checks): the slot's
confirmed flush LSN moves to the end of a transaction only after every record of it was
accepted by Kinesis (PutRecords) AND written to S3 (a CDC file). S3 files are written by
interval or size, so the acknowledgement stays behind the last S3 write; after a crash
PostgreSQL resends every transaction past the acknowledged point (duplicates, never gaps).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

import psycopg

from gorse_cdc.dms.record import encode_record
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError
from gorse_cdc.mapping.mapper import Mapper
from gorse_cdc.mapping.spec import load_spec
from gorse_cdc.settings import Settings
from producers.dms import metrics
from producers.dms.catalog import read_definitions
from producers.dms.full_load import LoadTargets, full_load
from producers.dms.kinesis_sink import KinesisSink
from producers.dms.records import RecordBuilder, definition_from_change, encode, matches
from producers.dms.s3_sink import S3Sink
from producers.dms.slot import ReplicationStream, check_slot_name, check_source, source_errors
from producers.dms.wal2json import (
    Begin,
    Commit,
    RowChange,
    Truncate,
    Wal2JsonError,
    format_lsn,
    parse_lsn,
    parse_message,
    plugin_options,
)

log = logging.getLogger("producers.dms")
Mode = Literal["auto", "cdc", "full-load-and-cdc"]


@dataclass
class DmsSummary:
    mode: str
    loaded_tables: int = 0
    changes: int = 0
    transactions: int = 0
    kinesis_records: int = 0
    s3_cdc_files: int = 0
    acked_lsn: str = "0/0"


def record_builder(settings: Settings) -> RecordBuilder:
    """The DMS record builder of either source: the mapping's partition keys, the task's options."""
    return RecordBuilder(
        Mapper(load_spec(settings.mapping.path), settings.mapping.zip_privacy),
        transaction_details=settings.kinesis.include_transaction_details,
        before_image=settings.kinesis.include_before_image,
    )


class LocalDms:
    def __init__(
        self,
        settings: Settings,
        *,
        mode: Mode = "auto",
        until_idle: bool = False,
        idle_s: float = 2.0,
        stop: threading.Event | None = None,
        progress_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.dsn = settings.source_dsn
        self.schema = settings.source_schema
        self.slot = check_slot_name(settings.source.slot_name)
        self.mode = mode
        self.until_idle = until_idle
        self.idle_s = idle_s
        self.stop = stop or threading.Event()
        self.fmt = settings.kinesis.message_format
        self.kinesis = KinesisSink(settings)
        self.s3 = S3Sink(settings)
        self.builder = record_builder(settings)
        self.defs: dict[str, TableDefinition] = {}
        self.progress = metrics.Progress(progress_s)
        self.summary = DmsSummary(mode)
        self.last_commit_end = 0  # end LSN of the last transaction handed to both sinks
        self.kinesis_done = self.s3_done = self.acked = 0
        self.tally = metrics.ChangeTally()  # metrics.CHANGES, added to once per flush

    # ---- setup ---------------------------------------------------------------------------
    def _prepare(self, q: psycopg.Connection[tuple[object, ...]], stream: ReplicationStream) -> None:
        row = q.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        ).fetchone()
        exists = row is not None
        ready = bool(self.s3.read_state(self.slot).get("cdc_ready"))
        mode = self.mode
        if mode == "auto":
            mode = "cdc" if exists and ready else "full-load-and-cdc"
        self.summary.mode = mode
        if mode == "full-load-and-cdc":
            if exists:
                log.warning("slot %s exists but has no finished full load: starting over", self.slot)
                q.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
            point, snapshot = stream.create_slot(export_snapshot=True)
            assert snapshot is not None
            log.info("slot %s created at %s; full load from its snapshot", self.slot, format_lsn(point))
            targets = LoadTargets(self.kinesis, self.s3, self.builder, self.fmt)
            self.defs = full_load(self.dsn, snapshot, self.schema, targets)
            load_files = targets.load_files
            self.summary.loaded_tables = len(self.defs)
            self.last_commit_end = self.kinesis_done = self.s3_done = point
        else:
            load_files = self.s3.read_state(self.slot).get("load_files", {})
            if not exists:
                point, _ = stream.create_slot(export_snapshot=False)
                log.info("slot %s created at %s (cdc only)", self.slot, format_lsn(point))
            self.defs = read_definitions(q, self.schema)
            for d in self.defs.values():
                self.s3.write_definition(d)
        self.s3.write_state(self.slot, {"cdc_ready": True, "mode": mode, "load_files": load_files})

    # ---- one message -----------------------------------------------------------------------
    def _handle(self, payload: bytes) -> None:
        ev = parse_message(payload)
        if type(ev) is RowChange:
            d = self.defs.get(ev.table)
            if d is None or not matches(d, ev):
                d = self._definition_for(ev)
            try:
                em = self.builder.change(d, ev)
            except (KeyError, TypeError, ValueError) as e:  # a column object wal2json never sends
                raise Wal2JsonError(f"bad wal2json change ({e!r}): {payload[:200]!r}") from None
            self.kinesis.add(encode(em.document, self.fmt), em.partition_key)
            assert em.commit_time is not None
            self.s3.add_cdc(d, ev.action, em.values, em.commit_time)
            self.summary.changes += 1
            self.progress.changes += 1
            self.tally.count(ev.table, ev.action)
        elif isinstance(ev, Begin):
            self.builder.begin(ev)
        elif isinstance(ev, Commit):
            self.builder.commit()
            self.last_commit_end = ev.end_lsn
            self.summary.transactions += 1
            metrics.TRANSACTIONS.inc()
        elif isinstance(ev, Truncate):
            metrics.IGNORED.labels("truncate").inc()
            log.warning("TRUNCATE of %s.%s is not replicated (DMS drops the S3 folder)", ev.schema, ev.table)

    def _definition_for(self, ch: RowChange) -> TableDefinition:
        d = self.defs.get(ch.table)
        if d is not None and matches(d, ch):
            return d
        if ch.action == "D":  # no column list in a delete: ask the catalog
            with psycopg.connect(self.dsn, autocommit=True) as q:
                new = read_definitions(q, ch.schema).get(ch.table) or d
            if new is None:
                raise FatalError(f"no definition for {ch.schema}.{ch.table}")
        else:
            new = definition_from_change(ch)
        op = "create-table" if d is None else "change-columns"
        log.warning("%s.%s: %s (columns %s)", ch.schema, ch.table, op, new.column_names)
        self.defs[ch.table] = new
        self.s3.write_definition(new)
        self.kinesis.add(
            encode_record(self.builder.create_table(new, op), self.fmt), f"{ch.schema}.{ch.table}"
        )
        return new

    # ---- flushing and acknowledging ------------------------------------------------------------
    def _flush(self, s3_too: bool) -> None:
        self.tally.publish()
        # Kinesis and S3 each send from a thread of their own while decoding goes on; the slot
        # is acknowledged up to what both finished (see _ack)
        if s3_too:
            self.kinesis.flush()
        elif len(self.kinesis) and (self.kinesis.full or not self.kinesis.busy):
            self.kinesis.flush_in_background(self.last_commit_end)
        self.kinesis_done = max(self.kinesis_done, self.kinesis.accepted_lsn())
        if self.kinesis.idle:
            self.kinesis_done = self.last_commit_end
        self.summary.kinesis_records = self.kinesis.sent
        if s3_too:
            self.s3.flush()
        elif self.s3.due():  # S3 is written by its own thread: a slow S3 does not stall Kinesis
            self.s3.flush_in_background(self.last_commit_end)
        self.s3_done = max(self.s3_done, self.s3.written_lsn())
        if self.s3.empty:
            self.s3_done = self.last_commit_end
        self.summary.s3_cdc_files = self.s3.cdc_files

    def _ack(self, stream: ReplicationStream, force: bool = False) -> None:
        target = min(self.kinesis_done, self.s3_done)
        idle = not self.builder.in_transaction and self.s3.empty and self.kinesis.idle
        if idle and target == self.last_commit_end:
            target = max(target, stream.server_wal_end)  # nothing decoded is pending
        if target > self.acked or force:
            self.acked = max(self.acked, target)
            stream.ack(self.acked, force=force)
            metrics.CONFIRMED_LSN.set(self.acked)
            self.summary.acked_lsn = format_lsn(self.acked)

    # ---- the loop --------------------------------------------------------------------------
    def run(self) -> DmsSummary:
        with source_errors(self.dsn, self.slot):
            q = psycopg.connect(self.dsn, autocommit=True)
        try:
            check_source(q, self.dsn)
            stream = ReplicationStream(self.dsn, self.slot)
        except BaseException:
            q.close()
            raise
        try:
            with q:
                self._prepare(q, stream)
                stream.start(plugin_options(self.schema))
                self._loop(stream, q)
            self._flush(s3_too=True)
            self._ack(stream, force=True)
        finally:
            stream.close()
            self.kinesis.close()
            self.s3.close()
        self.progress.tick(self.summary.acked_lsn, 0, force=True)
        return self.summary

    def _loop(self, stream: ReplicationStream, q: psycopg.Connection[tuple[object, ...]]) -> None:
        last_msg = time.monotonic()
        target: int | None = None  # the server's WAL end when we first became idle
        while not self.stop.is_set():
            msg = stream.read()
            if msg is not None:
                self._handle(msg.payload)
                last_msg = time.monotonic()
                target = None
                if self.kinesis.full or self.s3.due():
                    self._flush(s3_too=False)
                    self._ack(stream)
                continue
            idle_for = time.monotonic() - last_msg
            self._flush(s3_too=self.until_idle and idle_for >= self.idle_s)
            self._ack(stream)
            self.progress.tick(self.summary.acked_lsn, max(0, stream.server_wal_end - self.acked))
            if self.until_idle and idle_for >= self.idle_s and not self.builder.in_transaction:
                if target is None:
                    row = q.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                    target = parse_lsn(str(row[0])) if row else 0
                if self.acked >= target:
                    log.info("caught up at %s: exiting (--until-idle)", format_lsn(self.acked))
                    return
                if idle_for >= self.idle_s + 30:
                    log.warning("idle, but the server never confirmed WAL up to %s", format_lsn(target))
                    return
            stream.wait(0.02 if not self.kinesis.idle else 0.5)


def run_dms(
    settings: Settings,
    *,
    mode: Mode = "auto",
    until_idle: bool = False,
    idle_s: float = 2.0,
    stop: threading.Event | None = None,
    progress_s: float = 10.0,
) -> DmsSummary:
    """Run the local DMS task (blocking). until_idle: return once caught up and idle for
    idle_s; otherwise run until ``stop`` is set. Raises FatalError on what it cannot handle.
    A MySQL source (source.engine = mysql) reads the binlog (producers.dms.mysql)."""
    if settings.source.engine == "mysql":
        from producers.dms.mysql.runner import LocalMysqlDms

        return LocalMysqlDms(
            settings, mode=mode, until_idle=until_idle, idle_s=idle_s, stop=stop, progress_s=progress_s
        ).run()
    return LocalDms(
        settings, mode=mode, until_idle=until_idle, idle_s=idle_s, stop=stop, progress_s=progress_s
    ).run()


async def arun_dms(settings: Settings, **kwargs: object) -> DmsSummary:
    """run_dms in a worker thread, for asyncio tests: ``await arun_dms(settings, until_idle=True)``."""
    import asyncio

    return await asyncio.to_thread(lambda: run_dms(settings, **kwargs))  # type: ignore[arg-type]
