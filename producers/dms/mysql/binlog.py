"""The binlog as typed events, through mysql-replication (a replica's COM_BINLOG_DUMP).

``stream_from(file, pos)`` holds one dump connection open from a position and yields, in
binlog order: ``Rows`` (one rows event of the watched
database: its table and its row images in column order), ``Commit`` (the XID event, or a
COMMIT query of a non-transactional engine: the transaction's end and the position after it)
``Ddl`` (a statement on the watched database outside a transaction), and a ``Heartbeat`` for
each heartbeat the server sends while it has nothing new (every ``heartbeat_s``: the caller's chance
to flush, save its position or stop while idle). A caller resumes from
the last ``Commit``'s (or ``Ddl``'s) position: binlog transactions are written whole, so a
position there is always a transaction boundary.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from gorse_cdc.errors import FatalError
from gorse_cdc.source_db import MySqlDsn
from producers.dms.mysql.source_errors import explain

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rows:
    action: str  # I, U, D
    table: str
    images: tuple[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None], ...]  # (before, after)


@dataclass(frozen=True, slots=True)
class Commit:
    xid: int
    when: datetime
    file: str
    pos: int  # where the next transaction starts


@dataclass(frozen=True, slots=True)
class Ddl:
    query: str
    file: str
    pos: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The server has nothing new; everything up to file:pos was sent."""

    file: str
    pos: int


Event = Rows | Commit | Ddl | Heartbeat


def server_id_for(task: str) -> int:
    """A replica server_id of our own per task name (the server drops an older dump thread
    of the same id, so two tasks must not share one; 1 is left for the source itself)."""
    return 2 + zlib.crc32(task.encode()) % (2**31 - 2)


def _images(ev: Any) -> tuple[str, tuple[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None], ...]]:
    if isinstance(ev, WriteRowsEvent):
        return "I", tuple((None, tuple(r["values"].values())) for r in ev.rows)
    if isinstance(ev, UpdateRowsEvent):
        return "U", tuple(
            (tuple(r["before_values"].values()), tuple(r["after_values"].values())) for r in ev.rows
        )
    return "D", tuple((tuple(r["values"].values()), None) for r in ev.rows)


class BinlogReader:
    def __init__(self, dsn: str, task: str) -> None:
        self.src = MySqlDsn.parse(dsn)
        self.database = self.src.database
        self.server_id = server_id_for(task)
        self._stream: BinLogStreamReader | None = None

    def stream_from(self, file: str, pos: int, heartbeat_s: float = 0.5) -> Iterator[Event]:
        """Events from file:pos on, without end; a Heartbeat each idle heartbeat_s."""
        settings = {**self.src.connect_args()}
        stream = BinLogStreamReader(
            connection_settings=settings,
            server_id=self.server_id,
            resume_stream=True,
            log_file=file,
            log_pos=pos,
            blocking=True,
            slave_heartbeat=heartbeat_s,
            only_events=[
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                QueryEvent,
                RotateEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=[self.database],
            enable_logging=False,
        )
        self._stream = stream
        in_txn = False
        try:
            for ev in stream:
                if isinstance(ev, HeartbeatLogEvent):
                    yield Heartbeat(stream.log_file, stream.log_pos)
                elif isinstance(ev, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                    if ev.schema != self.database:
                        continue
                    action, images = _images(ev)
                    in_txn = True
                    yield Rows(action, ev.table, images)
                elif isinstance(ev, XidEvent):
                    in_txn = False
                    yield Commit(
                        ev.xid, datetime.fromtimestamp(ev.timestamp, UTC), stream.log_file, stream.log_pos
                    )
                elif isinstance(ev, QueryEvent):
                    query = ev.query.strip() if isinstance(ev.query, str) else ""
                    upper = query.upper()
                    if upper == "BEGIN":
                        continue
                    if upper == "COMMIT":
                        in_txn = False
                        yield Commit(
                            0, datetime.fromtimestamp(ev.timestamp, UTC), stream.log_file, stream.log_pos
                        )
                    elif not in_txn:
                        schema = ev.schema.decode() if isinstance(ev.schema, bytes) else str(ev.schema)
                        if schema == self.database:
                            yield Ddl(query, stream.log_file, stream.log_pos)
        except pymysql.err.OperationalError as e:
            line = explain(str(e), self.src)
            if line and "no longer has binlog" in line:
                line = line.replace("binlog ?", f"binlog {file}").replace("?:0", f"{file}:{pos}")
            raise FatalError(line or f"binlog stream from {self.src}: {e}") from None
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            self._stream = None
