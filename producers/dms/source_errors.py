"""What a user must change when the source database refuses logical replication (pure).

The local DMS meets the same setup errors as AWS DMS on a new source: wal_level not logical, a
user without REPLICATION, wal2json not installed, the plugin not on the server's allow-list
(PostgreSQL 15.19+: ``output_plugin_libraries``), a slot held by another process, no free slot,
no pg_hba.conf line for replication. Each becomes one line that says what to change; the CLI
prints it and exits 2, never a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from gorse_cdc.errors import FatalError

PLUGIN = "wal2json"


class SourceSetupError(FatalError):
    """The source database is not set up for logical replication; the message says the fix."""


@dataclass(frozen=True)
class Source:
    """Where the source is, for messages (never the password)."""

    host: str
    port: int
    user: str

    @classmethod
    def from_dsn(cls, dsn: str) -> Source:
        if "://" in dsn:
            u = urlsplit(dsn)
            return cls(u.hostname or "localhost", u.port or 5432, u.username or "?")
        kv = dict(re.findall(r"(\w+)\s*=\s*'?([^'\s]*)'?", dsn))
        return cls(kv.get("host", "localhost"), int(kv.get("port", 5432)), kv.get("user", "?"))

    def __str__(self) -> str:
        return f"PostgreSQL at {self.host}:{self.port}"


def explain(message: str, src: Source, slot: str) -> str | None:
    """The fix for a server error message, or None when it is not a setup error we know."""
    m = message.lower()
    if "may not be used as an output plugin" in m:
        return (
            f"{src} does not allow the {PLUGIN} output plugin for replication users: add it to "
            f"output_plugin_libraries (e.g. output_plugin_libraries = 'pgoutput, test_decoding, "
            f"{PLUGIN}'; on RDS in the DB parameter group) and reload the configuration "
            "(SELECT pg_reload_conf())"
        )
    if "wal_level" in m and "logical" in m:
        return (
            f"{src} has wal_level below logical: set wal_level = logical and restart it "
            "(on RDS: rds.logical_replication = 1 in the DB parameter group, then reboot)"
        )
    if (
        "must be superuser or replication role" in m
        or "permission denied to start wal sender" in m
        or ("replication" in m and "must be superuser" in m)
    ):
        return (
            f"user {src.user} may not replicate from {src}: ALTER ROLE {src.user} REPLICATION "
            f"(on RDS: GRANT rds_replication TO {src.user})"
        )
    if f'could not access file "{PLUGIN}"' in m or (PLUGIN in m and "no such file" in m):
        return (
            f"{src} has no {PLUGIN} plugin installed: install it on the server (Debian: "
            f"apt-get install postgresql-15-{PLUGIN}; RDS ships it)"
        )
    held = re.search(r'replication slot "([^"]+)" is active for pid (\d+)', m)
    if held:
        return (
            f"replication slot {held.group(1)} on {src} is in use by another process (pid "
            f"{held.group(2)}): stop the other `gorse-cdc dms run`, or give this one its own slot "
            "(GORSE_CDC_SOURCE__SLOT_NAME)"
        )
    if "all replication slots are in use" in m:
        return (
            f"{src} has no free replication slot: drop an unused slot (pg_replication_slots) or "
            "raise max_replication_slots and restart it"
        )
    if "no pg_hba.conf entry for replication connection" in m:
        return (
            f"{src} refuses replication connections from this host: add a line "
            f"'host replication {src.user} <this host>/32 scram-sha-256' to pg_hba.conf and reload"
        )
    if "password authentication failed" in m:
        return f"{src} refused user {src.user}'s password: check GORSE_CDC_SOURCE__DSN (or source.password)"
    if "connection refused" in m or "could not connect to server" in m or "connection to server at" in m:
        return f"cannot reach {src}: is it running and listening there? (GORSE_CDC_SOURCE__DSN)"
    return None


def setup_error(exc: BaseException, src: Source, slot: str) -> SourceSetupError | None:
    """A SourceSetupError for a driver error (psycopg2 or psycopg), or None if unknown."""
    line = explain(str(exc), src, slot)
    return None if line is None else SourceSetupError(line)


def preflight(
    src: Source, *, wal_level: str, can_replicate: bool, superuser: bool, allow_list: str | None
) -> str | None:
    """Check what an ordinary connection can see before opening the slot; the first problem's
    fix, or None. allow_list is None when the server has no output_plugin_libraries."""
    if wal_level != "logical":
        return explain("logical decoding requires wal_level >= logical", src, "")
    if not (can_replicate or superuser):
        return explain("must be superuser or replication role to start walsender", src, "")
    if allow_list is not None:  # superusers too (checked on 15.20)
        allowed = {n.strip() for n in allow_list.split(",")}
        if PLUGIN not in allowed:
            return explain(f'library "{PLUGIN}" may not be used as an output plugin', src, "")
    return None
