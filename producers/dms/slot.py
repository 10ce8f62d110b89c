"""The replication slot and its stream (psycopg2's LogicalReplicationConnection + wal2json).

psycopg 3 does not speak the replication protocol; psycopg2 does. Ordinary queries about the
slot (exists? drop) go through psycopg 3 in the runner.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras

from gorse_cdc.errors import FatalError
from producers.dms.source_errors import Source, SourceSetupError, preflight, setup_error
from producers.dms.wal2json import parse_lsn

log = logging.getLogger(__name__)
SLOT_NAME = re.compile(r"[a-z0-9_]{1,63}")


def check_slot_name(name: str) -> str:
    if not SLOT_NAME.fullmatch(name):
        raise FatalError(f"slot name {name!r}: use 1-63 of a-z, 0-9 and _")
    return name


@contextlib.contextmanager
def source_errors(dsn: str, slot: str) -> Iterator[None]:
    """Turn the driver errors of a source that is not set up for logical replication (psycopg2
    and psycopg 3 alike) into a SourceSetupError that says what to change."""
    try:
        yield
    except (psycopg2.Error, psycopg.Error) as e:
        known = setup_error(e, Source.from_dsn(dsn), slot)
        if known is None:
            raise
        raise known from None


def check_source(conn: psycopg.Connection[tuple[object, ...]], dsn: str) -> None:
    """What an ordinary connection can tell before the slot is opened (wal_level, the
    REPLICATION privilege, and the plugin allow-list of PostgreSQL 15.19+ where the user may see
    it: pg_settings shows it to superusers only; otherwise the slot's own refusal is explained)."""
    row = conn.execute(
        "SELECT current_setting('wal_level'), r.rolreplication, r.rolsuper,"
        " (SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries')"
        " FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    if row is None:
        return
    wal_level, can_replicate, superuser, allow_list = row
    problem = preflight(
        Source.from_dsn(dsn),
        wal_level=str(wal_level),
        can_replicate=bool(can_replicate),
        superuser=bool(superuser),
        allow_list=None if allow_list is None else str(allow_list),
    )
    if problem is not None:
        raise SourceSetupError(problem)


class ReplicationStream:
    def __init__(self, dsn: str, slot: str) -> None:
        self.slot = check_slot_name(slot)
        self.dsn = dsn
        try:
            self.conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        except psycopg2.OperationalError as e:
            known = setup_error(e, Source.from_dsn(dsn), self.slot)
            raise known or FatalError(f"cannot open a replication connection: {e}") from None
        self.cur: Any = self.conn.cursor()

    def create_slot(self, export_snapshot: bool) -> tuple[int, str | None]:
        """CREATE_REPLICATION_SLOT ... LOGICAL wal2json; returns (consistent point, snapshot).

        The exported snapshot lives only while this connection stays open and idle: read the
        tables on another connection before start()."""
        option = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
        with source_errors(self.dsn, self.slot):
            self.cur.execute(f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL wal2json {option}")
        _, lsn, snapshot, _ = self.cur.fetchone()
        return parse_lsn(lsn), snapshot

    def start(self, options: dict[str, str], wait_active_s: float = 60.0) -> None:
        """START_REPLICATION from the slot's confirmed flush LSN. A slot still held by a killed
        predecessor frees up once the server notices: wait for it."""
        deadline = time.monotonic() + wait_active_s
        while True:
            try:
                self.cur.start_replication(
                    slot_name=self.slot, decode=False, options=options, status_interval=1
                )
                return
            except psycopg2.errors.ObjectInUse as e:
                if time.monotonic() > deadline:
                    raise setup_error(e, Source.from_dsn(self.dsn), self.slot) or FatalError(
                        f"replication slot {self.slot} is held by another process"
                    ) from None
                log.info("slot %s is still active elsewhere; waiting", self.slot)
                time.sleep(1.0)
            except psycopg2.errors.UndefinedObject:
                raise FatalError(f"replication slot {self.slot} does not exist") from None

    def read(self) -> Any:
        """The next message or None when none is ready (keepalives are handled inside)."""
        return self.cur.read_message()

    def wait(self, timeout_s: float) -> None:
        select.select([self.cur], [], [], timeout_s)

    @property
    def server_wal_end(self) -> int:
        return int(self.cur.wal_end)

    def ack(self, lsn: int, force: bool = False) -> None:
        """Confirm everything before ``lsn``: the slot may drop it; a restart resumes there."""
        self.cur.send_feedback(flush_lsn=lsn, force=force)

    def close(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()


def drop_slot(dsn: str, name: str, timeout_s: float = 5.0) -> bool:
    """Drop replication slot ``name`` if it exists, ending the walsender that holds it (a DMS
    process still attached). Returns whether a slot was dropped. For resets, tests, benches."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + timeout_s
        while True:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                return True
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
