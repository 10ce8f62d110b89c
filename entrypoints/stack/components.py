"""The local stack's parts: PostgreSQL (source DB), Gorse, a Kinesis emulator and moto.

Each part knows how to start, how to tell it is healthy, and its endpoint. All listen on
loopback; all data and logs live under settings.stack.dir.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from entrypoints.stack import install, prometheus
from entrypoints.stack.gorse import LocalGorse
from entrypoints.stack.postgres import PG_USER, LocalPostgres
from entrypoints.stack.processes import ProcessSpec, ProcessTable, http_ok, tcp_open, wait_until
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings


@dataclass
class Part:
    name: str
    endpoint: str


APPS = ("gateway", "events-consumer")


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.stack.dir.resolve()
        self.procs = ProcessTable(self.root)
        self.host = settings.stack.host
        self.postgres = LocalPostgres(settings, self.root)
        self.gorse = LocalGorse(settings, self.root, self.procs, self.postgres)

    def _wait(self, name: str, check: Callable[[], bool], what: str, timeout_s: float) -> None:
        """Wait until healthy; fail at once if our process died (e.g. its port is taken)."""

        def ours_and_healthy() -> bool:
            if self.procs.pid(name) is None:
                log = self.procs.log_file(name)
                raise FatalError(f"{what} exited at start (port taken?); see {log}:\n{self._tail(name)}")
            return check()

        wait_until(ours_and_healthy, what, timeout_s, self.procs.log_file(name))

    def _tail(self, name: str, n: int = 15) -> str:
        log = self.procs.log_file(name)
        lines = log.read_text(errors="replace").splitlines()[-n:] if log.exists() else []
        return "\n".join("    " + line for line in lines)

    # ---- PostgreSQL ----------------------------------------------------------------------
    def start_postgres(self) -> Part:
        install.ensure_postgres()
        pg = self.postgres
        was_running = self.procs.pid("postgres") is not None
        pg.init()
        self.procs.start(ProcessSpec("postgres", pg.argv(), cwd=pg.base, user=PG_USER))
        self._wait("postgres", lambda: tcp_open(self.host, pg.port), "PostgreSQL", 60)
        self._wait("postgres", pg.ready, "PostgreSQL (accepting queries)", 60)
        if was_running:
            pg.reload()  # gorse-cdc.conf may be new (a cluster made by an older gorse-cdc)
        pg.bootstrap()
        return Part("postgres", f"postgresql://{self.host}:{pg.port}/{self.settings.source.database}")

    # ---- MariaDB as the MySQL-compatible source (source.engine = mysql) ---------------------
    def start_mysql_source(self) -> Part:
        from entrypoints.stack import mysql_source

        db = mysql_source.local_source(self.settings, self.root)
        db.init()
        (db.base / "run").mkdir(parents=True, exist_ok=True)
        self.procs.start(ProcessSpec("mysql-source", db.argv(), cwd=db.base))
        self._wait("mysql-source", db.ready, "MariaDB source (accepting queries)", 60)
        mysql_source.bootstrap(db, self.settings)
        return Part(
            "mysql-source (MariaDB)", f"mysql://{self.host}:{db.port}/{self.settings.source.database}"
        )

    # ---- Gorse ---------------------------------------------------------------------------
    def start_gorse(self) -> Part:
        """Gorse in the configured topology (entrypoints.stack.gorse); its first endpoint."""
        started = self.gorse.start(self._wait)
        return Part(", ".join(n for n, _ in started), started[0][1])

    def start_gorse_parts(self) -> list[Part]:
        return [Part(name, url) for name, url in self.gorse.start(self._wait)]

    def reset_gorse(self) -> Part:
        """Stop Gorse, drop its data and cache, start it empty (tests, demos)."""
        started = self.gorse.reset(self._wait)
        return Part(", ".join(n for n, _ in started), started[0][1])

    # ---- Kinesis emulator --------------------------------------------------------------------
    def start_kinesis(self) -> Part:
        st = self.settings.stack
        modules = install.ensure_npm_packages(st.cache_dir)
        port = st.port("kinesis")
        node = shutil.which("node") or "node"
        if st.kinesis_emulator == "kinesalite":
            data = self.root / "kinesalite"
            data.mkdir(parents=True, exist_ok=True)
            # kinesalite's CLI listens on every interface; its library lets us bind loopback only
            options = {
                "path": str(data),
                "createStreamMs": 0,
                "deleteStreamMs": 0,
                "updateStreamMs": 0,
                "shardLimit": 1000,
            }
            # The same server's handler and store served a second time over cleartext HTTP/2
            # (h2c) on kinesis_h2c_port: the KCL's Kinesis client forces HTTP/2.
            script = (
                "const [mod, opts, port, host, h2port] = process.argv.slice(1);"
                "const server = require(mod)(JSON.parse(opts));"
                "server.listen(Number(port), host,"
                " () => console.log(`kinesalite listening on ${host}:${port}`));"
                "const h2 = require('http2').createServer();"
                "h2.on('request', (req, res) => server.emit('request', req, res));"
                "h2.listen(Number(h2port), host,"
                " () => console.log(`kinesalite (h2c) listening on ${host}:${h2port}`));"
            )
            spec = ProcessSpec(
                "kinesis",
                [
                    node,
                    "-e",
                    script,
                    str(modules / "kinesalite"),
                    json.dumps(options),
                    str(port),
                    self.host,
                    str(st.port("kinesis_h2c")),
                ],
            )
        else:
            pkg = modules / "kinesis-local"
            spec = ProcessSpec(
                "kinesis",
                [node, str(pkg / "main.js")],
                cwd=pkg,
                env={
                    "KINESIS_MOCK_PLAIN_PORT": str(port),
                    "KINESIS_MOCK_TLS_PORT": str(port + 1000),
                    "SHARD_LIMIT": "1000",
                    "CREATE_STREAM_DURATION": "0ms",
                    "DELETE_STREAM_DURATION": "0ms",
                    "SPLIT_SHARD_DURATION": "0ms",
                    "MERGE_SHARDS_DURATION": "0ms",
                    "UPDATE_SHARD_COUNT_DURATION": "0ms",
                    "REGISTER_STREAM_CONSUMER_DURATION": "0ms",
                    "AWS_REGION": self.settings.aws.region,
                },
            )
        self.procs.start(spec)
        self._wait("kinesis", lambda: tcp_open(self.host, port), st.kinesis_emulator, 60)
        if st.kinesis_emulator == "kinesalite":
            h2c = st.port("kinesis_h2c")
            self._wait("kinesis", lambda: tcp_open(self.host, h2c), "kinesalite (h2c, for the KCL)", 30)
        return Part(f"kinesis ({st.kinesis_emulator})", f"http://{self.host}:{port}")

    # ---- moto (S3, DynamoDB, SQS) ----------------------------------------------------------
    def start_moto(self) -> Part:
        port = self.settings.stack.port("moto")
        moto = Path(sys.executable).parent / "moto_server"
        argv = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
        self.procs.start(ProcessSpec("moto", [*argv, "-H", self.host, "-p", str(port)]))
        url = f"http://{self.host}:{port}"
        self._wait("moto", lambda: http_ok(url + "/moto-api/"), "moto server", 60)
        return Part("moto (S3, DynamoDB, SQS)", url)

    # ---- Prometheus (alert rules of infra/prometheus/) and the status exporter -----------
    def start_prometheus(self) -> list[Part]:
        started = prometheus.start(self.settings, self.procs, self.root)
        self._wait("prometheus", lambda: prometheus.ready(self.settings), "Prometheus", 60)
        return [Part(name, endpoint) for name, endpoint in started]

    # ---- whole stack ---------------------------------------------------------------------
    PARTS = ("postgres", "moto", "kinesis", "gorse")
    OBSERVERS = ("prometheus", "status-exporter")  # shown by status, not required by it
    # APPS (above) are started on top of these by `gorse-cdc demo` and stopped first.
    # "gorse" stands for the Gorse processes of the configured topology (LocalGorse.names).

    @property
    def part_names(self) -> list[str]:
        """Every process of the stack, Gorse's by their own names."""
        source = ["mysql-source"] if self.settings.source.engine == "mysql" else []
        return [*self.PARTS[:-1], *source, *self.gorse.names]

    def up(self) -> list[Part]:
        self.root.mkdir(parents=True, exist_ok=True)
        source = [self.start_mysql_source()] if self.settings.source.engine == "mysql" else []
        return [
            self.start_postgres(),
            *source,
            self.start_moto(),
            self.start_kinesis(),
            *self.start_gorse_parts(),
            *self.start_prometheus(),
        ]

    def down(self) -> list[str]:
        stopped = [name for name in (*APPS, *self.OBSERVERS) if self.procs.stop(name)]
        stopped += self.gorse.stop()
        for name in ("mysql-source", *reversed(self.PARTS[:-1])):
            if self.procs.stop(name):
                stopped.append(name)
        return stopped

    def status(self) -> dict[str, int | None]:
        """pid (or None) of every part of the configured topology, and of any other Gorse process
        of this stack that runs."""
        found: dict[str, int | None] = {name: self.procs.pid(name) for name in self.part_names}
        found.update(self.gorse.running())
        found.update({name: self.procs.pid(name) for name in self.OBSERVERS})
        return found
