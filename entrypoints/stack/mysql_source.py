"""The stack's MySQL-compatible source database (``source.engine = mysql``): Debian's MariaDB
10.11 (MySQL 8 is not packaged for Debian; the project keeps to SQL and binlog features both
speak), in ``<stack dir>/mysql-source``, set up like an RDS MySQL for AWS DMS: binary log on,
binlog_format ROW, binlog_row_image FULL, a server_id, row metadata FULL, utf8mb4, UTC.

The source user (settings.source) gets what AWS DMS asks of it: SELECT on the database (and
the writes the loaders need), REPLICATION SLAVE and REPLICATION CLIENT.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from entrypoints.stack.mariadb import LocalMariaDB
from gorse_cdc.settings import Settings
from gorse_cdc.source_db import quote

BINLOG_ARGS = (
    "--server-id=1",
    "--log-bin=mysql-bin",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--expire-logs-days=1",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--default-time-zone=+00:00",
    "--innodb-log-file-size=256M",
)


def local_source(settings: Settings, root: Path, binlog: tuple[str, ...] = BINLOG_ARGS) -> LocalMariaDB:
    st = settings.stack
    return LocalMariaDB(root, st.host, st.port("mysql_source"), name="mysql-source", extra_args=binlog)


def schema_sql() -> str:
    return resources.files("entrypoints.stack").joinpath("schema_mysql.sql").read_text()


def bootstrap(db: LocalMariaDB, settings: Settings) -> None:
    """The database, the source user with DMS's grants, and the schema. Idempotent."""
    s = settings.source
    user, password = s.user, s.password.get_secret_value().replace("'", "''")
    database = quote(s.database)
    db.sql(
        f"CREATE DATABASE IF NOT EXISTS {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';"
        f"GRANT ALL ON {database}.* TO '{user}'@'%';"
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* TO '{user}'@'%';"
        "FLUSH PRIVILEGES;"
    )
    db.sql(f"USE {database};\n{schema_sql()}")
