"""The local DMS task for a MySQL source: (full load) -> binlog CDC to Kinesis and S3, at least
once.

Acknowledgement rule, as for PostgreSQL: the saved binlog position (the S3 task state, like the
checkpoint AWS DMS keeps for a MySQL task) moves to the end of a transaction only after every
record of it was accepted by Kinesis AND written to S3. A crash re-reads from the saved
position: duplicates, never gaps. Transactions are emitted whole at their commit (XID event).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from gorse_cdc.dms.record import encode_record
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings
from gorse_cdc.source_db import MySqlDsn, connect_mysql
from producers.dms import metrics
from producers.dms.full_load import LoadTargets
from producers.dms.kinesis_sink import KinesisSink
from producers.dms.mysql import source_errors
from producers.dms.mysql.binlog import BinlogReader, Commit, Ddl, Heartbeat, Rows
from producers.dms.mysql.catalog import read_definitions
from producers.dms.mysql.records import BinlogRecordBuilder, Transaction
from producers.dms.mysql.snapshot import full_load, master_status
from producers.dms.records import encode
from producers.dms.runner import DmsSummary, Mode, record_builder
from producers.dms.s3_sink import S3Sink
from producers.dms.slot import check_slot_name
from producers.dms.source_errors import SourceSetupError

log = logging.getLogger("producers.dms")
SAVE_EVERY_S = 1.0


class LocalMysqlDms:
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
        self.src = MySqlDsn.parse(self.dsn)
        self.database = settings.source_schema
        self.task = check_slot_name(settings.source.slot_name)
        self.mode = mode
        self.until_idle = until_idle
        self.idle_s = idle_s
        self.stop = stop or threading.Event()
        self.fmt = settings.kinesis.message_format
        self.kinesis = KinesisSink(settings)
        self.s3 = S3Sink(settings)
        self.builder = BinlogRecordBuilder(record_builder(settings))
        self.reader = BinlogReader(self.dsn, self.task)
        self.defs: dict[str, TableDefinition] = {}
        self.progress = metrics.Progress(progress_s)
        self.tally = metrics.ChangeTally()  # metrics.CHANGES, added to once per flush
        self.summary = DmsSummary(mode)
        self.state: dict[str, object] = {}
        # transactions handed to the sinks are numbered; the sinks report the number they covered
        self.seq = 0
        self.ends: deque[tuple[int, str, int]] = deque()  # (seq, file, pos) not yet saved
        self.read_at: tuple[str, int] = ("", 0)  # where the next pass starts (a boundary)
        self.saved: tuple[str, int] = ("", 0)
        self.saved_seq = 0
        self.kinesis_done = self.s3_done = 0
        self.last_save = 0.0
        self.pending: list[Rows] = []

    # ---- setup ---------------------------------------------------------------------------
    def check_source(self) -> None:
        """Binlog on, ROW, FULL, REPLICATION grants (check_mysql_source)."""
        check_mysql_source(self.settings)

    def check_position(self, conn: object, file: str, pos: int) -> None:
        """The saved position's binlog is still on the server (else: purged past it)."""
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SHOW BINARY LOGS")
            files = [str(r[0]) for r in cur.fetchall()]
        if file not in files:
            raise SourceSetupError(source_errors.purged(self.src, file, pos, files[0] if files else None))

    def _prepare(self, conn: object) -> None:
        self.state = self.s3.read_state(self.task)
        saved = self.state.get("binlog_file"), self.state.get("binlog_pos")
        ready = bool(self.state.get("cdc_ready")) and saved[0]
        mode = self.mode
        if mode == "auto":
            mode = "cdc" if ready else "full-load-and-cdc"
        self.summary.mode = mode
        if mode == "full-load-and-cdc":
            targets = LoadTargets(self.kinesis, self.s3, self.builder.base, self.fmt)
            self.defs, position = full_load(self.dsn, self.database, self.builder, targets)
            load_files: object = targets.load_files
            self.summary.loaded_tables = len(self.defs)
        else:
            load_files = self.state.get("load_files", {})
            if saved[0]:
                position = (str(saved[0]), int(str(saved[1])))
                self.check_position(conn, *position)
            else:  # cdc only, never run: from now on
                with conn.cursor() as cur:  # type: ignore[attr-defined]
                    position = master_status(cur)
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                self.defs = read_definitions(cur, self.database)
            for d in self.defs.values():
                self.s3.write_definition(d)
        self.read_at = self.saved = position
        self.state = {"cdc_ready": True, "mode": mode, "load_files": load_files}
        self._save(force=True)
        log.info("binlog CDC from %s:%d (server_id %d)", *position, self.reader.server_id)

    # ---- events ----------------------------------------------------------------------------
    def _definition(self, table: str, width: int) -> TableDefinition | None:
        d = self.defs.get(table)
        if d is not None and len(d.columns) == width:
            return d
        conn = connect_mysql(self.dsn, autocommit=True)
        try:
            with conn.cursor() as cur:
                new = read_definitions(cur, self.database).get(table)
        finally:
            conn.close()
        if new is None or len(new.columns) != width:
            raise FatalError(f"{self.database}.{table}: a row of {width} columns matches no definition")
        op = "create-table" if d is None else "change-columns"
        log.warning("%s.%s: %s (columns %s)", self.database, table, op, new.column_names)
        self.defs[table] = new
        self.s3.write_definition(new)
        self.kinesis.add(
            encode_record(self.builder.create_table(new, op), self.fmt), f"{self.database}.{table}"
        )
        return new

    def _commit(self, c: Commit) -> None:
        if self.pending:
            self.builder.begin(Transaction(c.xid, c.when, c.file, c.pos))
            for rows in self.pending:
                width = len(rows.images[0][0] if rows.images[0][0] is not None else rows.images[0][1] or ())
                d = self._definition(rows.table, width)
                assert d is not None
                for before, after in rows.images:
                    em = self.builder.change(d, rows.action, before, after)
                    self.kinesis.add(encode(em.document, self.fmt), em.partition_key)
                    assert em.commit_time is not None
                    self.s3.add_cdc(d, rows.action, em.values, em.commit_time)
                    self.summary.changes += 1
                    self.progress.changes += 1
                    self.tally.count(rows.table, rows.action)
            self.builder.commit()
            self.pending = []
            self.summary.transactions += 1
            metrics.TRANSACTIONS.inc()
        self.seq += 1
        self.ends.append((self.seq, c.file, c.pos))
        self.read_at = (c.file, c.pos)

    def _ddl(self, d: Ddl) -> None:
        log.info("DDL on %s: %s", self.database, d.query[:200])
        self.seq += 1
        self.ends.append((self.seq, d.file, d.pos))
        self.read_at = (d.file, d.pos)

    # ---- flushing and saving the position ----------------------------------------------------
    def _flush(self, all_: bool) -> None:
        self.tally.publish()
        if all_:
            self.kinesis.flush()
        elif len(self.kinesis) and (self.kinesis.full or not self.kinesis.busy):
            self.kinesis.flush_in_background(self.seq)
        self.kinesis_done = max(self.kinesis_done, self.kinesis.accepted_lsn())
        if self.kinesis.idle:
            self.kinesis_done = self.seq
        if all_:
            self.s3.flush()
        elif self.s3.due():
            self.s3.flush_in_background(self.seq)
        self.s3_done = max(self.s3_done, self.s3.written_lsn())
        if self.s3.empty:
            self.s3_done = self.seq
        self.summary.kinesis_records = self.kinesis.sent
        self.summary.s3_cdc_files = self.s3.cdc_files

    def _save(self, force: bool = False) -> None:
        """Save the position after the last transaction both targets accepted."""
        done = min(self.kinesis_done, self.s3_done)
        while self.ends and self.ends[0][0] <= done:
            self.saved_seq, file, pos = self.ends.popleft()
            self.saved = (file, pos)
        now = time.monotonic()
        unchanged = (self.state.get("binlog_file"), self.state.get("binlog_pos")) == self.saved
        if not force and (unchanged or now - self.last_save < SAVE_EVERY_S):
            return
        self.state.update(binlog_file=self.saved[0], binlog_pos=self.saved[1])
        self.s3.write_state(self.task, dict(self.state))
        self.last_save = now
        self.summary.acked_lsn = f"{self.saved[0]}:{self.saved[1]}"

    # ---- the loop --------------------------------------------------------------------------
    def run(self) -> DmsSummary:
        conn = connect_mysql(self.dsn, autocommit=True)
        try:
            self.check_source()
            self._prepare(conn)
            self._loop(conn)
            self._flush(all_=True)
            self._save(force=True)
        finally:
            conn.close()
            self.kinesis.close()
            self.s3.close()
        self.progress.tick(self.summary.acked_lsn, 0, force=True)
        return self.summary

    def _loop(self, conn: object) -> None:
        """One dump connection; events as they come, the idle work on the server's heartbeats
        (and on a reconnect, which resumes at the last transaction boundary)."""
        last_event = time.monotonic()
        while not self.stop.is_set():
            self.pending = []  # a stream starts at a transaction boundary
            for ev in self.reader.stream_from(*self.read_at):
                if isinstance(ev, Heartbeat):  # nothing new on the server
                    if not self.pending and (ev.file, ev.pos) > self.read_at:
                        self._skip_to(ev.file, ev.pos)  # past other databases' events, rotations
                    if self._idle(conn, time.monotonic() - last_event):
                        return
                elif isinstance(ev, Rows):
                    self.pending.append(ev)
                elif isinstance(ev, Commit):
                    last_event = time.monotonic()
                    self._commit(ev)
                    if self.kinesis.full or self.s3.due():
                        self._flush(all_=False)
                        self._save()
                else:
                    last_event = time.monotonic()
                    self._ddl(ev)
                if self.stop.is_set():
                    return

    def _skip_to(self, file: str, pos: int) -> None:
        """Move the position past events with nothing to emit (saved like a transaction's end)."""
        self.seq += 1
        self.ends.append((self.seq, file, pos))
        self.read_at = (file, pos)

    def _idle(self, conn: object, idle_for: float) -> bool:
        """Flush and save while idle; True when --until-idle is satisfied (caught up)."""
        self._flush(all_=self.until_idle and idle_for >= self.idle_s)
        self._save()
        self.progress.tick(self.summary.acked_lsn, 0)
        if self.until_idle and idle_for >= self.idle_s and not self.ends and not self.pending:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                end = master_status(cur)
            if self.read_at >= end or idle_for >= self.idle_s + 30:
                log.info("caught up at %s:%d: exiting (--until-idle)", *self.read_at)
                return True
        return False


def check_mysql_source(settings: Settings) -> None:
    """The preflight of `gorse-cdc dms run` alone (the demo names a setup error at once)."""
    conn = connect_mysql(settings.source_dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            names = "'log_bin', 'binlog_format', 'binlog_row_image'"
            cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
            variables = {str(k): str(v) for k, v in cur.fetchall()}
            cur.execute("SHOW GRANTS")
            grants = [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()
    problem = source_errors.preflight(MySqlDsn.parse(settings.source_dsn), variables, grants)
    if problem:
        raise SourceSetupError(problem)
