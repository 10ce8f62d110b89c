"""The source database as a new user meets it: PostgreSQL 15.19+ allow-lists output plugins,
and `gorse-cdc dms run` turns setup errors into one line that says what to change, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from entrypoints.stack import pgconf
from entrypoints.stack.components import Stack
from gorse_cdc.settings import Settings
from producers.dms.slot import drop_slot

pytestmark = pytest.mark.usefixtures("stack")


def _dms(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "dms", "run", "--until-idle"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _superuser(stack: Stack, sql: str) -> str:
    return stack.postgres.psql(sql)


def test_the_source_user_creates_a_wal2json_slot_on_the_installed_server(settings: Settings) -> None:
    stack = Stack(settings)
    knows = pgconf.describe_default(stack.postgres.describe_config(), pgconf.ALLOW_LIST) is not None
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.source_dsn, autocommit=True) as conn:
        # the setting is visible to superusers only
        allow = stack.postgres.psql("SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'")
        assert bool(allow) == knows, (
            f"{stack.postgres.psql('SHOW server_version')}: server and binary disagree"
        )
        if knows:
            assert "wal2json" in [n.strip() for n in allow.split(",")]
        try:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (name,))
            row = conn.execute(
                "SELECT slot_name::text, plugin::text FROM pg_replication_slots WHERE slot_name = %s",
                (name,),
            ).fetchone()
            assert row == (name, "wal2json")
        finally:
            drop_slot(settings.source_dsn, name)


@pytest.fixture
def plugin_refused(settings: Settings) -> Iterator[None]:
    """The server's default allow-list (what a 15.20 server without the stack's config has)."""
    stack = Stack(settings)
    if pgconf.describe_default(stack.postgres.describe_config(), pgconf.ALLOW_LIST) is None:
        pytest.skip("this PostgreSQL has no output_plugin_libraries (older than 15.19)")
    _superuser(stack, "ALTER SYSTEM SET output_plugin_libraries = 'pgoutput, test_decoding'")
    _superuser(stack, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        _superuser(stack, "ALTER SYSTEM RESET output_plugin_libraries")
        _superuser(stack, "SELECT pg_reload_conf()")


@pytest.mark.usefixtures("plugin_refused")
def test_dms_run_names_the_allow_list_when_wal2json_is_refused(settings: Settings) -> None:
    out = _dms({"GORSE_CDC_SOURCE__SLOT_NAME": f"t_{uuid.uuid4().hex[:10]}"})
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("gorse-cdc dms: ")
    assert "output_plugin_libraries" in last and "wal2json" in last
    assert "Traceback" not in out.stderr


@pytest.mark.usefixtures("plugin_refused")
def test_the_slot_itself_is_refused_the_same_way(settings: Settings) -> None:
    """Past the preflight (e.g. a race with a reload), CREATE_REPLICATION_SLOT's own refusal."""
    from producers.dms.slot import ReplicationStream
    from producers.dms.source_errors import SourceSetupError

    stream = ReplicationStream(settings.source_dsn, f"t_{uuid.uuid4().hex[:10]}")
    try:
        with pytest.raises(SourceSetupError, match="output_plugin_libraries"):
            stream.create_slot(export_snapshot=False)
    finally:
        stream.close()


def test_dms_run_names_the_missing_replication_privilege(settings: Settings) -> None:
    stack = Stack(settings)
    role = f"norepl_{uuid.uuid4().hex[:8]}"
    _superuser(stack, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        dsn = (
            f"postgresql://{role}:pw-{role}@{settings.stack.host}:{settings.stack.port('postgres')}/"
            f"{settings.source.database}"
        )
        out = _dms({"GORSE_CDC_SOURCE__DSN": dsn, "GORSE_CDC_SOURCE__SLOT_NAME": "t_norepl"})
        assert out.returncode == 2, out.stderr
        last = out.stderr.strip().splitlines()[-1]
        assert f"ALTER ROLE {role} REPLICATION" in last
        assert f"pw-{role}" not in out.stderr  # the password is never printed
        assert "Traceback" not in out.stderr
    finally:
        _superuser(stack, f"DROP ROLE {role}")


def _as_made_before_the_fix(stack: Stack) -> None:
    data = stack.postgres.data
    managed = (data / pgconf.MANAGED_FILE).read_text()
    old_block = "\n".join(line for line in managed.splitlines() if not line.startswith(pgconf.ALLOW_LIST))
    conf = (data / "postgresql.conf").read_text().replace(pgconf.INCLUDE_LINE, "")
    (data / "postgresql.conf").write_text(conf + "\n# gorse-cdc local stack\n" + old_block + "\n")
    (data / pgconf.MANAGED_FILE).unlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="the private-folder case is about running as root")
def test_postgres_runs_from_a_private_folder(settings: Settings) -> None:
    """A checkout in a mode-700 folder (root's home, mktemp -d): the cluster lives where the
    postgres user can reach it, the private folder is not loosened, and down/purge find it."""
    private = Path(tempfile.mkdtemp(prefix="gorse-cdc-private-"))  # mode 700
    s = settings.model_copy(
        update={
            "stack": settings.stack.model_copy(update={"dir": private / ".stack", "port_offset": 800}),
        }
    )
    stack = Stack(s)
    try:
        stack.start_postgres()
        assert oct(private.stat().st_mode & 0o777) == "0o700"
        assert stack.postgres.link.is_symlink()
        home = stack.postgres.base
        assert not str(home).startswith(str(private))
        assert stack.status()["postgres"] is not None
        dsn = s.source_dsn
        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (name,))
        drop_slot(dsn, name)
        # a cluster made before the fix (its settings in postgresql.conf, no gorse-cdc.conf),
        # running: `stack up` repairs it by a reload, same process, data kept
        _as_made_before_the_fix(stack)
        stack.postgres.reload()
        pid = stack.status()["postgres"]
        knows = pgconf.describe_default(stack.postgres.describe_config(), pgconf.ALLOW_LIST) is not None
        if knows:
            assert "wal2json" not in stack.postgres.psql("SHOW output_plugin_libraries")
        stack.start_postgres()
        assert stack.status()["postgres"] == pid
        if knows:
            assert "wal2json" in stack.postgres.psql("SHOW output_plugin_libraries")
        # and stopped: `stack up` starts it with the allow-list
        _as_made_before_the_fix(stack)
        stack.down()
        stack.start_postgres()
        if knows:
            assert "wal2json" in stack.postgres.psql("SHOW output_plugin_libraries")
    finally:
        stack.down()
        stack.postgres.purge()
        home_gone = not stack.postgres.link.exists()
        import shutil

        shutil.rmtree(private, ignore_errors=True)
    assert home_gone
    assert not home.exists()
