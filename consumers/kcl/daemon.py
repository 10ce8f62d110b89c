"""Runs the real MultiLangDaemon (KCL multilang 3.1.x, the jars amazon-kclpy installs) with
properties written from the settings, until it exits or SIGTERM/SIGINT asks it to stop
(forwarded: the daemon shuts its shard processors down gracefully, each checkpointing)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from consumers.kcl.health import DaemonHealth
from consumers.kcl.properties import daemon_environment, daemon_properties, kcl_kinesis_endpoint, render
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
# kinesalite (3.3.3) cuts CBOR responses at ~16 KB: the SDK's switch to JSON (harmless on AWS)
JAVA_OPTIONS = ["-Daws.cborEnabled=false"]
LOGBACK = Path(__file__).with_name("logback.xml")


def jar_dir() -> Path:
    """The multilang jars amazon-kclpy's own setup downloaded from Maven Central."""
    try:
        from amazon_kclpy import kcl
    except ImportError as e:
        raise FatalError("amazon-kclpy is not installed: run scripts/bootstrap.sh") from e
    jars = Path(kcl.__file__).parent / "jars"
    if not any(jars.glob("amazon-kinesis-client-multilang-*.jar")):
        raise FatalError(
            f"the KCL multilang jars are missing from {jars}: amazon-kclpy downloads them from "
            "Maven Central when it is installed; reinstall it where Maven Central is reachable "
            "(pip install --force-reinstall --no-cache-dir 'amazon-kclpy>=3.1.3,<3.2')"
        )
    return jars


def java_executable(settings: Settings) -> str:
    java = shutil.which(settings.kcl.java)
    if java is None:
        raise FatalError(f"Java 17+ is needed by the KCL engine: {settings.kcl.java!r} not found (kcl.java)")
    return java


def daemon_command(settings: Settings, properties_file: Path) -> list[str]:
    classpath = os.pathsep.join([str(jar_dir() / "*"), str(properties_file.parent)])
    return [
        java_executable(settings),
        *JAVA_OPTIONS,
        "-cp",
        classpath,
        DAEMON_CLASS,
        "--properties-file",
        properties_file.name,
        "--log-configuration",
        str(LOGBACK),
    ]


def check_local_endpoint(settings: Settings) -> None:
    """Locally, a stack started before the h2c listener existed has none: say so at once
    (the daemon itself would retry the connection for minutes)."""
    endpoint = kcl_kinesis_endpoint(settings)
    if not settings.local or not endpoint:
        return
    url = urlsplit(endpoint)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2).close()
    except OSError as e:
        raise FatalError(
            f"the KCL's Kinesis endpoint {endpoint} (cleartext HTTP/2) does not answer ({e}): restart "
            "the local stack (gorse-cdc stack down && gorse-cdc stack up) to get its h2c listener"
        ) from None


def run_daemon(settings: Settings, worker_id: str, log_flags: str = "") -> int:
    """Run the daemon in the foreground; its exit code is ours."""
    check_local_endpoint(settings)
    props = daemon_properties(settings, worker_id, log_flags=log_flags)
    with tempfile.TemporaryDirectory(prefix="gorse-cdc-kcl-") as tmp:
        path = Path(tmp) / "gorse-cdc-kcl.properties"
        path.write_text(render(props), "utf-8")
        argv = daemon_command(settings, path)
        log.info(
            "starting the KCL MultiLangDaemon",
            extra={
                "worker": worker_id,
                "stream": props["streamName"],
                "lease_table": props["applicationName"],
            },
        )
        proc = subprocess.Popen(argv, env={**os.environ, **daemon_environment(settings)})

        asked: list[int] = []

        def forward(signum: int, _frame: FrameType | None) -> None:
            asked.append(signum)
            proc.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        c = settings.consumer
        health = DaemonHealth(proc, c.metrics_host, c.metrics_port) if c.metrics_port else None
        try:
            with health or contextlib.nullcontext():
                code = proc.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if proc.poll() is None:
                proc.kill()
    # the JVM exits 128 + signal after its shutdown hook (graceful shutdown) ran: asked for
    if asked and code == 128 + asked[0]:
        log.info("the KCL MultiLangDaemon stopped", extra={"worker": worker_id})
        return 0
    return code
