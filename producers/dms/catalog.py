"""Table definitions from PostgreSQL's catalog: columns in order with their types, primary
key, and a parents-first order (by foreign keys) for the full load."""

from __future__ import annotations

from typing import Any

from gorse_cdc.dms.tables import TableDefinition

_COLUMNS = """
SELECT cl.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class cl ON cl.oid = a.attrelid
JOIN pg_namespace n ON n.oid = cl.relnamespace
WHERE n.nspname = %s AND cl.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY cl.relname, a.attnum
"""
_PRIMARY_KEYS = """
SELECT cl.relname, a.attname
FROM pg_index i
JOIN pg_class cl ON cl.oid = i.indrelid
JOIN pg_namespace n ON n.oid = cl.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indisprimary AND n.nspname = %s
ORDER BY cl.relname, array_position(i.indkey::int2[], a.attnum)
"""
_FOREIGN_KEYS = """
SELECT c.relname, p.relname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_class p ON p.oid = k.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND n.nspname = %s
"""


def read_definitions(conn: Any, schema: str) -> dict[str, TableDefinition]:
    """Every ordinary table of ``schema`` (a psycopg 3 connection, any transaction state)."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in conn.execute(_COLUMNS, (schema,)).fetchall():
        columns.setdefault(table, []).append((name, type_))
    keys: dict[str, list[str]] = {}
    for table, name in conn.execute(_PRIMARY_KEYS, (schema,)).fetchall():
        keys.setdefault(table, []).append(name)
    return {t: TableDefinition(schema, t, tuple(cols), tuple(keys.get(t, ()))) for t, cols in columns.items()}


def load_order(conn: Any, schema: str, tables: list[str]) -> list[str]:
    """Parents before children (users and movies before ratings); ties by name."""
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in conn.execute(_FOREIGN_KEYS, (schema,)).fetchall():
        if child in parents and parent in parents and parent != child:
            parents[child].add(parent)
    order: list[str] = []
    while parents:
        ready = sorted(t for t, ps in parents.items() if not ps - set(order))
        if not ready:  # a cycle: load the rest by name
            ready = sorted(parents)
        for t in ready:
            order.append(t)
            del parents[t]
    return order
