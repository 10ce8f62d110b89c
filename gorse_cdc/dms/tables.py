"""What DMS writes beside its data files: a table's definition (columns, source types, key),
and the error for a file that does not match it. Imported by both file formats (CSV in s3files,
Parquet in parquet), which never import each other's internals."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gorse_cdc.errors import PermanentRecordError


class S3FormatError(PermanentRecordError):
    pass


@dataclass(frozen=True)
class TableDefinition:
    schema: str
    table: str
    columns: tuple[tuple[str, str], ...]  # (name, source type)
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "schema": self.schema,
                "table": self.table,
                "columns": [{"name": n, "type": t} for n, t in self.columns],
                "primary_key": list(self.primary_key),
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> TableDefinition:
        d = orjson.loads(raw)
        return cls(
            d["schema"],
            d["table"],
            tuple((c["name"], c["type"]) for c in d["columns"]),
            tuple(d["primary_key"]),
        )


__all__ = ["S3FormatError", "TableDefinition"]
