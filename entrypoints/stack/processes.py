"""Start, watch and stop the stack's own processes through pid files. Nothing else is touched:
``stop`` only signals a pid whose command line still matches what this stack started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gorse_cdc.errors import FatalError


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this user (PostgreSQL refuses root)


class ProcessTable:
    def __init__(self, root: Path) -> None:
        self.run_dir = root / "run"
        self.log_dir = root / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The live pid of ``name`` started by this stack, else None (stale files removed).

        A pid file holds the pid and the process's start time (from /proc), so a pid reused
        by another program is never mistaken for ours."""
        path = self.pid_file(name)
        try:
            pid_text, started = path.read_text().split()[:2]
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        if _start_time(pid) != started or not _alive(pid):
            path.unlink(missing_ok=True)
            return None
        return pid

    def start(self, spec: ProcessSpec) -> int:
        existing = self.pid(spec.name)
        if existing is not None:
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = spec.argv
        if spec.user and os.geteuid() == 0:
            argv = ["runuser", "-u", spec.user, "--", *argv]
        log = open(self.log_file(spec.name), "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, **spec.env}
        proc = subprocess.Popen(
            argv,
            cwd=spec.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid_file(spec.name).write_text(f"{proc.pid}\n{_start_time(proc.pid)}\n")
        return proc.pid

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        pid = self.pid(name)
        if pid is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.2)
        self.pid_file(name).unlink(missing_ok=True)
        return True


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot (survives exec)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (FileNotFoundError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone, once its last thread is gone too
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        if state != "Z":
            return True
        # a leader shows Z while the process's other threads still exit and hold its sockets:
        # a Gorse restarted at that moment failed with "bind: address already in use"
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (FileNotFoundError, IndexError):
        return False


def wait_until(check: Callable[[], bool], what: str, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n  last log lines:\n    " + "\n    ".join(log.read_text(errors="replace").splitlines()[-15:])
    raise FatalError(f"{what} did not become healthy within {timeout_s:.0f} s{tail}")


def tcp_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
