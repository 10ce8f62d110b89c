"""What Gorse should hold for a given database state, and how two Gorse states differ.

Pure: used by `gorse-cdc verify`, by the reconcile job's local path and by tests. The
reconcile job computes the same thing at scale on Spark using the same Mapper per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.mapping.mapper import Mapper

FeedbackKey = tuple[str, str, str]


@dataclass
class GorseState:
    users: dict[str, User] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    feedback: dict[FeedbackKey, Feedback] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "items": len(self.items), "feedback": len(self.feedback)}


def expected_state(
    mapper: Mapper, rows: dict[str, Iterable[dict[str, Any]]], *, csv: bool = False
) -> GorseState:
    """``rows``: the current rows of each mapped table (typed or CSV strings)."""
    state = GorseState()
    user_rows: list[User] = []
    for table, table_rows in rows.items():
        entity = mapper.table(table).entity
        for raw in table_rows:
            row = mapper.typed_row(table, raw, csv=csv)
            if entity == "user":
                user_rows.append(mapper.user_from_row(table, row))
            elif entity == "item":
                item = mapper.item_from_row(table, row)
                state.items[item.item_id] = item
            else:
                fb, _ = mapper.feedback_from_row(table, row)
                state.feedback[fb.key] = fb
    liked: dict[str, list[Any]] = {}
    liked_type = mapper.liked_feedback_type
    for (ftype, user_id, item_id), _fb in state.feedback.items():
        if ftype == liked_type and item_id in state.items:
            liked.setdefault(user_id, []).append(state.items[item_id].labels)
    for user in user_rows:
        state.users[user.user_id] = mapper.with_liked(user, mapper.liked_labels(liked.get(user.user_id, [])))
    return state


# ---- diff ----------------------------------------------------------------------------------
def _norm(v: Any) -> Any:
    """Normalise JSON-ish values so 4 == 4.0 and tuples == lists."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, list | tuple):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if x is not None}
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def _fields(entity: User | Item | Feedback) -> dict[str, Any]:
    d = entity.to_json()
    d.pop("Updated", None)
    if "Labels" in d and d["Labels"] in (None, {}):
        d["Labels"] = None
    if "Categories" in d:
        d["Categories"] = sorted(d["Categories"] or [])
    return {k: _norm(v) for k, v in d.items()}


def comparable_fields(entity: User | Item | Feedback) -> dict[str, Any]:
    """The normalised fields ``diff_states`` compares (for diffs computed elsewhere, e.g. Spark)."""
    return _fields(entity)


@dataclass
class KindDrift:
    missing: list[Any] = field(default_factory=list)  # expected, not in Gorse
    extra: list[Any] = field(default_factory=list)  # in Gorse, not expected
    changed: list[tuple[Any, dict[str, tuple[Any, Any]]]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)

    def summary(self, sample: int = 10) -> dict[str, Any]:
        return {
            "missing": len(self.missing),
            "extra": len(self.extra),
            "changed": len(self.changed),
            "sample_missing": [list(k) if isinstance(k, tuple) else k for k in self.missing[:sample]],
            "sample_extra": [list(k) if isinstance(k, tuple) else k for k in self.extra[:sample]],
            "sample_changed": [
                {"key": list(k) if isinstance(k, tuple) else k, "fields": {f: list(v) for f, v in d.items()}}
                for k, d in self.changed[:sample]
            ],
        }


@dataclass
class Drift:
    users: KindDrift
    items: KindDrift
    feedback: KindDrift

    @property
    def total(self) -> int:
        return self.users.total + self.items.total + self.feedback.total

    def summary(self, sample: int = 10) -> dict[str, Any]:
        return {
            "total": self.total,
            "users": self.users.summary(sample),
            "items": self.items.summary(sample),
            "feedback": self.feedback.summary(sample),
        }


def _diff_kind(expected: dict[Any, Any], actual: dict[Any, Any]) -> KindDrift:
    drift = KindDrift()
    for key, exp in expected.items():
        act = actual.get(key)
        if act is None:
            drift.missing.append(key)
            continue
        ef, af = _fields(exp), _fields(act)
        changed = {f: (ef.get(f), af.get(f)) for f in ef.keys() | af.keys() if ef.get(f) != af.get(f)}
        if changed:
            drift.changed.append((key, changed))
    drift.extra = [k for k in actual if k not in expected]
    drift.missing.sort()
    drift.extra.sort()
    drift.changed.sort(key=lambda kv: kv[0])
    return drift


def diff_states(expected: GorseState, actual: GorseState) -> Drift:
    return Drift(
        _diff_kind(expected.users, actual.users),
        _diff_kind(expected.items, actual.items),
        _diff_kind(expected.feedback, actual.feedback),
    )
