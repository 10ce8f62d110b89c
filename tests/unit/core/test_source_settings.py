"""source.engine: the local DSN, its port (with the stack's offset) and the DMS schema-name."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from gorse_cdc.settings import Settings, SourceSettings

pytestmark = pytest.mark.unit


def test_postgres_by_default() -> None:
    assert SourceSettings().engine == "postgres"
    s = Settings()
    s = s.model_copy(update={"source": s.source.model_copy(update={"engine": "postgres", "dsn": None})})
    assert s.source_dsn.startswith("postgresql://") and s.source_schema == s.source.schema_name


def test_mysql_local_dsn_and_schema() -> None:
    s = Settings()
    s = s.model_copy(
        update={
            "source": s.source.model_copy(update={"engine": "mysql", "dsn": None}),
            "stack": s.stack.model_copy(update={"port_offset": 1000}),
        }
    )
    assert s.source_dsn == f"mysql://gorse_cdc:gorse_cdc@127.0.0.1:{13316 + 1000}/ott"
    assert s.source_schema == "ott"  # DMS's schema-name for MySQL: the database
    own = s.model_copy(
        update={"source": s.source.model_copy(update={"dsn": SecretStr("mysql://u:p@h:3306/shop")})}
    )
    assert own.source_schema == "shop"
