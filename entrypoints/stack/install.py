"""Install what the local stack runs, idempotently, at pinned versions, from the registries:
Debian packages (PostgreSQL 15 + wal2json), the npm emulators, and the real Gorse server
built from the Go module proxy through the wrapper module in docker/gorse/."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from gorse_cdc.errors import FatalError

log = logging.getLogger(__name__)

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
WAL2JSON = Path(f"/usr/lib/postgresql/{PG_VERSION}/lib/wal2json.so")
NPM_PACKAGES = {"kinesalite": "3.3.3", "kinesis-local": "0.6.2"}
REPO_ROOT = Path(__file__).resolve().parents[2]
GORSE_MODULE_DIR = REPO_ROOT / "docker" / "gorse"


def _run(argv: list[str], what: str, **kw: object) -> None:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise FatalError(
            f"{what} failed ({' '.join(argv[:3])} ...):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    log.info("%s done in %.1f s", what, time.monotonic() - started)


def ensure_postgres() -> None:
    if (PG_BIN / "initdb").exists() and WAL2JSON.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise FatalError(
            "PostgreSQL 15 with wal2json is missing: install the Debian packages "
            f"postgresql-{PG_VERSION} and postgresql-{PG_VERSION}-wal2json"
        )
    print("installing PostgreSQL 15 + wal2json (Debian packages) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(
        ["apt-get", "install", "-y", "-qq", f"postgresql-{PG_VERSION}", f"postgresql-{PG_VERSION}-wal2json"],
        "apt-get install postgresql",
        env=env,
    )


MARIADB_BIN = Path("/usr/sbin/mariadbd")


def ensure_mariadb() -> None:
    """Debian's mariadb-server (10.11 on bookworm), for the tests of Gorse on a MySQL store;
    installed when missing (as root, like PostgreSQL). Its service is never started: the tests
    run their own mariadbd (entrypoints.stack.mariadb)."""
    if MARIADB_BIN.exists() and shutil.which("mariadb-install-db"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise FatalError("MariaDB is missing: install the Debian package mariadb-server")
    print("installing MariaDB (Debian package mariadb-server) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mariadb-server", "mariadb-client"],
        "apt-get install mariadb-server",
        env=env,
    )


def ensure_chromium() -> str:
    """Headless Chromium (Debian package) for the gateway's browser test; installed when missing
    (as root, like PostgreSQL). Returns the binary's path."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise FatalError("Chromium is missing: install the Debian package chromium")
    print("installing Chromium (Debian package) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", "chromium"], "apt-get install chromium", env=env)
    return shutil.which("chromium") or "/usr/bin/chromium"


def ensure_npm_packages(cache_dir: Path) -> Path:
    prefix = cache_dir / "npm"
    missing = [n for n in NPM_PACKAGES if not (prefix / "node_modules" / n / "package.json").exists()]
    if missing:
        if shutil.which("npm") is None:
            raise FatalError("npm is missing: install Node.js 20+ to run the Kinesis emulators")
        print(f"installing {', '.join(missing)} (npm) ...", flush=True)
        prefix.mkdir(parents=True, exist_ok=True)
        specs = [f"{n}@{v}" for n, v in NPM_PACKAGES.items()]
        _run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(prefix), *specs],
            "npm install",
        )
    return prefix / "node_modules"


GORSE_COMMANDS = ("gorse-in-one", "gorse-master", "gorse-server", "gorse-worker")


def gorse_binary(cache_dir: Path, version: str, command: str = "gorse-in-one") -> Path:
    return cache_dir / "gorse" / version / command


def ensure_gorse(cache_dir: Path, version: str, command: str = "gorse-in-one") -> Path:
    """Build every Gorse command (GORSE_COMMANDS) once per version, in one ``go build`` (about
    2 minutes on 2 cores), then reuse them. Returns the path of ``command``."""
    if command not in GORSE_COMMANDS:
        raise ValueError(f"unknown Gorse command {command!r}")
    folder = gorse_binary(cache_dir, version).parent
    missing = [c for c in GORSE_COMMANDS if not (folder / c).exists()]
    if not missing:
        return folder / command
    go = shutil.which("go") or next(
        (g for g in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(g).exists()), None
    )
    if go is None:
        raise FatalError("Go (>= 1.26) is missing: it is needed once to build Gorse from the Go module proxy")
    what = ", ".join(missing)
    print(f"building Gorse {version} ({what}) from the Go module proxy (once; ~2 min) ...", flush=True)
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=mod",
        # the gorse-io fork pseudo-versions are not in the checksum database
        "GONOSUMDB": "github.com/gorse-io",
    }
    tmp = folder.with_name(f"{version}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(
        [go, "build", "-o", f"{tmp}/", *(f"github.com/gorse-io/gorse/cmd/{c}" for c in GORSE_COMMANDS)],
        f"go build {' '.join(GORSE_COMMANDS)} {version}",
        cwd=GORSE_MODULE_DIR,
        env=env,
    )
    folder.mkdir(parents=True, exist_ok=True)
    for c in GORSE_COMMANDS:  # each rename is atomic: a reader never sees half a binary
        (tmp / c).rename(folder / c)
    tmp.rmdir()
    return folder / command
