"""DMS S3 files -> current rows: file order then line order, deletes, NULL, gzip, date
partitions, LOAD with or without Op, Parquet; and the expected state equals the pure one."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glue.changes import latest_rows, read_changes
from glue.expected import expected_state
from glue.files import DirStore, SourceFilesError, cutoff_of, discover
from gorse_cdc.dms.s3files import cdc_file_key
from gorse_cdc.dms.tables import S3FormatError
from gorse_cdc.gorse import Feedback, Item, User
from gorse_cdc.mapping import Mapper
from gorse_cdc.mapping import expected_state as pure_expected_state
from tests.unit.glue.dmsdata import OTT_TABLES, DmsWriter, dir_put


def _current(spark, root: Path, table: str) -> dict[str, dict]:
    store = DirStore(root)
    tf = discover(store, "dms", "public", table)
    df = latest_rows(
        read_changes(spark, store, tf), list(tf.definition.primary_key), tf.definition.column_names
    )
    key = tf.definition.primary_key
    return {"/".join(r[k] for k in key): r.asDict() for r in df.collect()}


@pytest.mark.parametrize("gzip_, partition", [(False, False), (True, True)])
def test_last_change_wins_in_commit_order(spark, tmp_path: Path, gzip_: bool, partition: bool) -> None:
    w = DmsWriter(dir_put(tmp_path), gzip_=gzip_, date_partition=partition)
    w.definitions()
    w.load("users", [[1, 20, "M", "a", "111"], [2, 30, "F", "b", None], [3, 40, "F", "c", "333"]])
    w.load("users", [[4, 50, "M", "d", "444"]], with_op=True)  # IncludeOpForFullLoad
    w.cdc(
        "users",
        [
            ("U", [1, 21, "M", "a", "111"]),
            ("U", [1, 22, "M", "a", "NULL-ish"]),
            ("D", [2, None, None, None, None]),
        ],
    )
    w.cdc(
        "users",
        [
            ("I", [2, 31, "F", "b2", None]),
            ("D", [3, None, None, None, None]),
            ("I", [5, None, None, None, None]),
        ],
    )
    cur = _current(spark, tmp_path, "users")
    assert set(cur) == {"1", "2", "4", "5"}
    assert cur["1"]["age"] == "22" and cur["1"]["zip"] == "NULL-ish"
    assert cur["2"]["occupation"] == "b2" and cur["2"]["zip"] is None
    assert cur["5"]["age"] is None


def test_cdc_files_sort_by_time_not_listing(spark, tmp_path: Path) -> None:
    w = DmsWriter(dir_put(tmp_path))
    w.definitions()
    w.load("movies", [[10, "A", "1995-01-01", "Drama"]])
    w.cdc(
        "movies",
        [("U", [10, "late", "1995-01-01", "Drama"])],
        datetime(2024, 1, 2, 0, 0, 0, 5000, tzinfo=UTC),
    )
    w.cdc(
        "movies",
        [("U", [10, "early", "1995-01-01", "Drama"])],
        datetime(2024, 1, 2, 0, 0, 0, 4000, tzinfo=UTC),
    )
    assert _current(spark, tmp_path, "movies")["10"]["title"] == "late"
    tf = discover(DirStore(tmp_path), "dms", "public", "movies")
    assert cutoff_of([tf]) is not None and tf.newest_cdc == "20240102000000005"


def test_parquet_cdc_file(spark, tmp_path: Path) -> None:
    w = DmsWriter(dir_put(tmp_path))
    w.definitions()
    w.load("movies", [[10, "A", "1995-01-01", "Drama"], [11, "B", None, "Comedy"]])
    table = pa.table(
        {
            "Op": ["U", "D"],
            "movie_id": [10, 11],
            "title": ["A2", None],
            "release_date": [None, None],
            "genres": ["Drama|War", None],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = cdc_file_key("dms", "public", "movies", datetime(2024, 8, 1, tzinfo=UTC), data_format="parquet")
    dir_put(tmp_path)(key, buf.getvalue())
    cur = _current(spark, tmp_path, "movies")
    assert set(cur) == {"10"} and cur["10"]["genres"] == "Drama|War" and cur["10"]["release_date"] is None


def test_malformed_file_fails_with_reason(spark, tmp_path: Path) -> None:
    w = DmsWriter(dir_put(tmp_path))
    w.definitions()
    dir_put(tmp_path)("dms/public/users/LOAD00000001.csv", b"1,2\n")
    with pytest.raises(Exception, match="fields, expected"):
        _current(spark, tmp_path, "users")
    dir_put(tmp_path)("dms/public/users/notes.txt", b"x")
    with pytest.raises(SourceFilesError, match="neither a LOAD nor a CDC"):
        discover(DirStore(tmp_path), "dms", "public", "users")
    assert issubclass(S3FormatError, Exception)


def test_missing_table_definition(tmp_path: Path) -> None:
    with pytest.raises(SourceFilesError, match="table definition"):
        discover(DirStore(tmp_path), "dms", "public", "users")


def test_expected_state_equals_the_pure_mapping(spark, tmp_path: Path) -> None:
    rows = {
        "users": [[1, 20, "M", "a", "11111"], [2, 30, "F", "b", None], [3, None, None, None, None]],
        "movies": [
            [10, "A", "1995-01-01", "Drama|War"],
            [11, "B, the", "2001-05-06", "Comedy"],
            [12, "C", None, ""],
        ],
        "ratings": [
            [1, 10, 5, "2020-01-01 00:00:00.000000"],
            [1, 11, 4, "2020-01-02 10:00:00.500000"],
            [2, 11, 1, "2020-01-03 00:00:00.000000"],
            [2, 12, 4, "2020-01-04 00:00:00.000000"],
            [3, 99, 5, "2020-01-05 00:00:00.000000"],  # liked an item that does not exist
        ],
    }
    w = DmsWriter(dir_put(tmp_path))
    w.definitions()
    for t, r in rows.items():
        w.load(t, r)
    mapper = Mapper()
    current = {t: spark.createDataFrame(list(_current(spark, tmp_path, t).values())) for t in rows}
    exp = expected_state(mapper, current)
    got = {k: {r["key"]: r["entity"] for r in df.collect()} for k, df in exp.kinds().items()}
    names = {t: [c for c, _ in OTT_TABLES[t].columns] for t in rows}
    pure = pure_expected_state(
        mapper,
        {
            t: [dict(zip(names[t], map(lambda v: None if v is None else str(v), r), strict=True)) for r in rs]
            for t, rs in rows.items()
        },
    )
    import orjson

    assert {
        orjson.loads(k)[0]: User.from_json(orjson.loads(v)) for k, v in got["users"].items()
    } == pure.users
    assert {
        orjson.loads(k)[0]: Item.from_json(orjson.loads(v)) for k, v in got["items"].items()
    } == pure.items
    assert {
        tuple(orjson.loads(k)): Feedback.from_json(orjson.loads(v)) for k, v in got["feedback"].items()
    } == pure.feedback
    assert pure.users["1"].labels["liked_genres"] == ["Comedy", "Drama", "War"]
