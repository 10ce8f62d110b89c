"""The stack's Gorse topologies: process names, stores, and a running other topology refused
(no process is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoints.stack.gorse import LocalGorse
from entrypoints.stack.processes import ProcessTable, _start_time
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

pytestmark = pytest.mark.unit


def gorse(tmp_path: Path, **stack: object) -> LocalGorse:
    s = Settings(stack={"dir": tmp_path, **stack})
    return LocalGorse(s, tmp_path, ProcessTable(tmp_path), postgres=None)  # type: ignore[arg-type]


def pretend_running(g: LocalGorse, name: str) -> None:
    """A pid file naming this test's own process: ProcessTable takes it as running."""
    g.procs.run_dir.mkdir(parents=True, exist_ok=True)
    g.procs.pid_file(name).write_text(f"{os.getpid()}\n{_start_time(os.getpid())}\n")


def test_names_and_stores_per_topology(tmp_path: Path) -> None:
    single = gorse(tmp_path)
    assert single.names == ["gorse"]
    assert all(u.startswith("sqlite://") for u in single.stores())
    cluster = gorse(tmp_path, gorse_topology="cluster", gorse_server_ports=[1, 2, 3], gorse_database="g_x")
    assert cluster.names == [
        "gorse-master",
        "gorse-server-1",
        "gorse-server-2",
        "gorse-server-3",
        "gorse-worker",
    ]
    data, cache = cluster.stores()
    assert "/g_x_data?" in data and "/g_x_cache?" in cache and data.startswith("postgres://")


def test_a_database_name_must_be_an_identifier(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="gorse_database"):
        _ = gorse(tmp_path, gorse_topology="cluster", gorse_database="x; DROP").databases


def test_the_other_topology_running_is_refused_and_listed(tmp_path: Path) -> None:
    pretend_running(gorse(tmp_path), "gorse")
    cluster = gorse(tmp_path, gorse_topology="cluster")
    assert cluster.running() == {"gorse": os.getpid()}
    with pytest.raises(FatalError, match="stack down"):
        cluster.start(lambda *a: None)
    pretend_running(cluster, "gorse-server-2")
    assert set(gorse(tmp_path).running()) == {"gorse", "gorse-server-2"}
