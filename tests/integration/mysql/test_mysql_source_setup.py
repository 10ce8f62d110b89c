"""A MySQL source that is not set up for CDC: each miss stops `gorse-cdc dms run` with one
line that says the fix (exit 2), on the real MariaDB: binary log off, binlog_format or
binlog_row_image wrong, REPLICATION grants missing, the saved position's binlog purged."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from entrypoints.stack import mysql_source
from entrypoints.stack.components import Stack
from entrypoints.stack.mariadb import LocalMariaDB
from gorse_cdc.settings import Settings
from producers.dms import run_dms
from producers.dms.source_errors import SourceSetupError
from tests.integration.producers.conftest import env_for

ROOT = Path(__file__).parents[3]


def _root_sql(s: Settings, statements: str) -> str:
    return mysql_source.local_source(s, s.stack.dir.resolve()).sql(statements)


@contextlib.contextmanager
def global_variable(s: Settings, name: str, value: str) -> Iterator[None]:
    old = _root_sql(s, f"SELECT @@GLOBAL.{name}")
    _root_sql(s, f"SET GLOBAL {name} = '{value}'")
    try:
        yield
    finally:
        _root_sql(s, f"SET GLOBAL {name} = '{old}'")


def _with_dsn(s: Settings, dsn: str) -> Settings:
    return s.model_copy(update={"source": s.source.model_copy(update={"dsn": SecretStr(dsn)})})


def test_wrong_binlog_format_is_one_line_and_exit_2(my: Settings) -> None:
    with global_variable(my, "binlog_format", "STATEMENT"):
        env = {**os.environ, **env_for(my), "GORSE_CDC_SOURCE__ENGINE": "mysql"}
        proc = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", "dms", "run", "--until-idle"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gorse-cdc dms")]
    assert lines == [
        f"gorse-cdc dms: MySQL at {my.stack.host}:{my.stack.port('mysql_source')} has binlog_format = "
        "STATEMENT: set binlog_format = ROW (on RDS: in the DB parameter group; then start a new full "
        "load, since earlier changes were not logged as rows)"
    ], proc.stderr
    assert "Traceback" not in proc.stderr


def test_minimal_row_image(my: Settings) -> None:
    with global_variable(my, "binlog_row_image", "MINIMAL"), pytest.raises(SourceSetupError) as e:
        run_dms(my, until_idle=True)
    assert "has binlog_row_image = MINIMAL: set binlog_row_image = FULL" in str(e.value)


def test_missing_replication_grants(my: Settings) -> None:
    _root_sql(
        my,
        "CREATE USER IF NOT EXISTS 'no_repl'@'%' IDENTIFIED BY 'pw';"
        f"GRANT SELECT ON `{my.source.database}`.* TO 'no_repl'@'%';",
    )
    dsn = f"mysql://no_repl:pw@{my.stack.host}:{my.stack.port('mysql_source')}/{my.source.database}"
    with pytest.raises(SourceSetupError) as e:
        run_dms(_with_dsn(my, dsn), until_idle=True)
    assert str(e.value) == (
        f"user no_repl may not read the binlog of MySQL at {my.stack.host}:{my.stack.port('mysql_source')} "
        "(missing REPLICATION SLAVE, REPLICATION CLIENT): "
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'no_repl'@'%'"
    )


def test_binlog_purged_past_the_saved_position(my: Settings) -> None:
    first = run_dms(my, until_idle=True, idle_s=0.5)
    assert first.mode == "full-load-and-cdc"
    saved_file = first.acked_lsn.split(":")[0]
    _root_sql(my, "FLUSH BINARY LOGS")
    current = _root_sql(my, "SHOW MASTER STATUS").split()[0]
    # the server keeps a binlog a dump thread still reads: the first run's dump connection may
    # linger a moment after it exits (seen once in a fresh-clone run), so purge until it is gone
    deadline = time.monotonic() + 15
    while True:
        _root_sql(my, f"PURGE BINARY LOGS TO '{current}'")
        if saved_file not in _root_sql(my, "SHOW BINARY LOGS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with pytest.raises(SourceSetupError) as e:
        run_dms(my, until_idle=True)
    msg = str(e.value)
    assert f"no longer has binlog {saved_file}" in msg and f"oldest kept: {current}" in msg
    assert "rds_set_configuration('binlog retention hours', 24)" in msg and "--mode full-load-and-cdc" in msg


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_binlog_off(my: Settings, mysql_stack: Stack, tmp_path: Path) -> None:
    """A second MariaDB without log_bin (mariadb-install-db: a few seconds)."""
    db = LocalMariaDB(tmp_path, my.stack.host, _free_port(), name="no-binlog")
    proc = db.start()
    try:
        dsn = f"mysql://gorse:gorse@{db.host}:{db.port}/mysql"
        with pytest.raises(SourceSetupError) as e:
            run_dms(_with_dsn(my, dsn), until_idle=True)
        assert str(e.value).startswith(
            f"MySQL at {db.host}:{db.port} has binary logging off: start it with log_bin"
        )
    finally:
        if proc is not None:
            LocalMariaDB.stop(proc)
