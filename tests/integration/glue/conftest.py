from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from glue.spark import local_session


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark for the whole test session (start-up is slow)."""
    session = local_session("local[2]", shuffle_partitions=4, driver_memory="1g")
    yield session
    session.stop()
