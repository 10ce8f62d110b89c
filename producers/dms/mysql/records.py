"""Binlog row changes -> DMS records (Kinesis) and CDC rows (S3), as AWS DMS writes them for a
MySQL source. Pure: values in, records out; the clock is injected.

Where a MySQL source differs from a PostgreSQL one (docs/mysql.md):
- ``schema-name`` is the database (MySQL has no schemas inside a database);
- a delete's ``data`` is the whole old row (binlog_row_image FULL), not only its key;
- ``before-image`` (updates, when enabled) is the whole old row, not the key columns;
- values through gorse_cdc.dms.mysql_types (zero dates null, unsigned exact, TINYINT(1) 0/1,
  ENUM/SET labels, DECIMAL as a string, JSON as a string);
- transaction-id is the commit's XID; commit-timestamp has whole seconds (the binlog's event
  time); stream-position ``<binlog file>:<end of the commit, 20 digits>.<record id>``, so that
  string order is commit order (binlog file names are zero-padded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gorse_cdc.dms.mysql_types import dms_type, to_dms_value
from gorse_cdc.dms.record import DmsRecord
from gorse_cdc.dms.tables import TableDefinition
from producers.dms.records import OPS, Emitted, RecordBuilder, data_document, transaction_details
from producers.dms.values import json_value


@dataclass(frozen=True, slots=True)
class Transaction:
    """What the commit (the XID event) says about the transaction its rows belong to."""

    xid: int
    commit_time: datetime
    file: str
    end_pos: int

    @property
    def position(self) -> str:
        return f"{self.file}:{self.end_pos:020d}"


def convert(definition: TableDefinition, row: Sequence[Any]) -> list[Any]:
    """A driver's or a binlog event's row (in column order) -> DMS's values."""
    return [to_dms_value(t, v) for (_, t), v in zip(definition.columns, row, strict=True)]


def table_def(definition: TableDefinition) -> dict[str, Any]:
    cols = {
        name: {"type": dms_type(t), "nullable": name not in definition.primary_key}
        for name, t in definition.columns
    }
    return {"columns": cols, "primary-key": list(definition.primary_key)}


class BinlogRecordBuilder:
    def __init__(self, base: RecordBuilder) -> None:
        self.base = base  # partition keys, the clock, the transaction-details options
        self._txn: Transaction | None = None
        self._record_id = 0
        self._prev: tuple[int, int] | None = None

    def load(self, definition: TableDefinition, row: Sequence[Any]) -> Emitted:
        return self.base.load(definition, convert(definition, row))

    def create_table(self, definition: TableDefinition, operation: str = "create-table") -> DmsRecord:
        return DmsRecord(
            "control",
            operation,
            definition.schema,
            definition.table,
            timestamp=self.base.timestamp(),
            partition_key_type="task-id",
            table_def=table_def(definition),
        )

    def begin(self, txn: Transaction) -> None:
        self._txn = txn
        self._record_id = 0

    def commit(self) -> None:
        if self._txn is not None and self._record_id:
            self._prev = (self._txn.xid, self._record_id)
        self._txn = None

    def change(
        self,
        definition: TableDefinition,
        action: str,
        before: Sequence[Any] | None,
        after: Sequence[Any] | None,
    ) -> Emitted:
        """One row of a binlog rows event: action I (after), U (before, after), D (before)."""
        txn = self._txn
        assert txn is not None, "change outside a transaction"
        self._record_id += 1
        old = convert(definition, before) if before is not None else None
        new = convert(definition, after) if after is not None else None
        values = new if action != "D" else old
        assert values is not None
        names = definition.column_names
        data = {n: json_value(v) for n, v in zip(names, values, strict=True)}
        before_image: dict[str, Any] | None = None
        if action == "U" and self.base.before_image and old is not None:
            before_image = {n: json_value(v) for n, v in zip(names, old, strict=True)}
        key, key_type = self.base.partition(definition, data)
        metadata: dict[str, Any] = {
            "timestamp": self.base.timestamp(),
            "record-type": "data",
            "operation": OPS[action],
            "partition-key-type": key_type,
            "schema-name": definition.schema,
            "table-name": definition.table,
            "transaction-id": txn.xid,
        }
        if self.base.transaction_details:
            position = f"{txn.position}.{self._record_id}"
            metadata.update(transaction_details(self._record_id, self._prev, txn.commit_time, position))
        return Emitted(data_document(data, before_image, metadata), key, action, values, txn.commit_time)
