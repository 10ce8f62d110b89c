"""The mapping spec: a validated, declarative description of rows -> Gorse entities."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ColumnType = Literal["id", "int", "float", "str", "date", "timestamp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelRule(_Strict):
    name: str
    column: str
    split: str | None = None
    transform: Literal["year"] | None = None
    privacy: Literal["zip"] | None = None


class SplitColumn(_Strict):
    column: str
    split: str | None = None


class LikedLabels(_Strict):
    name: str
    item_label: str
    feedback_type: str


class UserRule(_Strict):
    id: str
    labels: list[LabelRule] = Field(default_factory=list)
    comment: str | None = None
    liked_labels: LikedLabels | None = None


class ItemRule(_Strict):
    id: str
    labels: list[LabelRule] = Field(default_factory=list)
    categories: SplitColumn | None = None
    timestamp: str | None = None
    comment: str | None = None


class FeedbackTypeRule(_Strict):
    column: str
    threshold: float
    at_or_above: str
    below: str


class FeedbackRule(_Strict):
    user: str
    item: str
    type: FeedbackTypeRule
    value: str | None = None
    timestamp: str | None = None


class TableRule(_Strict):
    entity: Literal["user", "item", "feedback"]
    key: list[str]
    partition_key: str
    columns: dict[str, ColumnType]
    user: UserRule | None = None
    item: ItemRule | None = None
    feedback: FeedbackRule | None = None

    @model_validator(mode="after")
    def _check(self) -> TableRule:
        rule = getattr(self, self.entity)
        if rule is None:
            raise ValueError(f"entity {self.entity!r} needs a [{self.entity}] section")
        for k in [*self.key, self.partition_key]:
            if k not in self.columns:
                raise ValueError(f"column {k!r} is not declared in columns")
        for col in _referenced_columns(rule):
            if col not in self.columns:
                raise ValueError(f"column {col!r} is used but not declared in columns")
        return self


def _referenced_columns(rule: UserRule | ItemRule | FeedbackRule) -> list[str]:
    cols: list[str] = []
    if isinstance(rule, UserRule | ItemRule):
        cols += [rule.id, *(lr.column for lr in rule.labels)]
        if rule.comment:
            cols.append(rule.comment)
    if isinstance(rule, ItemRule):
        if rule.categories:
            cols.append(rule.categories.column)
        if rule.timestamp:
            cols.append(rule.timestamp)
    if isinstance(rule, FeedbackRule):
        cols += [rule.user, rule.item, rule.type.column]
        cols += [c for c in (rule.value, rule.timestamp) if c]
    return cols


class EventsRule(_Strict):
    """Engagement events (the gateway's events stream): event type -> Gorse feedback type."""

    types: dict[str, str]


class MappingSpec(_Strict):
    feedback_types: list[str]
    tables: dict[str, TableRule]
    events: EventsRule | None = None

    @model_validator(mode="after")
    def _check(self) -> MappingSpec:
        for name, t in self.tables.items():
            if t.feedback is not None:
                for ft in (t.feedback.type.at_or_above, t.feedback.type.below):
                    if ft not in self.feedback_types:
                        raise ValueError(f"tables.{name}: feedback type {ft!r} not in feedback_types")
        if self.events is not None:
            clash = set(self.events.types.values()) & set(self.feedback_types)
            if clash:
                # a rating's like/unlike must never be overwritten (or deleted as stale) by an event
                raise ValueError(f"events: feedback types {sorted(clash)} are the tables' own types")
        entities = [t.entity for t in self.tables.values()]
        for e in ("user", "item"):
            if entities.count(e) > 1:
                raise ValueError(f"more than one table maps to {e}")
        return self

    def table_for(self, entity: str) -> tuple[str, TableRule] | None:
        for name, t in self.tables.items():
            if t.entity == entity:
                return name, t
        return None


def load_spec(path: Path | None = None) -> MappingSpec:
    """Load and validate a mapping TOML; the seed's default when ``path`` is None."""
    if path is None:
        text = resources.files("gorse_cdc.mapping").joinpath("default.toml").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return MappingSpec.model_validate(tomllib.loads(text))
