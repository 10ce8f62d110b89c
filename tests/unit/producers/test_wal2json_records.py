"""wal2json v2 messages (captured from the stack's PostgreSQL 15) -> DMS records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gorse_cdc.dms.record import decode_record, encode_record
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.mapping.mapper import Mapper
from producers.dms.records import RecordBuilder, definition_from_change, matches
from producers.dms.wal2json import (
    Begin,
    Commit,
    RowChange,
    Truncate,
    Wal2JsonError,
    format_lsn,
    padded_lsn,
    parse_lsn,
    parse_message,
)

B = (
    b'{"action":"B","xid":743,"timestamp":"2026-11-25 01:55:21.160207+00",'
    b'"lsn":"0/1D90AC0","nextlsn":"0/1D90AF0"}'
)
C = (
    b'{"action":"C","xid":743,"timestamp":"2026-11-25 01:55:21.160207+00",'
    b'"lsn":"0/1D90AC0","nextlsn":"0/1D90AF0"}'
)
U = (
    b'{"action":"U","xid":743,"timestamp":"2026-11-25 01:55:21.160207+00",'
    b'"lsn":"0/1D90A58","schema":"public",'
    b'"table":"ratings","columns":[{"name":"user_id","type":"bigint","value":999001},{"name":"movie_id",'
    b'"type":"bigint","value":999001},{"name":"rating","type":"smallint","value":2},{"name":"rated_at",'
    b'"type":"timestamp without time zone","value":"2020-01-02 03:04:05.12"}],"identity":[{"name":"user_id",'
    b'"type":"bigint","value":999001},{"name":"movie_id","type":"bigint","value":999001}],"pk":[{"name":'
    b'"user_id","type":"bigint"},{"name":"movie_id","type":"bigint"}]}'
)
U_KEY = (
    b'{"action":"U","xid":743,"lsn":"0/1D90A60","schema":"public","table":"movies","columns":['
    b'{"name":"movie_id","type":"bigint","value":3},{"name":"title","type":"text","value":"Caf\xc3\xa9"},'
    b'{"name":"release_date","type":"date","value":null},{"name":"genres","type":"text","value":""}],'
    b'"identity":[{"name":"movie_id","type":"bigint","value":2}],"pk":[{"name":"movie_id","type":"bigint"}]}'
)
D = (
    b'{"action":"D","xid":743,"lsn":"0/1D90A68","schema":"public","table":"ratings","identity":[{"name":'
    b'"user_id","type":"bigint","value":999001},{"name":"movie_id","type":"bigint","value":7}],"pk":[{"name":'
    b'"user_id","type":"bigint"},{"name":"movie_id","type":"bigint"}]}'
)
RATINGS = TableDefinition(
    "public",
    "ratings",
    (
        ("user_id", "bigint"),
        ("movie_id", "bigint"),
        ("rating", "smallint"),
        ("rated_at", "timestamp without time zone"),
    ),
    ("user_id", "movie_id"),
)
MOVIES = TableDefinition(
    "public",
    "movies",
    (("movie_id", "bigint"), ("title", "text"), ("release_date", "date"), ("genres", "text")),
    ("movie_id",),
)  # fmt: skip
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def builder(**kw: bool) -> RecordBuilder:
    return RecordBuilder(Mapper(), clock=lambda: NOW, **kw)


def test_lsn_forms() -> None:
    assert parse_lsn("2/7C007178") == (2 << 32) | 0x7C007178
    assert format_lsn(parse_lsn("2/7C007178")) == "2/7C007178"
    assert padded_lsn(parse_lsn("2/7C007178")) == "00000002/7C007178"
    assert padded_lsn(parse_lsn("0/FFFFFFFF")) < padded_lsn(parse_lsn("1/0"))


def test_parse_begin_commit_change() -> None:
    b = parse_message(B)
    assert isinstance(b, Begin) and b.xid == 743 and format_lsn(b.end_lsn) == "0/1D90AF0"
    c = parse_message(C)
    assert isinstance(c, Commit) and c.end_lsn == b.end_lsn
    u = parse_message(U)
    assert isinstance(u, RowChange) and u.pk == ("user_id", "movie_id") and u.columns[2]["value"] == 2
    assert isinstance(parse_message(b'{"action":"T","xid":1,"schema":"public","table":"x"}'), Truncate)
    with pytest.raises(Wal2JsonError):
        parse_message(b'{"action":"I"}')


def test_update_same_key_has_empty_before_image_and_details() -> None:
    rb = builder()
    rb.begin(parse_message(B))  # type: ignore[arg-type]
    u = parse_message(U)
    assert isinstance(u, RowChange) and matches(RATINGS, u)
    em = rb.change(RATINGS, u)
    r = em.record
    assert r.operation == "update" and r.before_image == {}
    assert r.data == {
        "user_id": 999001,
        "movie_id": 999001,
        "rating": 2,
        "rated_at": "2020-01-02T03:04:05.120000Z",
    }
    assert (r.transaction_id, r.transaction_record_id, r.prev_transaction_id) == (743, 1, None)
    assert r.commit_timestamp == "2026-11-25T01:55:21.160207Z"
    assert r.stream_position == "00000000/01D90AC0.1.00000000/01D90A58"
    assert em.partition_key == "999001" and r.partition_key_type == "attribute-name"
    assert decode_record(encode_record(r, "json")) == r


def test_key_change_before_image_delete_keys_only_and_prev_ids() -> None:
    rb = builder()
    rb.begin(parse_message(B))  # type: ignore[arg-type]
    rb.change(RATINGS, parse_message(U))  # type: ignore[arg-type]
    rb.commit()
    rb.begin(Begin(744, parse_lsn("0/1D90B00"), parse_lsn("0/1D90B30"), "2026-11-25 01:55:22+00"))
    mk = rb.change(MOVIES, parse_message(U_KEY))  # type: ignore[arg-type]
    assert mk.record.before_image == {"movie_id": 2} and mk.record.data["title"] == "Café"
    assert mk.partition_key == "3"
    d = rb.change(RATINGS, parse_message(D))  # type: ignore[arg-type]
    assert d.record.data == {"user_id": 999001, "movie_id": 7, "rating": None, "rated_at": None}
    assert d.op == "D" and d.values == [999001, 7, None, None]
    assert (
        d.record.transaction_record_id,
        d.record.prev_transaction_id,
        d.record.prev_transaction_record_id,
    ) == (
        2,
        743,
        1,
    )
    assert mk.record.stream_position is not None and d.record.stream_position is not None
    assert mk.record.stream_position < d.record.stream_position


def test_options_off() -> None:
    rb = builder(transaction_details=False, before_image=False)
    rb.begin(parse_message(B))  # type: ignore[arg-type]
    r = rb.change(RATINGS, parse_message(U)).record  # type: ignore[arg-type]
    assert r.before_image is None and r.transaction_id == 743 and r.transaction_record_id is None
    assert r.stream_position is None and r.commit_timestamp is None


def test_load_record_and_control() -> None:
    rb = builder()
    em = rb.load(RATINGS, (5, 6, 4, datetime(2020, 1, 1)))
    assert em.record.operation == "load" and em.record.transaction_id is None and em.partition_key == "5"
    assert em.record.data["rated_at"] == "2020-01-01T00:00:00.000000Z"
    c = rb.create_table(RATINGS)
    assert c.record_type == "control" and c.table_def is not None
    assert c.table_def["primary-key"] == ["user_id", "movie_id"]
    assert c.table_def["columns"]["rating"] == {"type": "INT2", "nullable": True}


def test_schema_change_detected() -> None:
    u = parse_message(U)
    assert isinstance(u, RowChange)
    assert not matches(MOVIES, u)
    assert definition_from_change(u) == RATINGS


def test_unmapped_table_partitions_by_primary_key() -> None:
    d = TableDefinition("public", "audit", (("a", "bigint"), ("b", "text")), ("a", "b"))
    em = builder().load(d, (1, "x"))
    assert (em.partition_key, em.record.partition_key_type) == ("1|x", "primary-key")


def test_timestamps_are_formatted_like_dms_for_aware_and_naive_values() -> None:
    import random
    from datetime import UTC, datetime, timedelta, timezone

    from producers.dms.values import dms_timestamp, to_json_value

    rng = random.Random(4)
    for _ in range(500):
        naive = datetime(2000, 1, 1) + timedelta(
            seconds=rng.uniform(0, 1e9), microseconds=rng.randrange(10**6)
        )
        aware = naive.replace(tzinfo=timezone(timedelta(minutes=rng.randrange(-720, 720, 15))))
        expected = aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert to_json_value(aware) == expected == dms_timestamp(aware)
        assert to_json_value(naive) == naive.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reference(
    em_op: str, change: RowChange, definition: TableDefinition, before: bool, details: bool
) -> bytes:
    """The record as DmsRecord would encode it, built from what the builder read (the shape the
    hot path's JSON documents must keep byte for byte)."""
    from gorse_cdc.dms.record import DmsRecord
    from producers.dms.values import from_wal2json, to_json_value

    new = {c["name"]: from_wal2json(c["type"], c.get("value")) for c in change.columns}
    key = {c["name"]: from_wal2json(c["type"], c.get("value")) for c in change.identity}
    row = key if change.action == "D" else new
    data = {n: to_json_value(row.get(n)) for n in definition.column_names}
    before_image = None
    if change.action == "U" and before:
        old = {k: to_json_value(v) for k, v in key.items()}
        before_image = old if any(data.get(k) != v for k, v in old.items()) else {}
    extra: dict[str, object] = {}
    if details:
        extra = {
            "transaction_record_id": 1,
            "commit_timestamp": "2026-11-25T01:55:21.160207Z",
            "stream_position": f"00000000/01D90AC0.1.{padded_lsn(change.lsn)}",
        }
    rec = DmsRecord(
        "data",
        em_op,
        change.schema,
        change.table,
        data,
        before_image,
        timestamp="2026-01-01T00:00:00.000000Z",
        partition_key_type="attribute-name",
        transaction_id=743,
        **extra,  # type: ignore[arg-type]
    )
    return encode_record(rec)


@pytest.mark.parametrize("before", [True, False])
@pytest.mark.parametrize("details", [True, False])
@pytest.mark.parametrize(("raw", "definition"), [(U, RATINGS), (U_KEY, MOVIES), (D, RATINGS)])
def test_the_document_encodes_to_the_bytes_dms_record_gives(
    raw: bytes, definition: TableDefinition, before: bool, details: bool
) -> None:
    from producers.dms.records import OPS, encode

    rb = builder(transaction_details=details, before_image=before)
    rb.begin(parse_message(B))  # type: ignore[arg-type]
    change = parse_message(raw)
    assert isinstance(change, RowChange)
    em = rb.change(definition, change)
    assert encode(em.document) == _reference(OPS[change.action], change, definition, before, details)
    assert encode(em.document, "json") == encode_record(em.record, "json")


def test_a_change_whose_columns_differ_from_the_definition_is_read_by_name() -> None:
    rb = builder()
    rb.begin(parse_message(B))  # type: ignore[arg-type]
    u = parse_message(U)
    assert isinstance(u, RowChange)
    shuffled = u._replace(columns=[u.columns[3], u.columns[0], u.columns[2]])  # movie_id left out
    em = rb.change(RATINGS, shuffled)
    assert em.values == [999001, None, 2, datetime(2020, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)]


def test_the_fast_wall_clock_timestamp_is_dms_timestamp_of_now(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from producers.dms import records
    from producers.dms.values import dms_timestamp

    stamps = records._Timestamps()
    for ns in (1_764_900_000_000_000_000, 1_764_900_000_999_999_999, 1_764_900_001_000_001_000, 0):
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        expected = dms_timestamp(
            datetime.fromtimestamp(ns // 1000 / 1e6, UTC).replace(microsecond=ns // 1000 % 10**6)
        )
        assert stamps.now() == expected


@pytest.mark.parametrize(
    ("pg_type", "value"),
    [
        ("bigint", 5),
        ("integer", "7"),
        ("smallint", -3),
        ("double precision", 1.5),
        ("numeric(10,2)", "12.30"),
        ("boolean", True),
        ("boolean", "t"),
        ("date", "2020-01-02"),
        ("timestamp without time zone", "2020-01-02 03:04:05.12"),
        ("timestamp with time zone", "2020-01-02 03:04:05.12+02"),
        ("text", "Café"),
        ("character varying(20)", "x"),
        ("jsonb", '{"a": 1}'),
        ("uuid", "0e37df36-f698-11e6-8dd4-cb9ced3df976"),
    ],
)
def test_a_column_converter_is_from_wal2json(pg_type: str, value: object) -> None:
    from producers.dms.values import from_wal2json, wal2json_converter

    f = wal2json_converter(pg_type)
    got = value if f is None else f(value)
    assert got == from_wal2json(pg_type, value) and type(got) is type(from_wal2json(pg_type, value))
