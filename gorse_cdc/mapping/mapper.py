"""Rows -> Gorse operations, driven by the MappingSpec. Pure: no I/O, no clock.

One copy of the mapping for the consumer, the replay tool, the reconcile and verify.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, Literal

from gorse_cdc.errors import PermanentRecordError
from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.mapping.ops import (
    DeleteFeedback,
    DeleteItem,
    DeleteUser,
    Operation,
    PutEvent,
    PutFeedback,
    UpsertItem,
    UpsertUser,
)
from gorse_cdc.mapping.spec import LabelRule, MappingSpec, TableRule, load_spec
from gorse_cdc.mapping.values import coerce, coerce_row

ZipPrivacy = Literal["keep", "prefix3", "drop"]
UPSERT_OPERATIONS = frozenset({"load", "insert", "update"})


class UnknownTableError(PermanentRecordError):
    pass


class MissingKeyError(PermanentRecordError):
    pass


class Mapper:
    def __init__(self, spec: MappingSpec | None = None, zip_privacy: ZipPrivacy = "keep") -> None:
        self.spec = spec or load_spec()
        self.zip_privacy = zip_privacy
        users = self.spec.table_for("user")
        items = self.spec.table_for("item")
        self._liked = users[1].user.liked_labels if users and users[1].user else None
        self._items_table = items[0] if items else None

    # ---- tables ------------------------------------------------------------------------
    def table(self, name: str) -> TableRule:
        try:
            return self.spec.tables[name]
        except KeyError:
            raise UnknownTableError(f"table {name!r} is not in the mapping") from None

    def typed_row(self, table: str, row: dict[str, Any], *, csv: bool = False) -> dict[str, Any]:
        return coerce_row(self.table(table).columns, row, csv=csv)

    def key_of(self, table: str, row: dict[str, Any]) -> tuple[str, ...]:
        t = self.table(table)
        values = []
        for k in t.key:
            v = row.get(k)
            if v is None or v == "":
                raise MissingKeyError(f"{table}: key column {k!r} is missing or null")
            values.append(str(coerce(k, t.columns.get(k, "str"), v)))  # typed or raw rows alike
        return tuple(values)

    def partition_key(self, table: str, row: dict[str, Any]) -> str:
        t = self.table(table)
        v = row.get(t.partition_key)
        if v is None or v == "":
            raise MissingKeyError(f"{table}: partition key {t.partition_key!r} is missing")
        return str(coerce(t.partition_key, t.columns.get(t.partition_key, "str"), v))

    # ---- entities ----------------------------------------------------------------------
    def _labels(self, rules: list[LabelRule], row: dict[str, Any]) -> dict[str, Any]:
        labels: dict[str, Any] = {}
        for r in rules:
            v = row.get(r.column)
            if v is None:
                continue
            if r.privacy == "zip":
                if self.zip_privacy == "drop":
                    continue
                if self.zip_privacy == "prefix3":
                    v = str(v)[:3]
            if r.split is not None:
                v = [p for p in str(v).split(r.split) if p]
            elif r.transform == "year":
                v = v.year if isinstance(v, date) else int(str(v)[:4])
            elif isinstance(v, datetime | date):
                v = v.isoformat()
            labels[r.name] = v
        return labels

    def user_from_row(self, table: str, row: dict[str, Any]) -> User:
        """The user with demographic labels only (liked labels: ``with_liked``)."""
        rule = self.table(table).user
        assert rule is not None
        self.key_of(table, row)
        comment = row.get(rule.comment) if rule.comment else None
        return User(str(row[rule.id]), self._labels(rule.labels, row), str(comment or ""))

    def item_from_row(self, table: str, row: dict[str, Any]) -> Item:
        rule = self.table(table).item
        assert rule is not None
        self.key_of(table, row)
        categories: tuple[str, ...] = ()
        if rule.categories is not None:
            raw = row.get(rule.categories.column)
            if raw is not None:
                sep = rule.categories.split
                parts = str(raw).split(sep) if sep else [str(raw)]
                categories = tuple(dict.fromkeys(p for p in parts if p))
        ts = row.get(rule.timestamp) if rule.timestamp else None
        if isinstance(ts, date) and not isinstance(ts, datetime):
            ts = datetime(ts.year, ts.month, ts.day, tzinfo=UTC)
        comment = row.get(rule.comment) if rule.comment else None
        return Item(
            str(row[rule.id]),
            self._labels(rule.labels, row),
            categories,
            ts,
            str(comment or ""),
        )

    def feedback_from_row(self, table: str, row: dict[str, Any]) -> tuple[Feedback, tuple[str, ...]]:
        """The feedback row and the other types to delete for the same (user, item)."""
        rule = self.table(table).feedback
        assert rule is not None
        self.key_of(table, row)
        score = row.get(rule.type.column)
        if score is None:
            raise MissingKeyError(f"{table}: {rule.type.column!r} decides the feedback type but is null")
        ftype = rule.type.at_or_above if float(score) >= rule.type.threshold else rule.type.below
        value = row.get(rule.value) if rule.value else None
        ts = row.get(rule.timestamp) if rule.timestamp else None
        fb = Feedback(
            ftype,
            str(row[rule.user]),
            str(row[rule.item]),
            float(value) if value is not None else 0.0,
            ts,
        )
        return fb, tuple(t for t in self.spec.feedback_types if t != ftype)

    # ---- derived liked labels ------------------------------------------------------------
    @property
    def liked_feedback_type(self) -> str | None:
        return self._liked.feedback_type if self._liked else None

    def item_label_values(self, item_labels: Any) -> list[str]:
        """The values of the item label that liked labels are built from."""
        if self._liked is None or not isinstance(item_labels, dict):
            return []
        v = item_labels.get(self._liked.item_label)
        if isinstance(v, list):
            return [str(x) for x in v]
        return [] if v is None else [str(v)]

    def liked_labels(self, liked_item_labels: Iterable[Any]) -> list[str]:
        """Sorted unique labels over the labels of the items a user liked."""
        out: set[str] = set()
        for labels in liked_item_labels:
            out.update(self.item_label_values(labels))
        return sorted(out)

    def with_liked(self, user: User, liked: list[str]) -> User:
        if self._liked is None:
            return user
        labels = dict(user.labels or {})
        labels[self._liked.name] = liked
        return User(user.user_id, labels, user.comment)

    # ---- engagement events ---------------------------------------------------------------------
    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self.spec.events.types) if self.spec.events else frozenset()

    def map_event(self, event: dict[str, Any]) -> PutEvent:
        """One event record's body ({user, item, type, ts, value}) -> its Gorse feedback."""
        if self.spec.events is None:
            raise PermanentRecordError("the mapping has no [events] section")
        etype = event.get("type")
        ftype = self.spec.events.types.get(str(etype))
        if ftype is None:
            raise PermanentRecordError(f"unknown event type {etype!r}")
        for k in ("user", "item"):
            if not isinstance(event.get(k), str):
                raise MissingKeyError(f"event: {k!r} is missing or not a string")
        ts = coerce("ts", "timestamp", event["ts"]) if event.get("ts") else None
        value = event.get("value", 1.0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PermanentRecordError(f"event: value {value!r} is not a number")
        return PutEvent(Feedback(ftype, event["user"], event["item"], float(value), ts))

    # ---- changes -> operations -------------------------------------------------------------
    def map_change(
        self,
        table: str,
        operation: str,
        row: dict[str, Any],
        before_image: dict[str, Any] | None = None,
        *,
        csv: bool = False,
    ) -> list[Operation]:
        """Map one row change. ``operation``: load/insert/update/delete (or DMS S3 I/U/D)."""
        t = self.table(table)
        operation = {"I": "insert", "U": "update", "D": "delete"}.get(operation, operation)
        typed = self.typed_row(table, row, csv=csv)
        ops: list[Operation] = []
        if operation == "update" and before_image:
            old = self.typed_row(table, before_image, csv=csv)
            if all(k in old for k in t.key) and self.key_of(table, old) != self.key_of(table, typed):
                ops.append(self._delete(table, t, old))
        if operation == "delete":
            ops.append(self._delete(table, t, typed))
        elif operation in UPSERT_OPERATIONS:
            ops.append(self._upsert(table, t, typed, operation))
        else:
            raise PermanentRecordError(f"unknown operation {operation!r}")
        return ops

    def _delete(self, table: str, t: TableRule, row: dict[str, Any]) -> Operation:
        key = self.key_of(table, row)
        if t.entity == "user":
            return DeleteUser(key[0])
        if t.entity == "item":
            return DeleteItem(key[0])
        rule = t.feedback
        assert rule is not None
        return DeleteFeedback(str(row[rule.user]), str(row[rule.item]))

    def _upsert(self, table: str, t: TableRule, row: dict[str, Any], operation: str) -> Operation:
        if t.entity == "user":
            return UpsertUser(self.user_from_row(table, row))
        if t.entity == "item":
            return UpsertItem(self.item_from_row(table, row))
        fb, stale = self.feedback_from_row(table, row)
        return PutFeedback(fb, stale, fresh=operation == "insert")
