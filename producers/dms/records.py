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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gorse_cdc.dms.record import DmsRecord
from gorse_cdc.dms.tables import TableDefinition
from gorse_cdc.errors import FatalError
from gorse_cdc.mapping.mapper import Mapper
from producers.dms.values import (
    dms_timestamp,
    dms_type,
    from_wal2json,
    normalize,
    parse_timestamp,
    to_json_value,
)
from producers.dms.wal2json import Begin, RowChange, padded_lsn

Clock = Callable[[], datetime]
OPS = {"I": "insert", "U": "update", "D": "delete"}


@dataclass(frozen=True, slots=True)
class Emitted:
    """One changed row, ready for both targets."""

    record: DmsRecord
    partition_key: str
    op: str  # I, U, D, or L (full load)
    values: list[Any]  # Python values in the table definition's column order
    commit_time: datetime | None


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
    return TableDefinition(
        change.schema, change.table, tuple((c.name, c.type) for c in change.columns), change.pk
    )


def matches(definition: TableDefinition, change: RowChange) -> bool:
    """Does an insert/update's column list agree with the definition (else DDL happened)?"""
    if change.action == "D":
        return all(c.name in definition.column_names for c in change.identity)
    return [(c.name, c.type) for c in change.columns] == list(definition.columns)


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
        self._txn: Begin | None = None
        self._commit_time: datetime | None = None
        self._record_id = 0
        self._prev: tuple[int, int] | None = None

    # ---- partition key ---------------------------------------------------------------------
    def partition(self, definition: TableDefinition, data: dict[str, Any]) -> tuple[str, str]:
        if definition.table in self.mapper.spec.tables:
            column = self.mapper.table(definition.table).partition_key
            v = data.get(column)
            if v is not None:
                return str(v), "attribute-name"
        key = "|".join(str(data.get(k)) for k in definition.primary_key)
        return key or f"{definition.schema}.{definition.table}", "primary-key"

    # ---- full load -------------------------------------------------------------------------
    def load(self, definition: TableDefinition, row: Sequence[Any]) -> Emitted:
        values = [normalize(v) for v in row]
        data = {n: to_json_value(v) for n, v in zip(definition.column_names, values, strict=True)}
        key, key_type = self.partition(definition, data)
        rec = DmsRecord(
            "data",
            "load",
            definition.schema,
            definition.table,
            data,
            timestamp=dms_timestamp(self.clock()),
            partition_key_type=key_type,
        )
        return Emitted(rec, key, "L", values, None)

    def create_table(self, definition: TableDefinition, operation: str = "create-table") -> DmsRecord:
        return DmsRecord(
            "control",
            operation,
            definition.schema,
            definition.table,
            timestamp=dms_timestamp(self.clock()),
            partition_key_type="task-id",
            table_def=table_def(definition),
        )

    # ---- CDC -------------------------------------------------------------------------------
    def begin(self, begin: Begin) -> None:
        self._txn = begin
        self._commit_time = parse_timestamp(begin.commit_time)
        self._record_id = 0

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
        key_cols = {c.name: from_wal2json(c.type, c.value) for c in change.identity}
        if change.action == "D":
            values = [key_cols.get(n) for n in definition.column_names]
        else:
            new = {c.name: from_wal2json(c.type, c.value) for c in change.columns}
            values = [new.get(n) for n in definition.column_names]
        data = {n: to_json_value(v) for n, v in zip(definition.column_names, values, strict=True)}
        before: dict[str, Any] | None = None
        if change.action == "U" and self.before_image:
            changed = any(data.get(k) != to_json_value(v) for k, v in key_cols.items())
            before = {k: to_json_value(v) for k, v in key_cols.items()} if changed else {}
        key, key_type = self.partition(definition, data)
        details: dict[str, Any] = {"transaction_id": txn.xid}
        if self.transaction_details:
            assert self._commit_time is not None
            position = f"{padded_lsn(txn.commit_lsn)}.{self._record_id}.{padded_lsn(change.lsn)}"
            details.update(transaction_details(self._record_id, self._prev, self._commit_time, position))
        rec = DmsRecord(
            "data",
            OPS[change.action],
            change.schema,
            change.table,
            data,
            before,
            timestamp=dms_timestamp(self.clock()),
            partition_key_type=key_type,
            **details,
        )
        return Emitted(rec, key, change.action, values, self._commit_time)


def transaction_details(
    record_id: int, prev: tuple[int, int] | None, commit_time: datetime, stream_position: str
) -> dict[str, Any]:
    """DMS's transaction details of a change (both sources): its number in the transaction, the
    previous transaction's id and last record, the commit time and the stream position."""
    return {
        "transaction_record_id": record_id,
        "prev_transaction_id": prev[0] if prev else None,
        "prev_transaction_record_id": prev[1] if prev else None,
        "commit_timestamp": dms_timestamp(commit_time),
        "stream_position": stream_position,
    }
