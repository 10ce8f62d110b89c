"""The local stack's parts: PostgreSQL (source DB), Gorse, a Kinesis emulator and moto.

Each part knows how to start, how to tell it is healthy, and its endpoint. All listen on
loopback; all data and logs live under settings.stack.dir.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from entrypoints.stack import install
from entrypoints.stack.postgres import PG_USER, LocalPostgres
from entrypoints.stack.processes import ProcessSpec, ProcessTable, http_ok, tcp_open, wait_until
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

# Gorse opens SQLite with busy_timeout and WAL; writers then meet each other as SQLITE_BUSY
# inside deferred transactions (a read that turns into a write cannot wait, it fails) and the
# busy handler sleeps up to 100 ms between tries. BEGIN IMMEDIATE takes the write lock first,
# so writers queue instead; synchronous=NORMAL is SQLite's recommended setting in WAL mode
# (commits do not fsync; a power cut may lose the last commits, never corrupts). Appended by
# Gorse itself: storage.AppendURLParams keeps ours.
SQLITE_PARAMS = "?_txlock=immediate&_pragma=synchronous(normal)"


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

    # ---- Gorse ---------------------------------------------------------------------------
    def _gorse_config(self) -> Path:
        st = self.settings.stack
        base = (install.GORSE_MODULE_DIR / "config.toml").read_text("utf-8")
        text = re.sub(r"(?m)^port = \d+", f"port = {st.port('gorse_grpc')}", base)
        text = re.sub(r"(?m)^http_port = \d+", f"http_port = {st.port('gorse_http')}", text)
        text = re.sub(
            r'(?m)^(http_)?host = "[^"]*"', lambda m: f'{m.group(1) or ""}host = "{self.host}"', text
        )
        path = self.root / "gorse" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def _gorse_stores(self) -> tuple[str, str]:
        st = self.settings.stack
        if st.gorse_store == "postgres":
            s = self.settings.source
            url = (
                f"postgres://{s.user}:{s.password.get_secret_value()}@{self.host}:"
                f"{st.port('postgres')}/gorse?sslmode=disable"
            )
            return url, url
        d = self.root / "gorse"
        return f"sqlite://{d}/data.sqlite3{SQLITE_PARAMS}", f"sqlite://{d}/cache.sqlite3{SQLITE_PARAMS}"

    def start_gorse(self) -> Part:
        st = self.settings.stack
        binary = install.ensure_gorse(st.cache_dir, st.gorse_version)
        config = self._gorse_config()
        # a fresh cache path per stack: the master prefers the [recommend] it saw last
        cache = self.root / "gorse" / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        data_store, cache_store = self._gorse_stores()
        key = self.settings.gorse.api_key.get_secret_value()
        if self.procs.pid("gorse") is None:  # a Gorse just stopped may still hold its ports
            ports = (st.port("gorse_http"), st.port("gorse_grpc"))
            deadline = time.monotonic() + 10
            while any(tcp_open(self.host, p) for p in ports) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.procs.start(
            ProcessSpec(
                "gorse",
                [str(binary), "-c", str(config), "--cache-path", str(cache)],
                env={
                    "GORSE_DATA_STORE": data_store,
                    "GORSE_CACHE_STORE": cache_store,
                    "GORSE_SERVER_API_KEY": key,
                    "GORSE_ADMIN_API_KEY": key,
                    # Without dashboard credentials gorse-in-one's master port lets every
                    # request through with the server key (LoginFilter): set them.
                    "GORSE_DASHBOARD_USER_NAME": "gorse-cdc",
                    "GORSE_DASHBOARD_PASSWORD": key,
                },
            )
        )
        url = self.settings.gorse_url
        self._wait("gorse", lambda: http_ok(url + "/api/health/ready"), "Gorse", 90)
        return Part("gorse", url)

    def reset_gorse(self) -> Part:
        """Stop Gorse, drop its data and cache, start it empty (tests, demos)."""
        self.procs.stop("gorse")
        if self.settings.stack.gorse_store == "postgres":
            self.postgres.psql("DROP DATABASE IF EXISTS gorse WITH (FORCE)")
            self.postgres.psql(f"CREATE DATABASE gorse OWNER {self.settings.source.user}")
        d = self.root / "gorse"
        for name in ("data.sqlite3", "cache.sqlite3"):
            for suffix in ("", "-wal", "-shm", "-journal"):
                (d / f"{name}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(d / "cache", ignore_errors=True)
        return self.start_gorse()

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

    # ---- whole stack ---------------------------------------------------------------------
    PARTS = ("postgres", "moto", "kinesis", "gorse")
    # APPS (above) are started on top of these by `gorse-cdc demo` and stopped first

    def up(self) -> list[Part]:
        self.root.mkdir(parents=True, exist_ok=True)
        return [
            self.start_postgres(),
            self.start_moto(),
            self.start_kinesis(),
            self.start_gorse(),
        ]

    def down(self) -> list[str]:
        stopped = []
        for name in (*APPS, *reversed(self.PARTS)):
            if self.procs.stop(name):
                stopped.append(name)
        return stopped

    def status(self) -> dict[str, int | None]:
        return {name: self.procs.pid(name) for name in self.PARTS}
