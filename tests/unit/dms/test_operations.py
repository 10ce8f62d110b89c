"""Record operations as types: the enums keep DMS's strings, so a decoded data record's
operation compares, hashes, prints and encodes exactly like the string it was."""

from __future__ import annotations

import orjson

from gorse_cdc.dms.record import (
    CONTROL_OPERATIONS,
    DATA_OPERATIONS,
    ControlOperation,
    DmsOperation,
    DmsRecord,
    decode_record,
    encode_record,
)


def test_operations_keep_the_dms_strings() -> None:
    assert {"load", "insert", "update", "delete"} == DATA_OPERATIONS
    assert {o.value for o in DmsOperation} == DATA_OPERATIONS
    assert {
        "create-table",
        "rename-table",
        "drop-table",
        "change-columns",
        "add-column",
        "drop-column",
        "rename-column",
        "column-type-change",
    } == CONTROL_OPERATIONS
    assert {o.value for o in ControlOperation} == CONTROL_OPERATIONS


def test_a_decoded_operation_behaves_as_its_string() -> None:
    raw = encode_record(DmsRecord("data", "delete", "public", "users", {"user_id": 1}))
    r = decode_record(raw)
    assert r.operation is DmsOperation.DELETE and r.is_delete
    assert r.operation == "delete" and str(r.operation) == "delete" and f"{r.operation}" == "delete"
    assert r.operation in {"delete"} and {"delete": 1}[r.operation] == 1
    assert encode_record(r) == raw and orjson.loads(raw)["metadata"]["operation"] == "delete"
    assert DmsRecord("data", "delete", "public", "users", {"user_id": 1}).is_delete  # plain strings too


def test_control_operations_are_kept_as_sent() -> None:
    raw = encode_record(DmsRecord("control", "some-new-operation", "public", "users"))
    assert decode_record(raw).operation == "some-new-operation"
