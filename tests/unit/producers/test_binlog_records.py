"""Binlog row images (as mysql-replication and PyMySQL hand them over) -> DMS records for a
MySQL source: types, zero dates, big unsigned integers, non-ASCII text, and the shape of
inserts, updates and deletes (whole old rows) through the one mapping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from gorse_cdc.dms.mysql_types import dms_type, labels, to_dms_value
from gorse_cdc.dms.record import decode_record, encode_record
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.mapping.mapper import Mapper
from gorse_cdc.mapping.ops import DeleteFeedback, DeleteUser, PutFeedback, UpsertItem
from gorse_cdc.source_db import MySqlDsn
from producers.dms.mysql import source_errors
from producers.dms.mysql.records import BinlogRecordBuilder, Transaction, table_def
from producers.dms.records import RecordBuilder

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC)
RATINGS = TableDefinition(
    "ott",
    "ratings",
    (
        ("user_id", "bigint(20)"),
        ("movie_id", "bigint(20)"),
        ("rating", "smallint(6)"),
        ("rated_at", "datetime(6)"),
    ),
    ("user_id", "movie_id"),
)
MOVIES = TableDefinition(
    "ott",
    "movies",
    (("movie_id", "bigint(20)"), ("title", "text"), ("release_date", "date"), ("genres", "varchar(400)")),
    ("movie_id",),
)
USERS = TableDefinition(
    "ott",
    "users",
    (
        ("user_id", "bigint(20)"),
        ("age", "int(11)"),
        ("gender", "text"),
        ("occupation", "text"),
        ("zip", "text"),
    ),
    ("user_id",),
)
TXN = Transaction(4711, datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC), "mysql-bin.000002", 12345)


def builder(before_image: bool = True) -> BinlogRecordBuilder:
    return BinlogRecordBuilder(RecordBuilder(Mapper(), before_image=before_image, clock=lambda: NOW))


@pytest.mark.parametrize(
    ("column_type", "raw", "want"),
    [
        ("date", None, None),
        ("date", "0000-00-00", None),  # PyMySQL gives an unparsable date as text
        ("date", b"2024-00-10", None),
        ("date", date(1995, 1, 1), date(1995, 1, 1)),
        ("datetime(6)", "0000-00-00 00:00:00.000000", None),
        (
            "datetime(6)",
            datetime(2020, 1, 2, 3, 4, 5, 120000),
            datetime(2020, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        ),
        ("timestamp", datetime(2020, 1, 2, 3, 4, 5), datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("tinyint(1)", True, 1),
        ("tinyint(1)", 0, 0),
        ("bigint(20) unsigned", -1, 18446744073709551615),  # a binlog without signedness metadata
        ("bigint(20) unsigned", 18446744073709551615, 18446744073709551615),
        ("bigint(20)", -9223372036854775808, -9223372036854775808),
        ("int(10) unsigned", -2, 4294967294),
        ("decimal(10,2)", Decimal("12.50"), Decimal("12.50")),
        ("decimal(10,2)", "12.50", Decimal("12.50")),
        ("enum('a','b c','d''e')", 2, "b c"),
        ("enum('a','b')", "b", "b"),
        ("set('x','y','z')", {"z", "x"}, "x,z"),
        ("set('x','y','z')", "x,z", "x,z"),
        ("json", b'{"a": [1, 2]}', {"a": [1, 2]}),
        ("text", "Amélie — 天使 🎬".encode(), "Amélie — 天使 🎬"),
        ("varchar(20)", "Ça", "Ça"),
        ("time", timedelta(hours=-1, minutes=-30), "-01:30:00"),
        ("time", timedelta(hours=25, microseconds=5), "25:00:00.000005"),
        ("year", 1999, 1999),
        ("double", 1, 1.0),
        ("blob", b"\x00\xff", b"\x00\xff"),
    ],
)
def test_values_as_dms_carries_them(column_type: str, raw: object, want: object) -> None:
    assert to_dms_value(column_type, raw) == want


def test_dms_type_names() -> None:
    assert dms_type("bigint(20) unsigned") == "UINT8"
    assert dms_type("tinyint(1)") == "INT1"
    assert dms_type("datetime(6)") == "DATETIME"
    assert dms_type("decimal(10,2)") == "NUMERIC"
    assert dms_type("enum('a')") == "WSTRING"
    assert dms_type("json") == "NCLOB"
    assert labels("set('a,b','c')") == ["a,b", "c"]
    assert table_def(RATINGS)["columns"]["user_id"] == {"type": "INT8", "nullable": False}
    assert table_def(RATINGS)["columns"]["rated_at"] == {"type": "DATETIME", "nullable": True}


def test_insert_update_delete_records() -> None:
    b = builder()
    b.begin(TXN)
    ins = b.change(RATINGS, "I", None, (7, 9, 5, datetime(2020, 1, 2, 3, 4, 5, 120000)))
    upd = b.change(RATINGS, "U", (7, 9, 5, datetime(2020, 1, 2)), (7, 9, 2, datetime(2020, 1, 3)))
    dele = b.change(RATINGS, "D", (7, 9, 2, datetime(2020, 1, 3)), None)
    b.commit()
    r = decode_record(encode_record(ins.record))
    assert r.schema == "ott" and r.operation == "insert"  # schema-name is the database
    assert r.data == {"user_id": 7, "movie_id": 9, "rating": 5, "rated_at": "2020-01-02T03:04:05.120000Z"}
    assert r.transaction_id == 4711 and r.transaction_record_id == 1
    assert r.commit_timestamp == "2026-12-05T01:02:03.000000Z"
    assert r.stream_position == "mysql-bin.000002:00000000000000012345.1"
    assert ins.partition_key == "7" and r.partition_key_type == "attribute-name"
    u = decode_record(encode_record(upd.record))
    # MySQL's before image is the whole old row, not the key (PostgreSQL's)
    assert u.before_image == {
        "user_id": 7,
        "movie_id": 9,
        "rating": 5,
        "rated_at": "2020-01-02T00:00:00.000000Z",
    }
    assert u.data["rating"] == 2
    d = decode_record(encode_record(dele.record))
    assert d.operation == "delete" and d.data["rating"] == 2  # a delete carries the whole old row
    assert d.stream_position == "mysql-bin.000002:00000000000000012345.3"
    assert dele.values == [7, 9, 2, datetime(2020, 1, 3, tzinfo=UTC)]
    # positions order by commit across files
    assert "mysql-bin.000002:00000000000000012345" < "mysql-bin.000010:00000000000000000004"


def test_prev_transaction_and_no_before_image() -> None:
    b = builder(before_image=False)
    b.begin(TXN)
    b.change(USERS, "I", None, (1, 30, "F", "writer", "12345"))
    b.commit()
    b.begin(Transaction(4712, TXN.commit_time, TXN.file, 20000))
    em = b.change(USERS, "U", (1, 30, "F", "writer", "12345"), (1, 31, "F", "writer", "12345"))
    assert em.record.before_image is None
    assert (em.record.prev_transaction_id, em.record.prev_transaction_record_id) == (4711, 1)


def test_through_the_one_mapping() -> None:
    m = Mapper()
    b = builder()
    b.begin(TXN)
    big = 9007199254740993  # 2**53 + 1: not a float
    user_del = b.change(USERS, "D", (big, 30, "F", "writer", "12345"), None).record
    movie = b.change(MOVIES, "I", None, (5, "Amélie (2001) 天使", "0000-00-00", "Comedy|Romance")).record
    like = b.change(RATINGS, "I", None, (big, 5, 5, datetime(2020, 1, 1))).record
    flip = b.change(RATINGS, "U", (big, 5, 5, datetime(2020, 1, 1)), (big, 5, 2, datetime(2020, 1, 2))).record
    gone = b.change(RATINGS, "D", (big, 5, 2, datetime(2020, 1, 2)), None).record

    def ops(r: object) -> list[object]:
        rec = decode_record(encode_record(r))  # type: ignore[arg-type]
        return m.map_change(rec.table, rec.operation, rec.data, rec.before_image)

    assert ops(user_del) == [DeleteUser(str(big))]
    [item] = ops(movie)
    assert isinstance(item, UpsertItem) and item.item.comment == "Amélie (2001) 天使"
    assert movie.data["release_date"] is None  # the zero date
    [put] = ops(like)
    assert (
        isinstance(put, PutFeedback)
        and put.feedback.user_id == str(big)
        and put.feedback.feedback_type == "like"
    )
    [put] = ops(flip)  # the full before image keeps the key: no delete of the pair, the type flips
    assert isinstance(put, PutFeedback) and put.feedback.feedback_type == "unlike"
    assert ops(gone) == [DeleteFeedback(str(big), "5")]


SRC = MySqlDsn("db.example", 3306, "dms", "x", "ott")


def test_setup_errors_say_the_fix() -> None:
    on = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"}
    grants = ["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `dms`@`%`"]
    assert source_errors.preflight(SRC, on, grants) is None
    assert "binary logging off" in str(source_errors.preflight(SRC, {**on, "log_bin": "OFF"}, grants))
    msg = source_errors.preflight(SRC, {**on, "binlog_format": "MIXED"}, grants)
    assert msg and "binlog_format = MIXED: set binlog_format = ROW" in msg
    msg = source_errors.preflight(SRC, {**on, "binlog_row_image": "MINIMAL"}, grants)
    assert msg and "binlog_row_image = FULL" in msg
    msg = source_errors.preflight(SRC, on, ["GRANT SELECT ON `ott`.* TO `dms`@`%`"])
    assert msg and "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'dms'@'%'" in msg
    assert "missing REPLICATION CLIENT)" in str(
        source_errors.preflight(SRC, on, ["GRANT REPLICATION SLAVE ON *.* TO `dms`@`%`"])
    )
    # MariaDB 10.5+ shows REPLICATION CLIENT as BINLOG MONITOR
    assert (
        source_errors.preflight(SRC, on, ["GRANT BINLOG MONITOR, REPLICATION SLAVE ON *.* TO `dms`@`%`"])
        is None
    )
    assert source_errors.preflight(SRC, on, ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"]) is None
    msg = source_errors.purged(SRC, "mysql-bin.000001", 4, "mysql-bin.000003")
    assert "rds_set_configuration('binlog retention hours'" in msg and "\n" not in msg


def test_dsn() -> None:
    d = MySqlDsn.parse("mysql://u%40x:p%2Fw@h:3307/ott")
    assert (d.host, d.port, d.user, d.password, d.database) == ("h", 3307, "u@x", "p/w", "ott")
    assert MySqlDsn.parse("mysql://u@h/db").port == 3306
