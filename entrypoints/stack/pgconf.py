"""The local PostgreSQL's configuration, decided from what the installed server knows (pure).

PostgreSQL 15.19+ (Debian 15.20-0+deb12u1) adds ``output_plugin_libraries`` (default
``'pgoutput, test_decoding'``): a REPLICATION user may only create logical slots with a plugin on
that list, so wal2json must be added. Older minor versions do not know the parameter and refuse to
start when postgresql.conf names it. So the stack asks the binary (``postgres --describe-config``)
and writes the parameter only when the server knows it.

The stack's settings live in one file of their own, ``gorse-cdc.conf`` in the data directory,
rewritten on every ``stack up`` and included at the end of postgresql.conf: a cluster made by an
older gorse-cdc is repaired by ``stack up`` (start or reload), never by deleting its data.
"""

from __future__ import annotations

from pathlib import Path

ALLOW_LIST = "output_plugin_libraries"
MANAGED_FILE = "gorse-cdc.conf"
INCLUDE_LINE = f"include_if_exists = '{MANAGED_FILE}'"
PLUGINS = ("wal2json",)


def describe_default(describe_config: str, name: str) -> str | None:
    """The default of ``name`` in ``postgres --describe-config`` output, or None if the server
    does not know the parameter. Lines are tab-separated: name, context, group, type, default..."""
    for line in describe_config.splitlines():
        fields = line.split("\t")
        if fields and fields[0] == name:
            return fields[4] if len(fields) > 4 else ""
    return None


def allow_list_with(current: str, plugins: tuple[str, ...] = PLUGINS) -> str:
    """``current`` (a comma-separated list) with ``plugins`` added once each, order kept."""
    names = [n.strip() for n in current.split(",") if n.strip()]
    names += [p for p in plugins if p not in names]
    return ", ".join(names)


def plugin_allow_list(describe_config: str, plugins: tuple[str, ...] = PLUGINS) -> str | None:
    """The value to set for the allow-list, or None when this server has no allow-list."""
    default = describe_default(describe_config, ALLOW_LIST)
    return None if default is None else allow_list_with(default, plugins)


def managed_conf(*, host: str, port: int, socket_dir: Path, allow_list: str | None) -> str:
    """The whole of gorse-cdc.conf."""
    lines = [
        "# written by `gorse-cdc stack up` on every start: edits here are replaced",
        f"listen_addresses = '{host}'",
        f"port = {port}",
        f"unix_socket_directories = '{socket_dir}'",
        "wal_level = logical",
        "max_replication_slots = 20",
        "max_wal_senders = 20",
        "max_connections = 200",
        "shared_buffers = 256MB",
        "fsync = on",
        "wal_sender_timeout = 0",
    ]
    if allow_list is not None:
        lines.append(f"# this server restricts logical decoding plugins: allow {', '.join(PLUGINS)}")
        lines.append(f"{ALLOW_LIST} = '{allow_list}'")
    return "\n".join(lines) + "\n"


def with_include(postgresql_conf: str) -> str:
    """postgresql.conf with the include of gorse-cdc.conf as its last word (added once)."""
    if INCLUDE_LINE in postgresql_conf.splitlines():
        return postgresql_conf
    sep = "" if postgresql_conf.endswith("\n") or not postgresql_conf else "\n"
    comment = "# gorse-cdc local stack: its settings (rewritten by stack up)"
    return f"{postgresql_conf}{sep}\n{comment}\n{INCLUDE_LINE}\n"
