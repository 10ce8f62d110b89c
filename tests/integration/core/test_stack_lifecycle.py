"""`gorse-cdc stack up` twice is harmless; `stack down` leaves no process of the stack.

Runs a second, private stack (own directory and ports) so the session's shared stack is
untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoints.stack.components import Stack


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "stack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _pids(root: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text().split()[0]) for p in (root / "run").glob("*.pid")}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.usefixtures("stack")  # installs everything once
def test_up_twice_then_down_leaves_nothing() -> None:
    # under the repository: PostgreSQL runs as its own user and must traverse the path
    root = Path(".stack-lifecycle-test").resolve()
    shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "GORSE_CDC_STACK__DIR": str(root), "GORSE_CDC_STACK__PORT_OFFSET": "700"}
    try:
        _up_twice_then_down(env, root)
    finally:  # a failed assertion must not leave a private stack running
        _cli(env, "down", "--purge")


def _up_twice_then_down(env: dict[str, str], root: Path) -> None:
    first = _cli(env, "up")
    assert first.returncode == 0, first.stderr
    pids = _pids(root)
    expected = {*Stack.PARTS, *Stack.OBSERVERS}  # the single topology's one Gorse process: "gorse"
    assert set(pids) == expected
    second = _cli(env, "up")
    assert second.returncode == 0, second.stderr
    assert _pids(root) == pids  # nothing restarted, nothing duplicated
    assert _cli(env, "status").returncode == 0

    down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert all(not _alive(pid) for pid in pids.values())
    # no child left either: nothing runs with the private stack's directory on its command line
    leftovers = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == ""
    assert _cli(env, "status").returncode == 3
    # --purge removes the data too, wherever PostgreSQL's cluster lives (/var/lib/gorse-cdc
    # for a checkout the postgres user cannot reach)
    cluster = (root / "postgres").resolve()
    assert _cli(env, "down", "--purge").returncode == 0
    assert not root.exists() and not cluster.exists()
