"""A MariaDB server of the project's own (Debian's mariadb-server, never its service): a data
folder ``<stack dir>/mariadb`` made by ``mariadb-install-db``, one ``mariadbd`` on a loopback
port. Used by the tests of Gorse on a MySQL store (Gorse's ``mysql://`` data and cache stores);
not part of ``stack up``.

Gorse's DSN: ``mysql://user:password@tcp(host:port)/database?...`` (go-sql-driver/mysql's form
after the scheme; storage/data/sql.go strips ``mysql://`` and adds sql_mode, the isolation level
and parseTime).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from entrypoints.stack import install
from gorse_cdc.errors import FatalError

USER = "gorse"
PASSWORD = "gorse"  # noqa: S105 - a loopback test server's own account


def _port_free(host: str, port: int) -> int:
    """``port`` (or, for 0, a port the system picks) when it can be bound on ``host``; else 0."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return 0
        return int(sock.getsockname()[1])


class LocalMariaDB:
    def __init__(
        self, stack_dir: Path, host: str, port: int, name: str = "mariadb", extra_args: tuple[str, ...] = ()
    ) -> None:
        self.base = stack_dir.resolve() / name
        self.host = host
        self.port = port
        self.extra_args = extra_args

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> Path:
        return self.base / "run" / "mariadb.sock"

    @property
    def pid_file(self) -> Path:
        return self.base / "run" / "mariadbd.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "mariadbd.log"

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def init(self) -> None:
        """``mariadb-install-db`` once into the data folder."""
        install.ensure_mariadb()
        if (self.data / "mysql").is_dir():
            return
        (self.base / "run").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data, ignore_errors=True)  # a half-made folder from a failed attempt
        argv = [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.data}",
            *self._user(),
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if proc.returncode != 0:
            raise FatalError(f"mariadb-install-db failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")

    def argv(self) -> list[str]:
        return [
            str(install.MARIADB_BIN),
            "--no-defaults",
            f"--datadir={self.data}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            *self._user(),
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=300",
            f"--log-error={self.log_file}",
            *self.extra_args,
        ]

    @property
    def port_file(self) -> Path:
        return self.base / "run" / "port"

    def running(self) -> bool:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return False
        if not self.ready():
            return False
        self.port = port
        return True

    def start(self, timeout_s: float = 60.0) -> subprocess.Popen[bytes] | None:
        """Start mariadbd unless one already runs on this folder; returns the process started
        (the caller stops it), or None when one was running."""
        self.init()
        if self.running():
            return None
        (self.base / "run").mkdir(parents=True, exist_ok=True)
        if not _port_free(self.host, self.port):  # another checkout's server: any free port
            self.port = _port_free(self.host, 0) or self.port
        proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = self.log_file.read_text("utf-8", "replace")[-2000:] if self.log_file.exists() else ""
                raise FatalError(f"mariadbd did not start on {self.host}:{self.port}:\n{tail}")
            time.sleep(0.3)
        self.port_file.write_text(f"{self.port}\n")
        self.sql(
            f"CREATE USER IF NOT EXISTS '{USER}'@'{self.host}' IDENTIFIED BY '{PASSWORD}';"
            f"GRANT ALL ON *.* TO '{USER}'@'{self.host}'; FLUSH PRIVILEGES;"
        )
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def sql(self, statements: str) -> str:
        argv = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statements]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if proc.returncode != 0:
            raise FatalError(f"mariadb failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def ready(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return self.sql("SELECT 1") == "1"
        except FatalError:
            return False

    def dsn(self, database: str) -> str:
        """Gorse's MySQL DSN for ``database`` on this server."""
        return f"mysql://{USER}:{PASSWORD}@tcp({self.host}:{self.port})/{database}"
