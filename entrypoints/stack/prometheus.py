"""Prometheus in the local stack: Debian's ``prometheus`` package (promtool comes with it),
installed when missing (as root, like PostgreSQL), run by the stack on loopback with the
alert rules of infra/prometheus/rules.yml, scraping:

- the consumers: consumer.metrics_port and the next 9 ports (each consumer on a host takes
  the next free one), through a file_sd target file (``targets/consumers.json``) that
  anyone may rewrite to add hosts;
- the local DMS on DMS_METRICS_PORT (``gorse-cdc dms run --metrics-port 9120``);
- the gateway's /metrics over HTTPS with an admin key the stack makes once
  (``prometheus/gateway.key``), trusting the stack's CA;
- the status exporter (``gorse-cdc status --serve-metrics``, started beside it): the
  replication slot, the dead-letter store and the last reconcile report as gauges.

Its console is http://127.0.0.1:19090 (+ port offset): /alerts lists the rules' states."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from entrypoints.stack import install
from entrypoints.stack.processes import ProcessSpec, ProcessTable, http_ok
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
RULES = install.REPO_ROOT / "infra" / "prometheus" / "rules.yml"
PORT = 19090
DMS_METRICS_PORT = 9120
CONSUMER_PORTS = 10  # consumers.health.PORT_TRIES
SCRAPE_S = 5


def ensure_prometheus() -> Path:
    """Debian's prometheus (2.42 on bookworm: prometheus and promtool); returns promtool.
    The package's own service is never used (policy-rc.d usually stops it starting; the stack
    runs its own on another port either way)."""
    if PROMETHEUS.exists() and PROMTOOL.exists():
        return PROMTOOL
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise FatalError("Prometheus is missing: install the Debian package prometheus (it has promtool)")
    print("installing Prometheus (Debian package prometheus) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install._run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    install._run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
        "apt-get install prometheus",
        env=env,
    )
    # the package starts its own service on :9090 where nothing forbids it (no policy-rc.d):
    # the stack runs its own, so stop that one (best effort; a machine without it is fine)
    for argv in (["systemctl", "disable", "--now", "prometheus"], ["service", "prometheus", "stop"]):
        if shutil.which(argv[0]):
            subprocess.run(argv, capture_output=True, check=False, timeout=60)
    return PROMTOOL


def port(settings: Settings) -> int:
    return PORT + settings.stack.port_offset


def url(settings: Settings) -> str:
    return f"http://{settings.stack.host}:{port(settings)}"


def config(settings: Settings, folder: Path, gateway_key: Path | None) -> dict[str, object]:
    """prometheus.yml (JSON is YAML) for the stack's ports."""
    host = settings.stack.host
    jobs: list[dict[str, object]] = [
        {"job_name": "consumers", "file_sd_configs": [{"files": [str(folder / "targets" / "*.json")]}]},
        {"job_name": "dms", "static_configs": [{"targets": [f"{host}:{DMS_METRICS_PORT}"]}]},
        {
            "job_name": "status",
            "static_configs": [{"targets": [f"{host}:{settings.stack.port('status_exporter')}"]}],
        },
    ]
    if gateway_key is not None:
        jobs.append(
            {
                "job_name": "gateway",
                "scheme": "https" if settings.gateway.tls else "http",
                "tls_config": {"ca_file": str(settings.stack.dir.resolve() / "tls" / "ca.pem")},
                "authorization": {"type": "Bearer", "credentials_file": str(gateway_key)},
                "static_configs": [{"targets": [f"{settings.gateway.host}:{settings.gateway_port}"]}],
            }
        )
    return {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": jobs,
    }


def consumer_targets(settings: Settings) -> list[dict[str, object]]:
    first = settings.consumer.metrics_port
    host = settings.stack.host
    return [{"targets": [f"{host}:{p}" for p in range(first, first + CONSUMER_PORTS)]}] if first else []


async def _admin_key(settings: Settings) -> str:
    from gateway.keys import Role
    from gateway.wiring import key_store, open_aws

    async with open_aws(settings, "dynamodb") as (dynamodb,):
        store = key_store(settings, dynamodb)
        await store.ensure_table()
        _, key = await store.create(Role.ADMIN, 10.0, 20, "prometheus (local stack)")
        return key


def gateway_key(settings: Settings, folder: Path) -> Path | None:
    """An admin key for scraping the gateway, made once and kept 0600 beside the config."""
    path = folder / "gateway.key"
    if not path.exists():
        try:
            key = asyncio.run(_admin_key(settings))
        except Exception as e:  # no key table (moto down): scrape without the gateway
            print(f"prometheus: no admin key for the gateway ({type(e).__name__}): not scraping it")
            return None
        path.touch(mode=0o600)
        path.write_text(key)
    return path


def _write(path: Path, text: str) -> None:
    """Atomically: Prometheus re-reads target files as they change."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def start(settings: Settings, procs: ProcessTable, root: Path) -> list[tuple[str, str]]:
    """Write the config, start Prometheus and the status exporter; (name, endpoint) of each."""
    ensure_prometheus()
    folder = root / "prometheus"
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    _write(folder / "targets" / "consumers.json", json.dumps(consumer_targets(settings)))
    key = gateway_key(settings, folder)
    _write(folder / "prometheus.yml", json.dumps(config(settings, folder, key), indent=2))
    host = settings.stack.host
    procs.start(
        ProcessSpec(
            "prometheus",
            [
                str(PROMETHEUS),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={host}:{port(settings)}",
                "--web.enable-lifecycle",
            ],
        )
    )
    cli = [sys.executable, "-m", "entrypoints.cli", "--json-logs"]
    exporter = settings.stack.port("status_exporter")
    argv = [*cli, "status", "--serve-metrics", str(exporter)]
    if key is not None:  # the gateway's rates on the status page
        argv += ["--gateway-key-file", str(key)]
    procs.start(ProcessSpec("status-exporter", argv))
    # a Prometheus already running re-reads the config and the rules
    with contextlib.suppress(OSError):
        urllib.request.urlopen(urllib.request.Request(url(settings) + "/-/reload", method="POST"), timeout=5)  # noqa: S310
    return [("prometheus", url(settings)), ("status-exporter", f"http://{host}:{exporter}/metrics")]


def ready(settings: Settings) -> bool:
    return http_ok(url(settings) + "/-/ready")
