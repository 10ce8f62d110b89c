"""The local stack's Gorse, in one of two topologies (settings.stack.gorse_topology):

- ``single``: one gorse-in-one (master + server, no worker), SQLite stores by default;
- ``cluster``: one gorse-master (the gorse_http / gorse_grpc ports: dashboard, bulk endpoints),
  a gorse-server per ``stack.gorse_server_ports`` and one gorse-worker (``--interval``
  stack.gorse_worker_interval_s), on PostgreSQL databases of the stack's own cluster.

All binaries come from the one Gorse build (install.ensure_gorse). Servers and the worker read
the config, stores included, from the master over gRPC; only the master is given the stores.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from entrypoints.stack import install
from entrypoints.stack.postgres import LocalPostgres
from entrypoints.stack.processes import ProcessSpec, ProcessTable, http_ok, tcp_open
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

# Gorse opens SQLite with busy_timeout and WAL; writers then meet each other as SQLITE_BUSY
# inside deferred transactions (a read that turns into a write cannot wait, it fails) and the
# busy handler sleeps up to 100 ms between tries. BEGIN IMMEDIATE takes the write lock first,
# so writers queue instead; synchronous=NORMAL is SQLite's recommended setting in WAL mode
# (commits do not fsync; a power cut may lose the last commits, never corrupts). Appended by
# Gorse itself: storage.AppendURLParams keeps ours.
SQLITE_PARAMS = "?_txlock=immediate&_pragma=synchronous(normal)"

SINGLE = "gorse"
MASTER = "gorse-master"
WORKER = "gorse-worker"
Wait = Callable[[str, Callable[[], bool], str, float], None]


def server_name(i: int) -> str:
    return f"gorse-server-{i + 1}"


class LocalGorse:
    """Starts, stops and resets the stack's Gorse processes (their pid files in ``procs``)."""

    def __init__(self, settings: Settings, root: Path, procs: ProcessTable, postgres: LocalPostgres) -> None:
        self.settings = settings
        self.st = settings.stack
        self.dir = root / "gorse"
        self.procs = procs
        self.postgres = postgres
        self.host = settings.stack.host

    # ---- names ---------------------------------------------------------------------------
    @property
    def cluster(self) -> bool:
        return self.st.gorse_topology == "cluster"

    def cluster_names(self) -> list[str]:
        return [MASTER, *(server_name(i) for i in range(len(self.st.gorse_server_ports))), WORKER]

    @property
    def names(self) -> list[str]:
        """The processes of the configured topology, in start order."""
        return self.cluster_names() if self.cluster else [SINGLE]

    def running(self) -> dict[str, int]:
        """Every Gorse process of this stack that runs, whichever topology started it."""
        found = [SINGLE, MASTER, WORKER]
        if self.procs.run_dir.exists():
            found += sorted(p.stem for p in self.procs.run_dir.glob("gorse-server-*.pid"))
        return {n: pid for n in found if (pid := self.procs.pid(n)) is not None}

    # ---- stores --------------------------------------------------------------------------
    @property
    def databases(self) -> tuple[str, str]:
        name = self.st.gorse_database
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise FatalError(f"stack.gorse_database must be a plain lower-case identifier, not {name!r}")
        return f"{name}_data", f"{name}_cache"

    def stores(self) -> tuple[str, str]:
        """(data store URL, cache store URL) for GORSE_DATA_STORE / GORSE_CACHE_STORE."""
        if self.st.gorse_store_kind == "postgres":
            s = self.settings.source
            base = (
                f"postgres://{s.user}:{s.password.get_secret_value()}@{self.host}:{self.st.port('postgres')}"
            )
            return tuple(f"{base}/{db}?sslmode=disable" for db in self.databases)  # type: ignore[return-value]
        d = self.dir
        return f"sqlite://{d}/data.sqlite3{SQLITE_PARAMS}", f"sqlite://{d}/cache.sqlite3{SQLITE_PARAMS}"

    def _create_databases(self) -> None:
        owner = self.settings.source.user
        for db in self.databases:
            if not self.postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'"):
                self.postgres.psql(f"CREATE DATABASE {db} OWNER {owner}")
                # The durability SQLite_PARAMS give the SQLite stores (synchronous=NORMAL: a crash
                # may lose the last commits, never corrupts): commits do not wait for the WAL
                # flush (9 ms a commit here, a third of a per-row call). Only Gorse's databases.
                self.postgres.psql(f"ALTER DATABASE {db} SET synchronous_commit = off")

    def _drop_stores(self) -> None:
        if self.st.gorse_store_kind == "postgres":
            for db in self.databases:
                self.postgres.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for name in ("data.sqlite3", "cache.sqlite3"):
            for suffix in ("", "-wal", "-shm", "-journal"):
                (self.dir / f"{name}{suffix}").unlink(missing_ok=True)

    # ---- config --------------------------------------------------------------------------
    def config(self) -> Path:
        """docker/gorse/config.toml with the stack's loopback host and master ports."""
        base = (install.GORSE_MODULE_DIR / "config.toml").read_text("utf-8")
        text = re.sub(r"(?m)^port = \d+", f"port = {self.st.port('gorse_grpc')}", base)
        if self.st.gorse_fit_period:
            text = re.sub(r'(?m)^fit_period = "[^"]*"', f'fit_period = "{self.st.gorse_fit_period}"', text)
        text = re.sub(r"(?m)^http_port = \d+", f"http_port = {self.st.port('gorse_http')}", text)
        text = re.sub(
            r'(?m)^(http_)?host = "[^"]*"', lambda m: f'{m.group(1) or ""}host = "{self.host}"', text
        )
        path = self.dir / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def _master_env(self) -> dict[str, str]:
        data_store, cache_store = self.stores()
        key = self.settings.gorse.api_key.get_secret_value()
        return {
            "GORSE_DATA_STORE": data_store,
            "GORSE_CACHE_STORE": cache_store,
            "GORSE_SERVER_API_KEY": key,
            "GORSE_ADMIN_API_KEY": key,
            # Without dashboard credentials the master's HTTP port lets every request through
            # with the server key (LoginFilter): set them.
            "GORSE_DASHBOARD_USER_NAME": "gorse-cdc",
            "GORSE_DASHBOARD_PASSWORD": key,
        }

    # ---- start / stop --------------------------------------------------------------------
    def _refuse_other_topology(self) -> None:
        other = [n for n in self.running() if n not in self.names]
        if other:
            raise FatalError(
                f"Gorse runs as another topology ({', '.join(other)}) than stack.gorse_topology = "
                f"{self.st.gorse_topology!r}: stop it first (`gorse-cdc stack down`), then start again"
            )

    def _free_ports(self, name: str, ports: list[int]) -> None:
        """A Gorse just stopped may still hold its ports for a moment: wait for them."""
        if self.procs.pid(name) is not None:
            return
        deadline = time.monotonic() + 10
        while any(tcp_open(self.host, p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self, wait: Wait) -> list[tuple[str, str]]:
        """Start what is not running; wait until healthy. Returns (name, endpoint) per process."""
        self._refuse_other_topology()
        if self.st.gorse_store_kind == "postgres":
            self._create_databases()
        config = self.config()
        master_url = self.settings.gorse_url
        grpc, http = self.st.port("gorse_grpc"), self.st.port("gorse_http")
        if not self.cluster:
            binary = install.ensure_gorse(self.st.cache_dir, self.st.gorse_version)
            # a fresh cache path per stack: the master prefers the [recommend] it saw last
            cache = self.dir / "cache"
            cache.mkdir(parents=True, exist_ok=True)
            self._free_ports(SINGLE, [http, grpc])
            argv = [str(binary), "-c", str(config), "--cache-path", str(cache)]
            self.procs.start(ProcessSpec(SINGLE, argv, env=self._master_env()))
            wait(SINGLE, lambda: http_ok(master_url + "/api/health/ready"), "Gorse", 90)
            return [(SINGLE, master_url)]

        version = self.st.gorse_version
        bins = {c: install.ensure_gorse(self.st.cache_dir, version, c) for c in install.GORSE_COMMANDS}
        cache = self.dir / "master-cache"
        cache.mkdir(parents=True, exist_ok=True)
        started: list[tuple[str, str]] = []
        self._free_ports(MASTER, [http, grpc])
        argv = [str(bins[MASTER]), "-c", str(config), "--cache-path", str(cache)]
        self.procs.start(ProcessSpec(MASTER, argv, env=self._master_env()))
        wait(MASTER, lambda: http_ok(master_url + "/api/health/ready"), "gorse-master", 90)
        started.append((MASTER, f"{master_url} (gRPC {self.host}:{grpc})"))
        to_master = ["--master-host", self.host, "--master-port", str(grpc), "--http-host", self.host]
        servers = []
        for i, port in enumerate(self.st.server_ports):
            name = server_name(i)
            self._free_ports(name, [port])
            argv = [str(bins["gorse-server"]), *to_master, "--http-port", str(port)]
            argv += ["--cache-path", str(self.dir / f"{name}.data")]
            self.procs.start(ProcessSpec(name, argv))
            servers.append((name, f"http://{self.host}:{port}"))
        for name, url in servers:  # started together: each needs the master's config, then its stores
            wait(name, lambda u=url: http_ok(u + "/api/health/ready"), name, 90)  # type: ignore[misc]
            started.append((name, url))
        worker_port = self.st.port("gorse_worker")
        self._free_ports(WORKER, [worker_port])
        argv = [str(bins[WORKER]), *to_master, "--http-port", str(worker_port)]
        interval = f"{self.st.gorse_worker_interval_s:g}s"
        argv += ["--interval", interval, "--jobs", str(self.st.gorse_worker_jobs)]
        argv += ["--cache-path", str(self.dir / "worker.data")]
        self.procs.start(ProcessSpec(WORKER, argv))
        worker_url = f"http://{self.host}:{worker_port}"
        wait(WORKER, lambda: http_ok(worker_url + "/metrics"), "gorse-worker", 60)
        started.append((WORKER, f"{worker_url}/metrics (--interval {interval})"))
        return started

    def stop(self) -> list[str]:
        """Stop every Gorse process of this stack (whichever topology); servers and worker first."""
        names = sorted(self.running(), key=lambda n: n in (SINGLE, MASTER))
        return [n for n in names if self.procs.stop(n)]

    def reset(self, wait: Wait) -> list[tuple[str, str]]:
        """Stop Gorse, drop its data and cache, start it empty (tests, demos)."""
        for name in reversed(self.names):
            self.procs.stop(name)
        self._drop_stores()
        for cache in ("cache", "master-cache"):
            shutil.rmtree(self.dir / cache, ignore_errors=True)
        return self.start(wait)
