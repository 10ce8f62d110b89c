"""`gorse-cdc verify`: is Gorse equal to mapping(source database)? A library function too.

The expected state comes from the source rows through the shared mapping
(gorse_cdc.mapping.state.expected_state); the actual state from Gorse's bulk export
(falling back to paginated reads when the bulk endpoints are unavailable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from gorse_cdc.errors import GorseRequestError
from gorse_cdc.gorse import GorseClient
from gorse_cdc.mapping import Drift, GorseState, Mapper, diff_states, expected_state
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def read_source_rows(dsn: str, mapper: Mapper, schema: str = "public") -> dict[str, Iterable[dict[str, Any]]]:
    """Every row of every mapped table, in one consistent snapshot."""
    rows: dict[str, Iterable[dict[str, Any]]] = {}
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table, rule in mapper.spec.tables.items():
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in rule.columns)
            query = sql.SQL("SELECT {} FROM {}.{}").format(
                cols, sql.Identifier(schema), sql.Identifier(table)
            )
            rows[table] = list(conn.execute(query).fetchall())
        conn.rollback()
    return rows


async def read_gorse_state(client: GorseClient) -> GorseState:
    state = GorseState()
    try:
        users, items, feedback = (
            await client.export_users(),
            await client.export_items(),
            await client.export_feedback(),
        )
    except GorseRequestError as e:
        log.info("bulk export unavailable (%s); reading page by page", e)
        users = [u async for u in client.iter_users()]
        items = [i async for i in client.iter_items()]
        feedback = [f async for f in client.iter_feedback()]
    state.users = {u.user_id: u for u in users}
    state.items = {i.item_id: i for i in items}
    state.feedback = {f.key: f for f in feedback}
    return state


async def verify(settings: Settings, mapper: Mapper | None = None) -> Drift:
    """The differences between what Gorse should hold and what it holds (empty: equal)."""
    from consumers.wiring import build_mapper

    mapper = mapper or build_mapper(settings)
    if settings.source.engine == "mysql":
        from gorse_cdc.source_db import read_mysql_rows

        tables = {t: list(rule.columns) for t, rule in mapper.spec.tables.items()}
        rows: dict[str, Iterable[dict[str, Any]]] = dict(read_mysql_rows(settings.source_dsn, tables))
    else:
        rows = read_source_rows(settings.source_dsn, mapper, settings.source_schema)
    expected = expected_state(mapper, rows)
    async with GorseClient.from_settings(settings) as client:
        actual = await read_gorse_state(client)
    if mapper.spec.events is not None:  # engagement events are Gorse's own, not the database's
        events = set(mapper.spec.events.types.values())
        actual.feedback = {k: f for k, f in actual.feedback.items() if f.feedback_type not in events}
    return diff_states(expected, actual)


def render(drift: Drift, sample: int = 10) -> str:
    if drift.total == 0:
        return "Gorse equals the source database (users, items, feedback, labels)."
    lines = [f"{drift.total} differences:"]
    for kind in ("users", "items", "feedback"):
        summary = getattr(drift, kind).summary(sample)
        lines.append(
            f"  {kind}: {summary['missing']} missing, {summary['extra']} extra, {summary['changed']} changed"
        )
        for name in ("sample_missing", "sample_extra"):
            if summary[name]:
                lines.append(f"    {name.removeprefix('sample_')}: {summary[name]}")
        for change in summary["sample_changed"]:
            lines.append(f"    changed {change['key']}: {change['fields']}")
    return "\n".join(lines)
