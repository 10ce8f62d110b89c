"""Table definitions of a MySQL database from information_schema: columns in order with their
COLUMN_TYPE, the primary key, and a parents-first order by foreign keys (the full load's)."""

from __future__ import annotations

from typing import Any

from gorse_cdc.dms.tables import TableDefinition

_COLUMNS = """
SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE c.TABLE_SCHEMA = %s AND t.TABLE_TYPE = 'BASE TABLE'
ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION
"""
_PRIMARY_KEYS = """
SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = %s AND CONSTRAINT_NAME = 'PRIMARY'
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""
_FOREIGN_KEYS = """
SELECT DISTINCT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME IS NOT NULL
"""


def read_definitions(cur: Any, database: str) -> dict[str, TableDefinition]:
    cur.execute(_COLUMNS, (database,))
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in cur.fetchall():
        columns.setdefault(str(table), []).append((str(name), str(type_)))
    cur.execute(_PRIMARY_KEYS, (database,))
    keys: dict[str, list[str]] = {}
    for table, name in cur.fetchall():
        keys.setdefault(str(table), []).append(str(name))
    return {
        t: TableDefinition(database, t, tuple(cols), tuple(keys.get(t, ()))) for t, cols in columns.items()
    }


def load_order(cur: Any, database: str, tables: list[str]) -> list[str]:
    """Parents before children (users and movies before ratings); ties by name."""
    parents: dict[str, set[str]] = {t: set() for t in tables}
    cur.execute(_FOREIGN_KEYS, (database, database))
    for child, parent in cur.fetchall():
        if child in parents and parent in parents and parent != child:
            parents[str(child)].add(str(parent))
    order: list[str] = []
    while parents:
        ready = sorted(t for t, ps in parents.items() if not ps - set(order)) or sorted(parents)
        for t in ready:
            order.append(t)
            del parents[t]
    return order
