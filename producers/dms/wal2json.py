"""wal2json format-version 2 messages -> typed events. Pure: bytes in, dataclasses out.

With include-transaction, include-timestamp, include-lsn and include-pk, wal2json v2 sends one
JSON object per message: ``B`` (begin: xid, commit timestamp, commit ``lsn`` and ``nextlsn``,
the end of the commit record), ``I``/``U``/``D`` (schema, table, columns, identity, pk),
``T`` (truncate), ``M`` (logical message) and ``C`` (commit). Logical decoding emits a
transaction only once it has committed, so ``B`` already knows the commit LSN: every change
can carry its commit position. ``nextlsn`` is what to acknowledge once the transaction is
durably out: PostgreSQL skips, on restart, every transaction whose commit lies before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from gorse_cdc.errors import FatalError


class Wal2JsonError(FatalError):
    """A message the local DMS cannot understand: stop rather than skip a change."""


def parse_lsn(text: str) -> int:
    hi, _, lo = text.partition("/")
    try:
        return (int(hi, 16) << 32) | int(lo, 16)
    except ValueError:
        raise Wal2JsonError(f"not an LSN: {text!r}") from None


def format_lsn(lsn: int) -> str:
    """PostgreSQL's text form, e.g. 2/7C007178."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def padded_lsn(lsn: int) -> str:
    """Fixed-width form (00000002/7C007178), so that string order is LSN order."""
    return f"{lsn >> 32:08X}/{lsn & 0xFFFFFFFF:08X}"


@dataclass(frozen=True, slots=True)
class Begin:
    xid: int
    commit_lsn: int
    end_lsn: int
    commit_time: str  # PostgreSQL text, e.g. 2026-11-25 01:55:21.158011+00


@dataclass(frozen=True, slots=True)
class Commit:
    xid: int
    commit_lsn: int
    end_lsn: int


class RowChange(NamedTuple):
    """An insert, update or delete. ``columns`` (the new row; empty for D), ``identity`` (the old
    key; U, D) and ``key_columns`` (the primary key) are wal2json's own JSON objects
    (``{"name", "type", "value"}``), kept as parsed rather than copied: the hot path of the
    local DMS reads each once (records.RecordBuilder.change)."""

    action: str  # I, U, D
    xid: int
    lsn: int
    schema: str
    table: str
    columns: Sequence[dict[str, Any]]
    identity: Sequence[dict[str, Any]]
    key_columns: Sequence[dict[str, Any]]

    @property
    def pk(self) -> tuple[str, ...]:
        return tuple(p["name"] for p in self.key_columns)

    @property
    def shape(self) -> tuple[tuple[str, str], ...]:
        """The new row's (name, type) pairs: a TableDefinition's columns when nothing changed."""
        return tuple((c["name"], c["type"]) for c in self.columns)


@dataclass(frozen=True, slots=True)
class Truncate:
    xid: int
    schema: str
    table: str


@dataclass(frozen=True, slots=True)
class Other:
    action: str


Event = Begin | Commit | RowChange | Truncate | Other


def parse_message(payload: bytes | str) -> Event:
    """One wal2json message (orjson straight from the replication payload's bytes)."""
    try:
        m = orjson.loads(payload)
        action = m["action"]
        if action in _ROW_ACTIONS:  # the common case first
            columns, identity = m.get("columns") or (), m.get("identity") or ()
            if not isinstance(columns, list | tuple) or not isinstance(identity, list | tuple):
                raise TypeError("columns and identity must be lists")
            return RowChange(
                action,
                int(m.get("xid") or 0),
                parse_lsn(m["lsn"]) if "lsn" in m else 0,
                m["schema"],
                m["table"],
                columns,
                identity,
                m.get("pk") or (),
            )
        if action == "B":
            return Begin(int(m["xid"]), parse_lsn(m["lsn"]), parse_lsn(m["nextlsn"]), m["timestamp"])
        if action == "C":
            return Commit(int(m["xid"]), parse_lsn(m["lsn"]), parse_lsn(m["nextlsn"]))
        if action == "T":
            return Truncate(int(m.get("xid") or 0), m["schema"], m["table"])
        return Other(str(action))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise Wal2JsonError(f"bad wal2json message ({e!r}): {payload[:200]!r}") from None


_ROW_ACTIONS = frozenset({"I", "U", "D"})


PLUGIN_OPTIONS = {
    "format-version": "2",
    "include-transaction": "1",
    "include-timestamp": "1",
    "include-lsn": "1",
    "include-pk": "1",
    "include-xids": "1",
    "include-type-oids": "0",
}


def plugin_options(schema: str) -> dict[str, str]:
    """wal2json options: v2 with transactions, timestamps, LSNs and keys, one schema's tables."""
    return {**PLUGIN_OPTIONS, "add-tables": f"{schema}.*"}
