"""The SparkSession for local runs (Glue hands the job its own through GlueContext)."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def local_session(
    master: str = "local[2]", shuffle_partitions: int = 4, driver_memory: str = "2g"
) -> SparkSession:
    """A small local session: workers run this interpreter (so they import gorse_cdc and glue),
    no UI, few shuffle partitions (the data is small next to Spark's defaults)."""
    # PySpark picks the workers' interpreter from this variable only (not from the conf).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName("gorse-cdc-reconcile")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
