"""What a user must change when a MySQL-compatible source is not set up for CDC (pure).

AWS DMS asks of a MySQL source: the binary log on, binlog_format ROW, binlog_row_image FULL,
and a user with REPLICATION SLAVE and REPLICATION CLIENT; and its binlog kept long enough for
the task to resume (on RDS: ``binlog retention hours``). Each miss becomes one line that says
the fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

import re

from gorse_cdc.source_db import MySqlDsn
from producers.dms.source_errors import SourceSetupError

RDS_RETENTION = "CALL mysql.rds_set_configuration('binlog retention hours', 24)"


def binlog_off(src: MySqlDsn) -> str:
    return (
        f"{src} has binary logging off: start it with log_bin (and server_id) in its configuration "
        "(on RDS: automated backups on, i.e. a backup retention period above 0)"
    )


def wrong_setting(src: MySqlDsn, name: str, value: str, want: str) -> str:
    return (
        f"{src} has {name} = {value}: set {name} = {want} (on RDS: in the DB parameter group; then "
        "start a new full load, since earlier changes were not logged as rows)"
    )


def missing_grants(src: MySqlDsn, missing: list[str]) -> str:
    return (
        f"user {src.user} may not read the binlog of {src} (missing {', '.join(missing)}): "
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{src.user}'@'%'"
    )


def purged(src: MySqlDsn, file: str, pos: int, oldest: str | None) -> str:
    return (
        f"{src} no longer has binlog {file} (the saved position {file}:{pos}; oldest kept: "
        f"{oldest or 'none'}): changes since were lost to this task. Keep binlogs longer (RDS: "
        f"{RDS_RETENTION}) and start over with `gorse-cdc dms run --mode full-load-and-cdc`"
    )


def preflight(src: MySqlDsn, variables: dict[str, str], grants: list[str]) -> str | None:
    """The first setup problem (from SHOW GLOBAL VARIABLES and SHOW GRANTS), or None."""
    v = {k.lower(): str(val) for k, val in variables.items()}
    if v.get("log_bin", "OFF").upper() not in ("ON", "1"):
        return binlog_off(src)
    if v.get("binlog_format", "").upper() != "ROW":
        return wrong_setting(src, "binlog_format", v.get("binlog_format", "?"), "ROW")
    if v.get("binlog_row_image", "FULL").upper() != "FULL":
        return wrong_setting(src, "binlog_row_image", v["binlog_row_image"], "FULL")
    missing = missing_privileges(grants)
    if missing:
        return missing_grants(src, missing)
    return None


def missing_privileges(grants: list[str]) -> list[str]:
    """REPLICATION SLAVE / REPLICATION CLIENT absent from SHOW GRANTS lines (MariaDB 10.5+
    shows REPLICATION CLIENT as BINLOG MONITOR; ALL PRIVILEGES ON *.* covers both)."""
    text = " ".join(g.upper() for g in grants if re.search(r"\bON \*\.\* TO\b", g.upper()))
    if "ALL PRIVILEGES ON *.*" in text:
        return []
    missing = []
    if "REPLICATION SLAVE" not in text and "REPLICATION REPLICA" not in text:
        missing.append("REPLICATION SLAVE")
    if not any(p in text for p in ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER")):
        missing.append("REPLICATION CLIENT")
    return missing


def explain(message: str, src: MySqlDsn) -> str | None:
    """The fix for a server error message met while connecting or streaming, else None."""
    m = message.lower()
    if "could not find first log file name in binary log index file" in m or ("1236" in m and "purged" in m):
        return purged(src, "?", 0, None)
    if "access denied" in m and ("replication" in m or "super" in m or "binlog monitor" in m):
        return missing_grants(src, ["REPLICATION SLAVE", "REPLICATION CLIENT"])
    if "access denied for user" in m:
        return f"{src} refused user {src.user}'s password: check GORSE_CDC_SOURCE__DSN"
    if "can't connect" in m or "connection refused" in m:
        return f"cannot reach {src}: is it running and listening there? (GORSE_CDC_SOURCE__DSN)"
    return None


def setup_error(exc: BaseException, src: MySqlDsn) -> SourceSetupError | None:
    line = explain(str(exc), src)
    return None if line is None else SourceSetupError(line)
