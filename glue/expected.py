"""Current source rows -> the expected Gorse state, in Spark, through the shared Mapper.

Every row is mapped by ``gorse_cdc.mapping.Mapper`` inside mapPartitions (never a second copy
of the mapping). The users' derived liked labels are a Spark join: feedback of the liked type
x the liked item-label values of existing items, collected per user, then Mapper.with_liked.
Each kind comes out as (key, canon, entity, error): key = JSON list of Gorse's key, canon =
the normalised fields ``diff_states`` compares, entity = Gorse JSON for repair, error = why a
source row cannot map (the row is then reported, and its key is left alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from glue.vocabulary import Kind
from gorse_cdc.errors import PermanentRecordError
from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.mapping import Mapper, MappingSpec
from gorse_cdc.mapping.state import comparable_fields

_S = StringType()
KIND_COLUMNS = ["key", "canon", "entity", "error"]
KIND_SCHEMA = StructType([StructField(c, _S, c != "key") for c in KIND_COLUMNS])
ITEM_SCHEMA = StructType([*KIND_SCHEMA.fields, StructField("liked_values", ArrayType(_S), True)])
FEEDBACK_SCHEMA = StructType(
    [*KIND_SCHEMA.fields, *(StructField(c, _S, True) for c in ("ftype", "user_id", "item_id"))]
)
USER_PRE_SCHEMA = StructType([*KIND_SCHEMA.fields, StructField("user_id", _S, True)])


@dataclass(frozen=True)
class MapperSpec:
    """What executors need to rebuild the Mapper (a JSON string and an option)."""

    spec_json: str
    zip_privacy: str

    @classmethod
    def of(cls, mapper: Mapper) -> MapperSpec:
        return cls(mapper.spec.model_dump_json(), mapper.zip_privacy)

    def mapper(self) -> Mapper:
        return _cached_mapper(self.spec_json, self.zip_privacy)


@lru_cache(maxsize=4)
def _cached_mapper(spec_json: str, zip_privacy: str) -> Mapper:
    return Mapper(MappingSpec.model_validate_json(spec_json), zip_privacy)  # type: ignore[arg-type]


def key_json(*parts: str) -> str:
    return orjson.dumps(list(parts)).decode()


def canon(entity: User | Item | Feedback) -> str:
    return orjson.dumps(comparable_fields(entity), option=orjson.OPT_SORT_KEYS).decode()


def _entity_json(entity: User | Item | Feedback) -> str:
    return orjson.dumps(entity.to_json()).decode()


def _raw_key(mapper: Mapper, table: str, row: dict[str, Any]) -> str:
    return key_json(*(str(row.get(k)) for k in mapper.table(table).key))


def _mapped(ms: MapperSpec, table: str, rows: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    mapper = ms.mapper()
    entity = mapper.table(table).entity
    for r in rows:
        row = r.asDict()
        try:
            typed = mapper.typed_row(table, row)
            if entity == "user":
                u = mapper.user_from_row(table, typed)
                yield (key_json(u.user_id), None, _entity_json(u), None, u.user_id)
            elif entity == "item":
                it = mapper.item_from_row(table, typed)
                yield (
                    key_json(it.item_id),
                    canon(it),
                    _entity_json(it),
                    None,
                    mapper.item_label_values(it.labels),
                )
            else:
                fb, _ = mapper.feedback_from_row(table, typed)
                k = key_json(*fb.key)
                yield (k, canon(fb), _entity_json(fb), None, fb.feedback_type, fb.user_id, fb.item_id)
        except PermanentRecordError as e:
            bad = (_raw_key(mapper, table, row), None, None, f"{table}: {e}")
            yield bad + ((None,) if entity == "user" else ([],) if entity == "item" else (None, None, None))


def _with_liked(ms: MapperSpec, rows: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    mapper = ms.mapper()
    for r in rows:
        if r["error"] is not None:
            yield (r["key"], None, None, r["error"])
            continue
        user = mapper.with_liked(User.from_json(orjson.loads(r["entity"])), sorted(r["liked"] or []))
        yield (r["key"], canon(user), _entity_json(user), None)


@dataclass
class ExpectedState:
    users: DataFrame  # KIND_SCHEMA
    items: DataFrame  # ITEM_SCHEMA
    feedback: DataFrame  # FEEDBACK_SCHEMA

    def kinds(self) -> dict[Kind, DataFrame]:
        return {
            Kind.USERS: self.users,
            Kind.ITEMS: self.items.select(*KIND_COLUMNS),
            Kind.FEEDBACK: self.feedback.select(*KIND_COLUMNS),
        }


def expected_state(mapper: Mapper, current: dict[str, DataFrame]) -> ExpectedState:
    """``current``: the current rows of each mapped table (latest_rows)."""
    ms = MapperSpec.of(mapper)
    spark = next(iter(current.values())).sparkSession
    frames: dict[str, DataFrame] = {}
    schemas = {"user": USER_PRE_SCHEMA, "item": ITEM_SCHEMA, "feedback": FEEDBACK_SCHEMA}
    for table, df in current.items():
        entity: str = mapper.table(table).entity

        def run(rows: Iterable[Any], table: str = table) -> Iterator[tuple[Any, ...]]:
            return _mapped(ms, table, rows)

        frames[entity] = spark.createDataFrame(df.rdd.mapPartitions(run), schemas[entity])
    for name, schema in schemas.items():
        frames.setdefault(name, spark.createDataFrame([], schema))
    items, feedback, users_pre = frames["item"], frames["feedback"], frames["user"]
    liked_type = mapper.liked_feedback_type
    ok_items = items.where(F.col("error").isNull()).select(F.col("key").alias("ikey"), "liked_values")
    liked = (
        feedback.where((F.col("ftype") == F.lit(liked_type)) & F.col("error").isNull())
        .select("user_id", F.to_json(F.array("item_id")).alias("ikey"))
        .join(ok_items, "ikey")
        .select("user_id", F.explode("liked_values").alias("label"))
        .groupBy("user_id")
        .agg(F.collect_set("label").alias("liked"))
    )
    joined = users_pre.join(liked, "user_id", "left").select(*KIND_COLUMNS, "liked")
    users = spark.createDataFrame(joined.rdd.mapPartitions(lambda rows: _with_liked(ms, rows)), KIND_SCHEMA)
    return ExpectedState(users, items, feedback)
