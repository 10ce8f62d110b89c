"""decode_record accepts every shape DMS is known to write (dms-format.md) and round-trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gorse_cdc.dms.record import DmsDecodeError, DmsRecord, decode_record, encode_record

CONTROL_NO_KEY = b"""{
    "metadata": {
        "timestamp": "2021-02-18T23:09:09.509179Z",
        "record-type": "control",
        "operation": "create-table",
        "partition-key-type": "task-id",
        "schema-name": "",
        "table-name": "awsdms_apply_exceptions"
    }
}"""
CONTROL_EMPTY = (
    b'{"control":{},"metadata":{"timestamp":"2024-07-29T00:58:17.983670Z","record-type":"control",'
    b'"operation":"drop-table","partition-key-type":"task-id","schema-name":"","table-name":""}}'
)
CONTROL_TABLE_DEF = (
    b'{"control":{"table-def":{"columns":{"id":{"type":"INT8","nullable":false}},"primary-key":["id"]}},'
    b'"metadata":{"record-type":"control","operation":"create-table","schema-name":"public",'
    b'"table-name":"movies"}}'
)
PRETTY_LOAD = b"""{
    "data": {
        "id": 315209,
        "name": "dsdsd dsdsdds",
        "created_at": "2020-01-09T04:13:38Z"
    },
    "metadata": {
        "timestamp": "2020-12-15T05:47:42.724458Z",
        "record-type": "data",
        "operation": "load",
        "partition-key-type": "primary-key",
        "schema-name": "lab",
        "table-name": "acy_leads"
    }
}"""
UPDATE_WITH_DETAILS = (
    b'{"data":{"user_id":7,"movie_id":3,"rating":5,"extra":"{\\"a\\": [1, 2]}"},'
    b'"before-image":{},"metadata":{"timestamp":"2024-07-29T00:58:17.983670Z","record-type":"data",'
    b'"operation":"update","partition-key-type":"attribute-name","schema-name":"public",'
    b'"table-name":"ratings","transaction-id":1139,"transaction-record-id":1,'
    b'"prev-transaction-id":1138,"prev-transaction-record-id":3,'
    b'"commit-timestamp":"2024-07-29T00:58:17.974340Z",'
    b'"stream-position":"00000002/7C007178.3.00000002/7C007178"}}'
)
PG_DELETE_KEYS_ONLY = (
    b'{"data":{"user_id":7,"movie_id":3,"rating":null,"rated_at":null},"metadata":{'
    b'"timestamp":"2024-07-29T00:58:17.983670Z","record-type":"data","operation":"delete",'
    b'"partition-key-type":"schema-table","schema-name":"public","table-name":"ratings",'
    b'"transaction-id":1140}}'
)
PG_DELETE_ABSENT = (
    b'{"data":{"user_id":7},"metadata":{"record-type":"data","operation":"delete",'
    b'"schema-name":"public","table-name":"users","transaction-id":"1141"}}'
)


def test_control_without_control_key() -> None:
    r = decode_record(CONTROL_NO_KEY)
    assert (r.record_type, r.operation, r.schema, r.table) == (
        "control",
        "create-table",
        "",
        "awsdms_apply_exceptions",
    )
    assert r.table_def is None and not r.is_data


def test_control_with_empty_control_and_empty_names() -> None:
    r = decode_record(CONTROL_EMPTY)
    assert (r.record_type, r.operation, r.schema, r.table, r.table_def) == (
        "control",
        "drop-table",
        "",
        "",
        None,
    )


def test_control_with_table_def() -> None:
    r = decode_record(CONTROL_TABLE_DEF)
    assert r.table_def == {"columns": {"id": {"type": "INT8", "nullable": False}}, "primary-key": ["id"]}


def test_pretty_printed_load() -> None:
    r = decode_record(PRETTY_LOAD)
    assert r.operation == "load" and r.data["id"] == 315209 and r.transaction_id is None


def test_update_with_transaction_details_and_jsonb_string() -> None:
    r = decode_record(UPDATE_WITH_DETAILS)
    assert r.before_image == {}
    assert json.loads(r.data["extra"]) == {"a": [1, 2]}  # jsonb arrives as a string
    assert (r.transaction_id, r.transaction_record_id) == (1139, 1)
    assert (r.prev_transaction_id, r.prev_transaction_record_id) == (1138, 3)
    assert r.stream_position == "00000002/7C007178.3.00000002/7C007178"


@pytest.mark.parametrize("raw", [PG_DELETE_KEYS_ONLY, PG_DELETE_ABSENT])
def test_postgres_delete_with_only_key_values(raw: bytes) -> None:
    r = decode_record(raw)
    assert r.is_delete and r.data["user_id"] == 7
    assert all(v is None for k, v in r.data.items() if k not in ("user_id", "movie_id"))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"data": {}}',
        b'{"metadata": {"record-type": "data", "operation": "upsert", "table-name": "t"}, "data": {}}',
        b'{"metadata": {"record-type": "data", "operation": "insert", "table-name": ""}, "data": {}}',
        b'{"metadata": {"record-type": "data", "operation": "insert", "table-name": "t"}, "data": 1}',
        b'{"metadata": {"record-type": "nope", "operation": "insert"}}',
        b'{"metadata": {"record-type": "data", "operation": "insert", "table-name": "t",'
        b' "transaction-id": "x"}, "data": {}}',
    ],
)
def test_bad_records_raise_typed_error(raw: bytes) -> None:
    with pytest.raises(DmsDecodeError):
        decode_record(raw)


# ---- round trip -----------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
rows = st.dictionaries(st.text(min_size=1, max_size=20), scalars, max_size=8)
names = st.text(min_size=1, max_size=30)


@st.composite
def records(draw: st.DrawFn) -> DmsRecord:
    op = draw(st.sampled_from(["load", "insert", "update", "delete"]))
    cdc = op != "load"
    ids = st.integers(min_value=0, max_value=2**62)
    return DmsRecord(
        "data",
        op,
        draw(names),
        draw(names),
        draw(rows),
        draw(st.none() | rows) if op == "update" else None,
        timestamp=draw(st.none() | st.just("2024-07-29T00:58:17.983670Z")),
        transaction_id=draw(ids) if cdc else None,
        transaction_record_id=draw(st.none() | ids) if cdc else None,
        prev_transaction_id=draw(st.none() | ids) if cdc else None,
        prev_transaction_record_id=draw(st.none() | ids) if cdc else None,
        commit_timestamp=draw(st.none() | st.just("2024-07-29T00:58:17.974340Z")) if cdc else None,
        stream_position=draw(st.none() | st.text(max_size=40)) if cdc else None,
        partition_key_type=draw(st.sampled_from([None, "primary-key", "attribute-name"])),
        partition_key_value=draw(st.none() | st.text(max_size=10)),
    )


@given(records(), st.sampled_from(["json", "json-unformatted"]))
def test_encode_decode_round_trip(record: DmsRecord, fmt: str) -> None:
    raw = encode_record(record, fmt)
    assert (b"\n" in raw) == (fmt == "json")
    assert decode_record(raw) == record


def _control(table_def: dict[str, Any] | None) -> DmsRecord:
    return DmsRecord("control", "create-table", "public", "movies", table_def=table_def)


@pytest.mark.parametrize("table_def", [None, {"columns": {}, "primary-key": []}])
def test_control_round_trip(table_def: dict[str, Any] | None) -> None:
    assert decode_record(encode_record(_control(table_def))) == _control(table_def)
