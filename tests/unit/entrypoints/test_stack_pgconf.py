"""The local PostgreSQL's config decision: the wal2json allow-list only where the server knows it."""

from __future__ import annotations

from pathlib import Path

from entrypoints.stack import pgconf

# `postgres --describe-config` lines (tab-separated), as printed by 15.20 and 15.18
KNOWS = (
    "wal_level\tpostmaster\tReplication\tENUM\treplica\t\t\tSets the level.\t\n"
    "output_plugin_libraries\tsuperuser\tReplication / Sending Servers\tSTRING\t"
    "pgoutput, test_decoding\t\t\tLists libraries that may be named as logical decoding output plugins.\t\n"
)
OLD = "wal_level\tpostmaster\tReplication\tENUM\treplica\t\t\tSets the level.\t\n"


def test_allow_list_added_when_the_server_knows_the_parameter() -> None:
    assert pgconf.plugin_allow_list(KNOWS) == "pgoutput, test_decoding, wal2json"


def test_no_allow_list_when_the_server_does_not_know_it() -> None:
    assert pgconf.plugin_allow_list(OLD) is None
    conf = pgconf.managed_conf(host="127.0.0.1", port=1, socket_dir=Path("/s"), allow_list=None)
    assert "output_plugin_libraries" not in conf  # an unknown parameter stops the server


def test_allow_list_keeps_what_is_there_and_adds_once() -> None:
    assert pgconf.allow_list_with("pgoutput,wal2json") == "pgoutput, wal2json"
    assert pgconf.allow_list_with("") == "wal2json"
    assert pgconf.allow_list_with(" a ,b ", ("wal2json", "x")) == "a, b, wal2json, x"


def test_managed_conf_sets_the_allow_list_and_logical_wal() -> None:
    conf = pgconf.managed_conf(
        host="127.0.0.1", port=15432, socket_dir=Path("/run/pg"), allow_list="pgoutput, wal2json"
    )
    lines = conf.splitlines()
    assert "output_plugin_libraries = 'pgoutput, wal2json'" in lines
    assert "wal_level = logical" in lines
    assert "port = 15432" in lines
    assert "unix_socket_directories = '/run/pg'" in lines


def test_include_is_added_once_at_the_end_of_an_old_cluster_config() -> None:
    old = "# gorse-cdc local stack\nport = 15432\nwal_level = logical\n"
    once = pgconf.with_include(old)
    assert once.startswith(old)
    assert once.splitlines()[-1] == pgconf.INCLUDE_LINE
    assert pgconf.with_include(once) == once
    assert pgconf.with_include("port = 1").splitlines()[-1] == pgconf.INCLUDE_LINE
