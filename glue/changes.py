"""DMS S3 files -> a Spark DataFrame of changes -> the current row per primary key.

Executors read the files themselves through the store (boto3 or a local folder) and decode
them with the shared decoder, so line order is exact and no Hadoop-AWS jars are needed.
The current row of a key is its last change in commit order (file order, then line order);
a key whose last change is a delete (Op D) has no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from glue.decode import file_rows
from glue.files import FileStore, TableFiles

ORDER_COLUMNS = ("file_idx", "line", "op")


def changes_schema(columns: list[str]) -> StructType:
    fields = [
        StructField("file_idx", LongType(), False),
        StructField("line", LongType(), False),
        StructField("op", StringType(), False),
    ]
    return StructType(fields + [StructField(c, StringType(), True) for c in columns])


def read_changes(
    spark: SparkSession, store: FileStore, tf: TableFiles, *, timestamp_column: bool = False
) -> DataFrame:
    """Every row of every file of one table, with its (file_idx, line) commit position."""
    definition = tf.definition
    schema = changes_schema(definition.column_names)
    jobs = list(enumerate(tf.files))
    if not jobs:
        return spark.createDataFrame([], schema)

    def read(part: Iterable[tuple[int, Any]]) -> Iterator[tuple[Any, ...]]:
        for idx, name in part:
            data = store.read(name.key)
            for line, (op, values) in enumerate(file_rows(data, name, definition, timestamp_column)):
                yield (idx, line, op, *values)

    slices = min(len(jobs), spark.sparkContext.defaultParallelism * 4)
    rdd = spark.sparkContext.parallelize(jobs, numSlices=max(1, slices)).mapPartitions(read)
    return spark.createDataFrame(rdd, schema)


def latest_rows(changes: DataFrame, key: list[str], columns: list[str]) -> DataFrame:
    """The current row per key (columns as strings, NULL as null); deleted keys dropped.

    max(struct(file_idx, line, ...)) picks the last change per key with a hash aggregate
    (no sort of the whole table)."""
    values = [c for c in columns if c not in key]
    last = F.max(F.struct(*ORDER_COLUMNS, *values)).alias("last")
    agg = changes.groupBy(*key).agg(last)
    return agg.where(F.col("last.op") != "D").select(*key, *[F.col(f"last.{c}").alias(c) for c in values])
