"""Expected vs actual Gorse state, joined in Spark, with ``diff_states`` semantics: missing
(expected, not in Gorse), extra (in Gorse, not expected), changed (same key, a normalised
field differs; Updated is ignored). Keys whose source row cannot be mapped are left out."""

from __future__ import annotations

from typing import Any

import orjson
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from glue.vocabulary import DriftClass, Kind

DRIFT_COLUMNS = ["kind", "cls", "key", "entity", "ts", "exp_canon", "act_canon"]


def diff_kind(kind: Kind, expected: DataFrame, actual: DataFrame) -> DataFrame:
    """One row per drifted key: (kind, cls, key, entity = expected Gorse JSON, ts = Gorse
    feedback timestamp, exp_canon, act_canon); kind and cls hold Kind and DriftClass values."""
    e = expected.where(F.col("error").isNull()).select(
        "key", F.col("canon").alias("exp_canon"), F.col("entity")
    )
    bad = expected.where(F.col("error").isNotNull()).select(F.col("key").alias("bad_key"))
    a = actual.select("key", F.col("canon").alias("act_canon"), "ts")
    if kind == Kind.FEEDBACK:  # an unmappable rating hides every type of its (user, item)
        a = a.withColumn("bad_key", F.to_json(F.slice(F.from_json("key", "array<string>"), 2, 2)))
    else:
        a = a.withColumn("bad_key", F.col("key"))
    a = a.join(bad, "bad_key", "left_anti").drop("bad_key")
    cls = (
        F.when(F.col("act_canon").isNull(), DriftClass.MISSING.value)
        .when(F.col("exp_canon").isNull(), DriftClass.EXTRA.value)
        .when(F.col("exp_canon") != F.col("act_canon"), DriftClass.CHANGED.value)
    )
    return (
        e.join(a, "key", "full_outer")
        .withColumn("cls", cls)
        .where(F.col("cls").isNotNull())
        .withColumn("kind", F.lit(str(kind)))
        .select(*DRIFT_COLUMNS)
    )


def changed_fields(exp_canon: str | None, act_canon: str | None) -> dict[str, list[Any]]:
    """{field: [expected, actual]} for the fields that differ (as in diff_states)."""
    ef: dict[str, Any] = orjson.loads(exp_canon) if exp_canon else {}
    af: dict[str, Any] = orjson.loads(act_canon) if act_canon else {}
    return {f: [ef.get(f), af.get(f)] for f in sorted(ef.keys() | af.keys()) if ef.get(f) != af.get(f)}


def decode_key(key: str) -> list[str]:
    out: list[str] = orjson.loads(key)
    return out
