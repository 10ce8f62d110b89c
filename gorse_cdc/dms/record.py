"""The DMS Kinesis record: one JSON object per changed row (or a control record).

Parse JSON, never compare bytes: key order and pretty-printing are not a contract. Facts in
shared/reference/dms-format.md. ``decode_record`` is strict about what the pipeline needs
(metadata, record-type, operation, table) and lenient about everything else; anything it
cannot use raises DmsDecodeError, a PermanentRecordError, so the record goes to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import orjson

from gorse_cdc.errors import PermanentRecordError


class DmsOperation(StrEnum):
    """metadata.operation of a data record (members equal DMS's strings)."""

    LOAD = "load"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


class ControlOperation(StrEnum):
    """metadata.operation of the control records DMS documents; a control record with another
    operation is still decoded, its operation kept as the string it is."""

    CREATE_TABLE = "create-table"
    RENAME_TABLE = "rename-table"
    DROP_TABLE = "drop-table"
    CHANGE_COLUMNS = "change-columns"
    ADD_COLUMN = "add-column"
    DROP_COLUMN = "drop-column"
    RENAME_COLUMN = "rename-column"
    COLUMN_TYPE_CHANGE = "column-type-change"


DATA_OPERATIONS = frozenset(DmsOperation)
CONTROL_OPERATIONS = frozenset(ControlOperation)


class DmsDecodeError(PermanentRecordError):
    """The bytes are not a DMS record the pipeline can use."""


@dataclass(frozen=True, slots=True)
class DmsRecord:
    record_type: Literal["data", "control"]
    operation: DmsOperation | str  # a DmsOperation when decoded from a data record
    schema: str
    table: str
    data: dict[str, Any] = field(default_factory=dict)
    before_image: dict[str, Any] | None = None
    timestamp: str | None = None
    transaction_id: int | None = None
    transaction_record_id: int | None = None
    prev_transaction_id: int | None = None
    prev_transaction_record_id: int | None = None
    commit_timestamp: str | None = None
    stream_position: str | None = None
    partition_key_type: str | None = None
    partition_key_value: str | None = None
    table_def: dict[str, Any] | None = None

    @property
    def is_data(self) -> bool:
        return self.record_type == "data"

    @property
    def is_delete(self) -> bool:
        return self.operation == DmsOperation.DELETE

    def metadata(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "timestamp": self.timestamp,
            "record-type": self.record_type,
            "operation": self.operation,
            "partition-key-type": self.partition_key_type,
            "partition-key-value": self.partition_key_value,
            "schema-name": self.schema,
            "table-name": self.table,
            "transaction-id": self.transaction_id,
            "transaction-record-id": self.transaction_record_id,
            "prev-transaction-id": self.prev_transaction_id,
            "prev-transaction-record-id": self.prev_transaction_record_id,
            "commit-timestamp": self.commit_timestamp,
            "stream-position": self.stream_position,
        }
        return {k: v for k, v in m.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.record_type == "control":
            out["control"] = {"table-def": self.table_def} if self.table_def is not None else {}
        else:
            out["data"] = self.data
            if self.before_image is not None:
                out["before-image"] = self.before_image
        out["metadata"] = self.metadata()
        return out


def _opt_int(meta: dict[str, Any], key: str) -> int | None:
    v = meta.get(key)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise DmsDecodeError(f"metadata.{key} is not an integer: {v!r}") from None


def _opt_str(meta: dict[str, Any], key: str) -> str | None:
    v = meta.get(key)
    return None if v is None else str(v)


def decode_record(raw: bytes | str) -> DmsRecord:
    """Decode one Kinesis record's payload. Raises DmsDecodeError with the reason."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise DmsDecodeError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise DmsDecodeError(f"not a JSON object but a {type(doc).__name__}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise DmsDecodeError("no metadata object")
    record_type = meta.get("record-type")
    operation = meta.get("operation")
    if record_type not in ("data", "control"):
        raise DmsDecodeError(f"unknown metadata.record-type {record_type!r}")
    if not isinstance(operation, str):
        raise DmsDecodeError("metadata.operation missing")
    schema = meta.get("schema-name")
    table = meta.get("table-name")
    common: dict[str, Any] = {
        "timestamp": _opt_str(meta, "timestamp"),
        "transaction_id": _opt_int(meta, "transaction-id"),
        "transaction_record_id": _opt_int(meta, "transaction-record-id"),
        "prev_transaction_id": _opt_int(meta, "prev-transaction-id"),
        "prev_transaction_record_id": _opt_int(meta, "prev-transaction-record-id"),
        "commit_timestamp": _opt_str(meta, "commit-timestamp"),
        "stream_position": _opt_str(meta, "stream-position"),
        "partition_key_type": _opt_str(meta, "partition-key-type"),
        "partition_key_value": _opt_str(meta, "partition-key-value"),
    }
    if record_type == "control":
        control = doc.get("control")
        table_def = control.get("table-def") if isinstance(control, dict) else None
        return DmsRecord(
            "control",
            operation,
            str(schema or ""),
            str(table or ""),
            table_def=table_def if isinstance(table_def, dict) else None,
            **common,
        )
    if operation not in DATA_OPERATIONS:
        raise DmsDecodeError(f"unknown data operation {operation!r}")
    data_operation = DmsOperation(operation)
    if not isinstance(table, str) or not table:
        raise DmsDecodeError("data record without metadata.table-name")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise DmsDecodeError("data record without a data object")
    before = doc.get("before-image")
    if before is not None and not isinstance(before, dict):
        raise DmsDecodeError("before-image is not an object")
    return DmsRecord("data", data_operation, str(schema or ""), table, data, before, **common)


def encode_record(record: DmsRecord, message_format: str = "json-unformatted") -> bytes:
    """Encode like DMS: MessageFormat "json" is pretty-printed, "json-unformatted" one line."""
    option = orjson.OPT_INDENT_2 if message_format == "json" else 0
    return orjson.dumps(record.to_json(), option=option)
