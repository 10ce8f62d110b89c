"""The local stack's PostgreSQL 15 + wal2json: the RDS stand-in, a cluster of its own.

Where the cluster lives: ``<stack dir>/postgres`` when the ``postgres`` user can reach it. Run as
root from a private checkout (``/root`` and ``mktemp -d`` folders are mode 700) it cannot, and
loosening the user's folders is not ours to do: the cluster then lives under
``/var/lib/gorse-cdc/<name>-<hash of the stack dir>`` and ``<stack dir>/postgres`` is a symlink to
it, so ``stack down``, ``status`` and ``down --purge`` find it the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from entrypoints.stack import install, pgconf
from gorse_cdc.errors import FatalError
from gorse_cdc.settings import Settings

PG_USER = "postgres"
EXTERNAL_ROOT = Path("/var/lib/gorse-cdc")


def _as_root() -> bool:
    return os.geteuid() == 0


def as_owner(argv: list[str]) -> list[str]:
    """Run ``argv`` as the postgres user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", PG_USER, "--", *argv] if _as_root() else argv


def owner_can_reach(path: Path) -> bool:
    """Whether the postgres user can traverse every folder down to ``path``."""
    if not _as_root():
        return True
    probe = subprocess.run(as_owner(["test", "-x", str(path)]), cwd="/", capture_output=True, check=False)
    return probe.returncode == 0


def external_home(stack_dir: Path) -> Path:
    digest = hashlib.sha256(str(stack_dir).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stack_dir.parent.name or "stack")
    return EXTERNAL_ROOT / f"{name}-{digest}"


class LocalPostgres:
    def __init__(self, settings: Settings, stack_dir: Path) -> None:
        self.settings = settings
        self.stack_dir = stack_dir
        self.link = stack_dir / "postgres"
        self.host = settings.stack.host
        self.port = settings.stack.port("postgres")

    # ---- where ---------------------------------------------------------------------------
    @property
    def base(self) -> Path:
        """The cluster's folder (data/, run/), resolved: what the postgres user is given."""
        return self.link.resolve() if self.link.is_symlink() else self.link

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    def _place(self) -> Path:
        """Choose (once) where a new cluster lives; an existing one stays where it is."""
        if self.link.is_symlink() or (self.link / "data" / "PG_VERSION").exists():
            return self.base
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        if owner_can_reach(self.stack_dir):
            self.link.mkdir(exist_ok=True)
            return self.link
        home = external_home(self.stack_dir.resolve())
        EXTERNAL_ROOT.mkdir(parents=True, exist_ok=True)
        os.chmod(EXTERNAL_ROOT, 0o755)  # noqa: S103 - a root-owned folder postgres must traverse
        home.mkdir(exist_ok=True)
        if self.link.exists():  # an empty folder from an earlier failed attempt
            self.link.rmdir()
        self.link.symlink_to(home, target_is_directory=True)
        print(f"PostgreSQL cannot reach {self.stack_dir}: its cluster lives in {home}", flush=True)
        return home

    # ---- setup ---------------------------------------------------------------------------
    def init(self) -> None:
        """initdb once; then (every time) write gorse-cdc.conf for the installed server."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb(self._place())
        self.write_conf()

    def _initdb(self, base: Path) -> None:
        run = base / "run"
        run.mkdir(parents=True, exist_ok=True)
        if _as_root():
            os.chmod(base, 0o755)  # noqa: S103 - our own folder, postgres must traverse it
            shutil.chown(base, PG_USER, PG_USER)
            shutil.chown(run, PG_USER, PG_USER)
        pwfile = base / "pw"
        pwfile.write_text("postgres\n")
        if _as_root():
            shutil.chown(pwfile, PG_USER, PG_USER)
        argv = [str(install.PG_BIN / "initdb"), "-D", str(base / "data"), "-U", "postgres"]
        argv += ["--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"]
        proc = subprocess.run(as_owner(argv), cwd=base, check=False, capture_output=True, text=True)
        pwfile.unlink()
        if proc.returncode != 0:
            raise FatalError(
                f"initdb failed (the '{PG_USER}' user must be able to reach {base}):\n{proc.stderr.strip()}"
            )
        (base / "data" / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all all {self.host}/32 scram-sha-256\n"
            f"host replication all {self.host}/32 scram-sha-256\n"
        )

    def describe_config(self) -> str:
        proc = subprocess.run(
            [str(install.PG_BIN / "postgres"), "--describe-config"],
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise FatalError(f"postgres --describe-config failed: {proc.stderr.strip()}")
        return proc.stdout

    def write_conf(self, describe_config: str | None = None) -> str | None:
        """Write gorse-cdc.conf for this server (and include it); returns the allow-list set."""
        allow = pgconf.plugin_allow_list(
            describe_config if describe_config is not None else self.describe_config()
        )
        text = pgconf.managed_conf(
            host=self.host, port=self.port, socket_dir=self.socket_dir, allow_list=allow
        )
        managed = self.data / pgconf.MANAGED_FILE
        if not managed.exists() or managed.read_text() != text:
            managed.write_text(text)
            if _as_root():
                shutil.chown(managed, PG_USER, PG_USER)
        conf = self.data / "postgresql.conf"
        current = conf.read_text()
        wanted = pgconf.with_include(current)
        if wanted != current:
            conf.write_text(wanted)
        return allow

    def argv(self) -> list[str]:
        return [str(install.PG_BIN / "postgres"), "-D", str(self.data)]

    # ---- queries -------------------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres") -> str:
        argv = as_owner(
            [
                *("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"),
                *("-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres"),
                *("-d", db, "-tAc", sql),
            ]
        )
        proc = subprocess.run(argv, cwd="/", capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FatalError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def ready(self) -> bool:
        try:
            return self.psql("SELECT 1") == "1"
        except FatalError:
            return False

    def reload(self) -> None:
        """Apply gorse-cdc.conf to a server that was already running (a cluster made before)."""
        self.psql("SELECT pg_reload_conf()")

    def bootstrap(self) -> None:
        """The source role (LOGIN REPLICATION, not superuser: what RDS gives DMS), the
        databases, and the OTT schema."""
        s = self.settings.source
        user, pw, db = s.user, s.password.get_secret_value(), s.database
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", user) or not re.fullmatch(r"[a-z_][a-z0-9_]*", db):
            raise FatalError("source.user and source.database must be plain lower-case identifiers")
        pw_sql = pw.replace("'", "''")
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'"):
            self.psql(f"CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{pw_sql}'")
        for name in (db,):
            if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
                self.psql(f"CREATE DATABASE {name} OWNER {user}")
        schema = resources.files("entrypoints.stack").joinpath("schema.sql").read_text("utf-8")
        self.psql(f"SET ROLE {user}; {schema}", db=db)

    def purge(self) -> None:
        """Delete the cluster's files (the stack must be down), wherever they live."""
        if self.link.is_symlink():
            shutil.rmtree(self.base, ignore_errors=True)
            self.link.unlink()
        else:
            shutil.rmtree(self.link, ignore_errors=True)
