"""Row changes -> DMS records (Kinesis) and CDC rows (S3). Pure: the clock is injected.

What DMS does for a PostgreSQL source, and so what this does:
- ``data`` is the whole row for load/insert/update; for a delete only the key columns carry
  values (the rest null): PostgreSQL logs only the old key under the default replica identity.
- ``before-image`` (updates, when enabled) holds the old key columns, or ``{}`` when the key
  did not change: PostgreSQL's before image is the replica identity, nothing more.
- transaction details (CDC only): transaction-id = xid, transaction-record-id counts the
  records of one transaction from 1, prev-* name the previous transaction that had records,
  commit-timestamp, and stream-position ``<commit LSN>.<record id>.<change LSN>`` with
  fixed-width hex LSNs, so that string order is commit order. NOTE: the xid is NOT commit
  order (xids are taken at BEGIN); order by stream-position (or by shard order per key).
- partition key: the mapping's partition column (user_id for users and ratings, movie_id for
  movies), partition-key-type "attribute-name" like a DMS object-mapping rule; tables outside
  the mapping fall back to their primary key values ("primary-key").

Speed (the CDC hot path, issue 22): a record is built as its JSON document (``Emitted.document``,
the same keys in the same order as gorse_cdc.dms.record.DmsRecord.to_json, so the same bytes)
and encoded once for Kinesis; what each table needs per column is worked out once per table
definition (``_RowPlan``), what each transaction shares once per transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gorse_cdc.dms.record import DmsRecord, decode_record
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError
from gorse_cdc.mapping.mapper import Mapper
from producers.dms.values import (
    dms_timestamp,
    dms_type,
    json_value,
    normalize,
    parse_timestamp,
    wal2json_converter,
)
from producers.dms.wal2json import Begin, RowChange, padded_lsn

Clock = Callable[[], datetime]
OPS = {"I": "insert", "U": "update", "D": "delete"}


@dataclass(frozen=True, slots=True)
class Emitted:
    """One changed row, ready for both targets."""

    document: dict[str, Any]  # the DMS record as JSON (see encode): data, before-image, metadata
    partition_key: str
    op: str  # I, U, D, or L (full load)
    values: list[Any]  # Python values in the table definition's column order
    commit_time: datetime | None

    @property
    def record(self) -> DmsRecord:
        """The record as a reader decodes it (tests, tools: the hot path encodes ``document``)."""
        return decode_record(orjson.dumps(self.document))


def encode(document: dict[str, Any], message_format: str = "json-unformatted") -> bytes:
    """Like gorse_cdc.dms.record.encode_record: MessageFormat "json" pretty, else one line."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 if message_format == "json" else 0)


def data_document(
    data: dict[str, Any],
    before_image: dict[str, Any] | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """A data record's JSON document (DmsRecord.to_json's shape; ``metadata`` without Nones)."""
    if before_image is None:
        return {"data": data, "metadata": metadata}
    return {"data": data, "before-image": before_image, "metadata": metadata}


def table_def(definition: TableDefinition, nullable: dict[str, bool] | None = None) -> dict[str, Any]:
    """The control record's table-def, e.g. {"columns": {"id": {"type": "INT8", ...}}, ...}."""
    cols = {
        name: {
            "type": dms_type(t),
            "nullable": (nullable or {}).get(name, name not in definition.primary_key),
        }
        for name, t in definition.columns
    }
    return {"columns": cols, "primary-key": list(definition.primary_key)}


def definition_from_change(change: RowChange) -> TableDefinition:
    return TableDefinition(change.schema, change.table, change.shape, change.pk)


def matches(definition: TableDefinition, change: RowChange) -> bool:
    """Does an insert/update's column list agree with the definition (else DDL happened)?"""
    if change.action == "D":
        names = definition.column_names
        return all(c["name"] in names for c in change.identity)
    columns = definition.columns
    if len(change.columns) != len(columns):
        return False
    for c, (name, type_) in zip(change.columns, columns, strict=True):
        if c["name"] != name or c["type"] != type_:
            return False
    return True


class _Timestamps:
    """dms_timestamp(now) for every record, the date and time formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        us = time.time_ns() // 1000
        second, fraction = divmod(us, 1_000_000)
        if second != self._second:
            t = datetime.fromtimestamp(second, UTC).replace(tzinfo=None)
            self._second, self._prefix = second, t.isoformat(timespec="seconds")
        return f"{self._prefix}.{fraction:06d}Z"


@dataclass(frozen=True, slots=True)
class _RowPlan:
    """What one table definition needs per change, worked out once."""

    definition: TableDefinition
    names: tuple[str, ...]
    name_list: list[str]
    convert: tuple[Callable[[Any], Any] | None, ...]  # wal2json -> Python value, per column
    as_is: bool  # no column converts: the values are their JSON values (text, no numbers)
    partition_column: str | None  # the mapping's partition column, None: the primary key


class RecordBuilder:
    def __init__(
        self,
        mapper: Mapper,
        *,
        transaction_details: bool = True,
        before_image: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.mapper = mapper
        self.transaction_details = transaction_details
        self.before_image = before_image
        self.clock = clock or (lambda: datetime.now(UTC))
        # metadata.timestamp of each record: the injected clock, or the wall clock formatted fast
        self.timestamp: Callable[[], str] = (
            (lambda: dms_timestamp(self.clock())) if clock is not None else _Timestamps().now
        )
        self._txn: Begin | None = None
        self._commit_time: datetime | None = None
        self._record_id = 0
        self._prev: tuple[int, int] | None = None
        self._shared: dict[str, Any] = {}  # the metadata every record of the transaction shares
        self._position = ""  # the padded commit LSN, stream-position's first part
        self._plans: dict[tuple[str, str], _RowPlan] = {}

    # ---- partition key ---------------------------------------------------------------------
    def partition(self, definition: TableDefinition, data: dict[str, Any]) -> tuple[str, str]:
        return self._partition(self._plan(definition), data)

    def _partition(self, plan: _RowPlan, data: dict[str, Any]) -> tuple[str, str]:
        if plan.partition_column is not None:
            v = data.get(plan.partition_column)
            if v is not None:
                return str(v), "attribute-name"
        definition = plan.definition
        key = "|".join(str(data.get(k)) for k in definition.primary_key)
        return key or f"{definition.schema}.{definition.table}", "primary-key"

    def _plan(self, definition: TableDefinition) -> _RowPlan:
        plan = self._plans.get((definition.schema, definition.table))
        if plan is not None and plan.definition is definition:
            return plan
        convert = tuple(wal2json_converter(t) for _, t in definition.columns)
        tables = self.mapper.spec.tables
        plan = _RowPlan(
            definition,
            tuple(definition.column_names),
            definition.column_names,
            convert,
            as_is=all(f is None for f in convert),
            partition_column=(
                self.mapper.table(definition.table).partition_key if definition.table in tables else None
            ),
        )
        self._plans[(definition.schema, definition.table)] = plan
        return plan

    # ---- full load -------------------------------------------------------------------------
    def load(self, definition: TableDefinition, row: Sequence[Any]) -> Emitted:
        plan = self._plan(definition)
        values = [normalize(v) for v in row]
        data = dict(zip(plan.names, [json_value(v) for v in values], strict=True))
        key, key_type = self._partition(plan, data)
        metadata = {
            "timestamp": self.timestamp(),
            "record-type": "data",
            "operation": "load",
            "partition-key-type": key_type,
            "schema-name": definition.schema,
            "table-name": definition.table,
        }
        return Emitted({"data": data, "metadata": metadata}, key, "L", values, None)

    def create_table(self, definition: TableDefinition, operation: str = "create-table") -> DmsRecord:
        return DmsRecord(
            "control",
            operation,
            definition.schema,
            definition.table,
            timestamp=self.timestamp(),
            partition_key_type="task-id",
            table_def=table_def(definition),
        )

    # ---- CDC -------------------------------------------------------------------------------
    def begin(self, begin: Begin) -> None:
        self._txn = begin
        self._commit_time = parse_timestamp(begin.commit_time)
        self._record_id = 0
        self._position = padded_lsn(begin.commit_lsn)
        prev = self._prev
        self._shared = transaction_details(0, prev, self._commit_time, "")

    def commit(self) -> None:
        if self._txn is not None and self._record_id:
            self._prev = (self._txn.xid, self._record_id)
        self._txn = None

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def change(self, definition: TableDefinition, change: RowChange) -> Emitted:
        txn = self._txn
        if txn is None:
            raise FatalError(f"change outside a transaction at {padded_lsn(change.lsn)}")
        self._record_id += 1
        plan = self._plan(definition)
        names = plan.names
        action = change.action
        if action == "D":
            key = _key_values(change.identity)
            values = [key.get(n) for n in names]
        else:
            values = _row_values(plan, change.columns)
        data = dict(zip(names, values if plan.as_is else [json_value(v) for v in values], strict=True))
        before: dict[str, Any] | None = None
        if action == "U" and self.before_image:
            old = {k: json_value(v) for k, v in _key_values(change.identity).items()}
            before = old if any(data.get(k) != v for k, v in old.items()) else {}
        key_value, key_type = self._partition(plan, data)
        metadata: dict[str, Any] = {
            "timestamp": self.timestamp(),
            "record-type": "data",
            "operation": OPS[action],
            "partition-key-type": key_type,
            "schema-name": change.schema,
            "table-name": change.table,
            "transaction-id": txn.xid,
        }
        if self.transaction_details:
            record_id = self._record_id
            metadata["transaction-record-id"] = record_id
            metadata.update(self._shared)
            metadata["stream-position"] = f"{self._position}.{record_id}.{padded_lsn(change.lsn)}"
        return Emitted(data_document(data, before, metadata), key_value, action, values, self._commit_time)


def _key_values(identity: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The old key's columns (U, D) as Python values, each converted by its own type."""
    out = {}
    for c in identity:
        v = c.get("value")
        if v is not None and (f := wal2json_converter(c["type"])) is not None:
            v = f(v)
        out[c["name"]] = v
    return out


def _row_values(plan: _RowPlan, columns: Sequence[dict[str, Any]]) -> list[Any]:
    """The new row's values in the definition's column order, converted (by name when the
    message's columns are not the definition's, like a column wal2json left out)."""
    values = [c.get("value") for c in columns]
    if [c["name"] for c in columns] != plan.name_list:
        by_name = {c["name"]: v for c, v in zip(columns, values, strict=True)}
        values = [by_name.get(n) for n in plan.names]
    if plan.as_is:
        return values
    return [v if f is None or v is None else f(v) for f, v in zip(plan.convert, values, strict=True)]


def transaction_details(
    record_id: int, prev: tuple[int, int] | None, commit_time: datetime, stream_position: str
) -> dict[str, Any]:
    """DMS's transaction details of a change (both sources), as metadata (without Nones): the
    previous transaction's id and last record, the commit time; with ``record_id`` and
    ``stream_position`` when given (not 0 / "")."""
    details: dict[str, Any] = {}
    if record_id:
        details["transaction-record-id"] = record_id
    if prev is not None:
        details["prev-transaction-id"] = prev[0]
        details["prev-transaction-record-id"] = prev[1]
    details["commit-timestamp"] = dms_timestamp(commit_time)
    if stream_position:
        details["stream-position"] = stream_position
    return details
