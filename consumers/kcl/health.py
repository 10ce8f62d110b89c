"""The KCL engine's own /healthz and /readyz (and /metrics: the daemon is up) on
settings.consumer.metrics_port, served by the wrapper process beside the daemon: the ECS health
check and the load balancer look there whether the worker holds shards or not. Each shard's
processor serves its full /metrics and /readyz on the next free ports (consumers.kcl.runtime)."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest


class DaemonHealth:
    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int) -> None:
        registry = CollectorRegistry()
        up = Gauge("gorse_cdc_kcl_daemon_up", "1 while the KCL MultiLangDaemon runs", registry=registry)
        up.set_function(lambda: 1.0 if proc.poll() is None else 0.0)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                alive = proc.poll() is None
                if self.path == "/metrics":
                    status, body, kind = 200, generate_latest(registry), CONTENT_TYPE_LATEST
                elif self.path in ("/healthz", "/readyz"):
                    status = 200 if alive else 503
                    body, kind = b'{"kcl_daemon": %s}' % (b"true" if alive else b"false"), "application/json"
                else:
                    status, body, kind = 404, b"", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="kcl-health", daemon=True)

    def __enter__(self) -> DaemonHealth:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
