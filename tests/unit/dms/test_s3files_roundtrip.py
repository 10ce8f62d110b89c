"""DMS S3 files: CSV and Parquet encode -> decode round trips, key names, definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st

from gorse_cdc.dms.parquet import encode_parquet, rows_from_parquet
from gorse_cdc.dms.s3files import (
    cdc_file_key,
    classify_key,
    decode_csv,
    encode_csv,
    format_timestamp_column,
    load_file_key,
    rows_from_file,
    rows_from_object,
)
from gorse_cdc.dms.tables import TableDefinition

# "NULL" itself is DMS's CsvNullValue: a text value equal to it cannot round-trip (as in DMS)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30).filter(
    lambda s: s != "NULL"
)
special = st.sampled_from(["", ",", '"', '""', "a,b", 'say "hi"', "line1\nline2", "cr\rlf\r\n", "é ü 漢 🎬"])
cells = st.one_of(st.none(), texts, special)
DEF = TableDefinition("public", "t", (("a", "text"), ("b", "text"), ("c", "text")), ("a",))


@given(st.lists(st.lists(cells, min_size=3, max_size=3), max_size=20), st.booleans())
def test_csv_round_trip(rows: list[list[str | None]], gz: bool) -> None:
    data = encode_csv(rows, gzip_=gz)
    assert [[None if v == "NULL" else v for v in r] for r in decode_csv(data)] == rows


@given(st.lists(st.tuples(st.sampled_from("IUD"), st.lists(cells, min_size=3, max_size=3)), max_size=20))
def test_cdc_rows_from_file(rows: list[tuple[str, list[str | None]]]) -> None:
    data = encode_csv([[op, *vals] for op, vals in rows])
    got = list(rows_from_file(data, DEF, has_op=True))
    assert got == [(op, dict(zip(DEF.column_names, vals, strict=True))) for op, vals in rows]


def test_typed_values_in_csv() -> None:
    data = encode_csv([[1, date(1995, 1, 1), datetime(2020, 1, 2, 3, 4, 5, 6), True, None]])
    assert data == b"1,1995-01-01,2020-01-02 03:04:05.000006,true,NULL\n"


def test_timestamp_column_then_values() -> None:
    ts = format_timestamp_column(datetime(2024, 7, 29, 0, 58, 17, 974340, tzinfo=UTC))
    assert ts == "2024-07-29 00:58:17.974340"
    data = encode_csv([["I", ts, "x", None, "z"]])
    assert list(rows_from_file(data, DEF, has_op=True, timestamp_column=True)) == [
        ("I", {"a": "x", "b": None, "c": "z"})
    ]


PQ_DEF = TableDefinition(
    "public",
    "ratings",
    (("user_id", "bigint"), ("rating", "smallint"), ("rated_at", "timestamp without time zone"),
     ("title", "text"), ("released", "date")),
    ("user_id",),
)  # fmt: skip


@given(
    st.lists(
        st.tuples(
            st.sampled_from("IUD"),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.none() | st.integers(min_value=1, max_value=5),
            st.none() | st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)),
            st.none() | texts,
            st.none() | st.dates(min_value=date(1900, 1, 1)),
        ),
        max_size=15,
    )
)
def test_parquet_round_trip(rows: list[tuple[object, ...]]) -> None:
    data = encode_parquet([list(r) for r in rows], PQ_DEF, has_op=True)
    got = list(rows_from_object("x/20240101-000000000.parquet", data, PQ_DEF, has_op=True))
    assert got == [(r[0], dict(zip(PQ_DEF.column_names, r[1:], strict=True))) for r in rows]
    assert list(rows_from_parquet(data, PQ_DEF, has_op=True)) == got


def test_key_names_sort_load_then_cdc() -> None:
    t = datetime(2022, 10, 23, 1, 38, 30, 913000, tzinfo=UTC)
    assert load_file_key("dms", "public", "users", 10) == "dms/public/users/LOAD0000000A.csv"
    assert cdc_file_key("dms", "public", "users", t) == "dms/public/users/20221023-013830913.csv"
    assert cdc_file_key("", "public", "users", t, date_partition=True, gzip_=True) == (
        "public/users/2022/10/23/20221023-013830913.csv.gz"
    )
    keys = [cdc_file_key("p", "s", "t", t), load_file_key("p", "s", "t", 2), load_file_key("p", "s", "t", 1)]
    ordered = sorted(k for k in (classify_key(k) for k in keys) if k)
    assert [k.key for k in ordered] == [keys[2], keys[1], keys[0]]


def test_table_definition_json_round_trip() -> None:
    assert TableDefinition.from_json(PQ_DEF.to_json()) == PQ_DEF
