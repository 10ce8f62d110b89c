"""Setup errors of a source database -> one line that says what to change."""

from __future__ import annotations

import pytest

from producers.dms.source_errors import Source, explain, preflight

SRC = Source("db.example", 5432, "dms_user")


@pytest.mark.parametrize(
    ("server_message", "must_say"),
    [
        (
            'library "wal2json" may not be used as an output plugin\nHINT: If it is safe ...',
            ["output_plugin_libraries", "wal2json", "pg_reload_conf", "parameter group"],
        ),
        (
            "logical decoding requires wal_level >= logical",
            ["wal_level = logical", "rds.logical_replication"],
        ),
        (
            "FATAL:  must be superuser or replication role to start walsender",
            ["ALTER ROLE dms_user REPLICATION", "rds_replication"],
        ),
        ("permission denied to start WAL sender", ["ALTER ROLE dms_user REPLICATION"]),
        (
            'could not access file "wal2json": No such file or directory',
            ["postgresql-15-wal2json"],
        ),
        (
            'replication slot "gorse_cdc_dms" is active for PID 4242',
            ["gorse_cdc_dms", "4242", "GORSE_CDC_SOURCE__SLOT_NAME"],
        ),
        ("all replication slots are in use", ["max_replication_slots"]),
        (
            'FATAL:  no pg_hba.conf entry for replication connection from host "10.0.0.1"',
            ["host replication dms_user"],
        ),
        ('FATAL:  password authentication failed for user "dms_user"', ["GORSE_CDC_SOURCE__DSN"]),
        (
            'connection to server at "db.example", port 5432 failed: Connection refused',
            ["cannot reach PostgreSQL at db.example:5432"],
        ),
    ],
)
def test_each_setup_error_names_its_fix_in_one_line(server_message: str, must_say: list[str]) -> None:
    line = explain(server_message, SRC, "gorse_cdc_dms")
    assert line is not None
    assert "\n" not in line
    for words in must_say:
        assert words in line
    assert "PostgreSQL at db.example:5432" in line or "dms_user" in line


def test_an_unknown_error_is_left_to_the_caller() -> None:
    assert explain('relation "ratings" does not exist', SRC, "s") is None


def test_dsn_forms_name_host_port_user_and_never_the_password() -> None:
    url = Source.from_dsn("postgresql://u1:s3cret@h1:6543/db")
    kv = Source.from_dsn("host=h2 port=7654 user=u2 password=s3cret dbname=db")
    assert (url.host, url.port, url.user) == ("h1", 6543, "u1")
    assert (kv.host, kv.port, kv.user) == ("h2", 7654, "u2")
    assert "s3cret" not in str(url) + str(kv) + repr(url) + repr(kv)


def test_preflight_finds_the_first_problem() -> None:
    ok = dict(wal_level="logical", can_replicate=True, superuser=False)
    assert preflight(SRC, **ok, allow_list=None) is None
    assert preflight(SRC, **ok, allow_list="pgoutput, test_decoding, wal2json") is None
    refused = preflight(SRC, **ok, allow_list="pgoutput, test_decoding")
    assert refused is not None and "output_plugin_libraries" in refused
    # superusers are held to the allow-list too (checked on PostgreSQL 15.20)
    assert preflight(SRC, wal_level="logical", can_replicate=False, superuser=True, allow_list="pgoutput")
    replica = preflight(SRC, wal_level="replica", can_replicate=True, superuser=False, allow_list=None)
    assert replica is not None and "wal_level" in replica
    norepl = preflight(SRC, wal_level="logical", can_replicate=False, superuser=False, allow_list=None)
    assert norepl is not None and "REPLICATION" in norepl
