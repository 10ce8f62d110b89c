"""A processor's runtime stops writing once its daemon is gone (re-parented)."""

from __future__ import annotations

import pytest

from gorse_cdc.settings import Settings


def test_the_runtime_stops_when_the_daemon_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers.kcl.runtime import ShardRuntime

    rt = ShardRuntime(Settings())
    try:
        assert not rt.should_stop()
        monkeypatch.setattr("os.getppid", lambda: 1)  # re-parented: the daemon died
        assert rt.should_stop()
    finally:
        rt.close()
