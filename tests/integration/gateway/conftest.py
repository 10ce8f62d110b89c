"""Fixtures of the gateway's integration tests: a real `gorse-cdc gateway serve` process (HTTPS
with the stack's CA) on the real stack (Gorse, moto's DynamoDB, the Kinesis emulator), with its
own key table and events stream; keys made by the real CLI; a JWKS of a test RSA key served on
loopback (the issuer's side of OAuth2: a test key, not a stand-in for a stack server)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from entrypoints.stack.resources import ensure_stream
from gorse_cdc.settings import Settings

KID = "test-key-1"
CLIENT_ID = "test-app-client"  # the gateway's jwt_audience: the app client whose tokens it takes
CORS_ORIGIN = "https://tv.example"
WORKERS = 2  # the gateway fixture's worker processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Issuer:
    """Signs JWTs with a test RSA key whose public half a loopback JWKS serves."""

    url: str
    key: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey  # a key the JWKS does not list

    def token(
        self,
        sub: str,
        *,
        groups: list[str] | None = None,
        ttl_s: int = 300,
        unknown: bool = False,
        client_id: str = CLIENT_ID,
    ) -> str:
        """A Cognito-style access token (token_use "access", the app client in client_id)."""
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl_s, "iss": "test-issuer"}
        claims |= {"token_use": "access", "client_id": client_id}
        if groups is not None:
            claims["cognito:groups"] = groups
        return jwt.encode(
            claims, self.other if unknown else self.key, algorithm="RS256", headers={"kid": KID}
        )


@pytest.fixture(scope="session")
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    yield Issuer(f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key, other)
    server.shutdown()


@dataclass
class Gateway:
    settings: Settings
    env: dict[str, str]
    port: int
    log: Path
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.settings.stack.dir / "tls" / "ca.pem"

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", "gateway", *args],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        with self.log.open("ab") as f:  # the CLI's own log lines are checked for keys too
            f.write(out.stderr)
        return out.stdout.decode()

    def create_key(self, name: str, role: str, rate: float = 200, burst: int = 400) -> dict[str, Any]:
        key = json.loads(
            self.cli(
                "keys",
                "create",
                "--role",
                role,
                "--name",
                name,
                "--rate",
                str(rate),
                "--burst",
                str(burst),
                "--json",
            )
        )
        self.keys[name] = key
        return key

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "entrypoints.cli",
            "--json-logs",
            "gateway",
            "serve",
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("ab")
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.1)
        raise TimeoutError("gateway did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def gateway(
    stack: object, settings: Settings, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    suffix = uuid.uuid4().hex[:8]
    stream, table = f"gw-events-{suffix}", f"gw-keys-{suffix}"
    ensure_stream(settings, stream, 1)
    env = {
        **os.environ,
        "GORSE_CDC_GATEWAY__KEYS_TABLE": table,
        "GORSE_CDC_GATEWAY__EVENTS_STREAM": stream,
        "GORSE_CDC_GATEWAY__KEY_CACHE_TTL_S": "0",
        "GORSE_CDC_GATEWAY__JWKS_URL": issuer.url,
        "GORSE_CDC_GATEWAY__JWT_ISSUER": "test-issuer",
        "GORSE_CDC_GATEWAY__JWT_AUDIENCE": CLIENT_ID,
        "GORSE_CDC_GATEWAY__CORS_ORIGINS": json.dumps([CORS_ORIGIN]),
        "GORSE_CDC_GATEWAY__MAX_BODY_BYTES": "65536",
        "GORSE_CDC_GATEWAY__CACHE_TTL_S": "30",
        # every test runs on several workers (one port), whatever this machine's CPU count
        "GORSE_CDC_GATEWAY__WORKERS": str(WORKERS),
    }
    gw = Gateway(settings, env, free_port(), tmp_path_factory.mktemp("gateway") / "gateway.log")
    gw.start()
    for role in ("reader", "ingest", "admin"):
        gw.create_key(role, role)
    try:
        yield gw
    finally:
        gw.stop()


def events_consumer(gw: Gateway, log: Path, stream: str | None = None) -> subprocess.Popen[bytes]:
    """A real `gorse-cdc consume` on the gateway's events stream (the same engine as DMS), or
    on ``stream`` with its own lease table."""
    stream = stream or gw.env["GORSE_CDC_GATEWAY__EVENTS_STREAM"]
    argv = [sys.executable, "-m", "entrypoints.cli", "--json-logs", "consume", "--stream", stream]
    argv += ["--lease-table", f"{stream}-leases", "--metrics-port", "0"]
    env = {**gw.env, "GORSE_CDC_CONSUMER__IDLE_PAUSE_MS": "100", "GORSE_CDC_LEASES__FAILOVER_MS": "3000"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
