"""--source-check: re-read the source database around each repair write, so the reconcile
never undoes a change the stream applied after the job's cut-off.

For each chunk of drifted keys:
1. split: read the keys' current rows from the source DB and map them (shared Mapper). A key
   whose current expected entity differs from the snapshot's changed after the cut-off: it is
   deferred to the stream (the consumer is applying or will apply that change).
2. write the repair.
3. settle: read the keys again. If a key moved between the read in 1 and now, the consumer may
   have applied the newer change *before* our write landed, so our write may have undone it:
   write the key's current state again, and repeat (at most 3 rounds) until the source holds
   still. Any commit after the last read reaches Gorse through the stream *after* our write,
   because the consumer applies a change only after its commit.
Guarantee: for every key the job writes, Gorse's last write from the job equals the source row
at a read taken after that write (or a later stream write supersedes it). Rows are compared
through the mapping, so the derived liked labels are re-derived from the source too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from glue.expected import canon
from glue.repair import DriftRow
from glue.vocabulary import DriftClass, Kind
from glue.writes import GorseWriter
from gorse_cdc.errors import FatalError
from gorse_cdc.gorse import Feedback, Item, User
from gorse_cdc.mapping import Mapper

Entity = User | Item | Feedback | None
Ident = tuple[str, ...]
MODELS: dict[Kind, Any] = {Kind.USERS: User, Kind.ITEMS: Item, Kind.FEEDBACK: Feedback}
ROUNDS = 3


@dataclass
class _Written:
    kind: Kind
    ident: Ident
    state: Entity  # what Gorse holds for ident after our write (None: nothing)


INTEGER_TYPES = {"smallint", "integer", "bigint"}


def _castable(pg_type: str, value: str) -> bool:
    if pg_type in INTEGER_TYPES:
        return value.lstrip("-").isdigit()
    return True


def _ident(r: DriftRow) -> Ident:
    return (r.key[1], r.key[2]) if r.kind == Kind.FEEDBACK else (r.key[0],)


def _same(a: Entity, b: Entity) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and canon(a) == canon(b))


class SourceDbCheck:
    def __init__(self, dsn: str, mapper: Mapper, schema: str) -> None:
        self.mapper = mapper
        self.schema = schema
        try:
            self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        except psycopg.OperationalError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FatalError(
                f"source check: cannot reach the source database ({first}); "
                "run with --no-source-check (SOURCE_CHECK false) to repair without it"
            ) from None
        self._types: dict[str, dict[str, str]] = {}
        self._seen: dict[Ident, Entity] = {}  # the source state each kept key was checked against

    def close(self) -> None:
        self.conn.close()

    # ---- reading the source --------------------------------------------------------------
    def _column_types(self, table: str) -> dict[str, str]:
        if table not in self._types:
            rows = self.conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (f"{self.schema}.{table}",),
            ).fetchall()
            self._types[table] = {r["attname"]: r["t"] for r in rows}
        return self._types[table]

    def _rows(self, table: str, cols: Sequence[str], keys: Sequence[Ident]) -> list[dict[str, Any]]:
        if not keys:
            return []
        types = self._column_types(table)
        # a key that cannot be cast to the column's type (e.g. an ID only Gorse holds) has no row
        keys = [k for k in keys if all(_castable(types[c], v) for c, v in zip(cols, k, strict=True))]
        if not keys:
            return []
        unnest = sql.SQL(", ").join(
            sql.SQL("{}::text[]::{}[]").format(sql.Placeholder(), sql.SQL(types[c])) for c in cols
        )
        query = sql.SQL("SELECT * FROM {}.{} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
            sql.Identifier(self.schema),
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in cols),
            unnest,
        )
        params = [[k[i] for k in keys] for i in range(len(cols))]
        return self.conn.execute(query, params).fetchall()

    def _items(self, ids: Sequence[str]) -> dict[str, Item]:
        found = self.mapper.spec.table_for("item")
        assert found is not None
        table, rule = found
        out: dict[str, Item] = {}
        for row in self._rows(table, rule.key, [(i,) for i in ids]):
            item = self.mapper.item_from_row(table, self.mapper.typed_row(table, row))
            out[item.item_id] = item
        return out

    def _feedback(self, col: str, keys: Sequence[Ident]) -> dict[Ident, Feedback]:
        found = self.mapper.spec.table_for("feedback")
        assert found is not None and found[1].feedback is not None
        table, rule = found[0], found[1].feedback
        cols = [rule.user] if col == "user" else [rule.user, rule.item]
        out: dict[Ident, Feedback] = {}
        for row in self._rows(table, cols, keys):
            fb, _ = self.mapper.feedback_from_row(table, self.mapper.typed_row(table, row))
            out[(fb.user_id, fb.item_id)] = fb
        return out

    def _users(self, ids: Sequence[str]) -> dict[str, User]:
        found = self.mapper.spec.table_for("user")
        assert found is not None
        table, rule = found
        liked_fb = [
            fb
            for fb in self._feedback("user", [(u,) for u in ids]).values()
            if fb.feedback_type == self.mapper.liked_feedback_type
        ]
        items = self._items(sorted({fb.item_id for fb in liked_fb}))
        liked: dict[str, list[Any]] = {}
        for fb in liked_fb:
            if fb.item_id in items:
                liked.setdefault(fb.user_id, []).append(items[fb.item_id].labels)
        out: dict[str, User] = {}
        for row in self._rows(table, rule.key, [(i,) for i in ids]):
            user = self.mapper.user_from_row(table, self.mapper.typed_row(table, row))
            out[user.user_id] = self.mapper.with_liked(
                user, self.mapper.liked_labels(liked.get(user.user_id, []))
            )
        return out

    def current(self, kind: Kind, idents: Sequence[Ident]) -> dict[Ident, Entity]:
        """The entity the source database maps to now, per identity (None: no row)."""
        uniq = sorted(set(idents))
        if kind == Kind.USERS:
            users = self._users([i[0] for i in uniq])
            return {i: users.get(i[0]) for i in uniq}
        if kind == Kind.ITEMS:
            items = self._items([i[0] for i in uniq])
            return {i: items.get(i[0]) for i in uniq}
        fbs = self._feedback("pair", uniq)
        return {i: fbs.get(i) for i in uniq}

    # ---- the protocol used by the Repairer ---------------------------------------------------
    def split(self, rows: Sequence[DriftRow]) -> tuple[list[DriftRow], list[DriftRow]]:
        if not rows:
            return [], []
        kind = rows[0].kind
        now = self.current(kind, [_ident(r) for r in rows])
        keep: list[DriftRow] = []
        moved: list[DriftRow] = []
        self._seen = {}
        for r in rows:
            cur = now[_ident(r)]
            if r.cls == DriftClass.EXTRA:
                ok = cur is None or (isinstance(cur, Feedback) and cur.feedback_type != r.key[0])
            else:
                ok = (
                    cur is not None
                    and r.entity is not None
                    and _same(cur, MODELS[kind].from_json(orjson.loads(r.entity)))
                )
            (keep if ok else moved).append(r)
            if ok:
                self._seen[_ident(r)] = cur
        return keep, moved

    async def _write_state(self, writer: GorseWriter, w: _Written) -> None:
        s = w.state
        if w.kind == Kind.FEEDBACK:
            assert isinstance(s, Feedback | None)
            if s is not None:
                await writer.upsert(Kind.FEEDBACK, [orjson.dumps(s.to_json()).decode()])
            for t in self.mapper.spec.feedback_types:
                if s is None or t != s.feedback_type:
                    await writer.delete(Kind.FEEDBACK, [[t, *w.ident]])
        elif s is None:
            await writer.delete(w.kind, [list(w.ident)])
        else:
            await writer.upsert(w.kind, [orjson.dumps(s.to_json()).decode()])

    async def settle(self, rows: Sequence[DriftRow], writer: GorseWriter) -> int:
        """Re-read after the write; rewrite keys that moved meanwhile. Returns keys rewritten."""
        if not rows:
            return 0
        kind = rows[0].kind
        idents = {_ident(r) for r in rows}
        pending = [_Written(kind, i, self._seen[i]) for i in sorted(idents)]
        rewritten = 0
        for _ in range(ROUNDS):
            now = self.current(kind, [w.ident for w in pending])
            moved = [
                _Written(kind, w.ident, now[w.ident]) for w in pending if not _same(now[w.ident], w.state)
            ]
            if not moved:
                break
            for w in moved:
                await self._write_state(writer, w)
            rewritten += len(moved)
            pending = moved
        return rewritten
