"""S3 target options: gzip, date partitions, a timestamp column, Parquet."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from gorse_cdc.settings import Settings
from producers.activity import run_activity
from producers.dms import run_dms
from producers.synthetic import GeneratorConfig, generate

from .dms_reader import as_text, journal_by_key, read_s3, s3_cdc_by_key


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "GZIP", "date_partition": True, "timestamp_column": "dms_ts"},
        {"data_format": "parquet"},
    ],
)
def test_s3_options(dms_settings: Settings, options: dict[str, Any]) -> None:
    s = dms_settings.model_copy(update={"s3": dms_settings.s3.model_copy(update=options)})
    generate(s, GeneratorConfig(users=30, movies=20, ratings=200, seed=41), truncate=True)
    run_dms(s, mode="full-load-and-cdc", until_idle=True, idle_s=0.5)
    a = run_activity(s, changes=300, seed=42, record=True)
    run_dms(s, until_idle=True, idle_s=0.5)
    keys = [
        o["Key"]
        for o in boto3.client("s3", **s.aws_client_kwargs("s3"))
        .list_objects_v2(Bucket=s.s3.bucket, Prefix=s.s3.prefix + "/public/ratings/")
        .get("Contents", [])
    ]
    cdc_keys = [k for k in keys if "LOAD" not in k]
    assert cdc_keys
    if options.get("compression") == "GZIP":
        assert all(k.endswith(".csv.gz") for k in keys)
        assert all(k.count("/") == 6 for k in cdc_keys)  # prefix/public/ratings/YYYY/MM/DD/file
    if options.get("data_format") == "parquet":
        assert all(k.endswith(".parquet") for k in keys)
    assert a.journal is not None
    want = journal_by_key([c for c in a.journal if c.table == "ratings"], as_text)
    load, cdc = read_s3(s, "ratings", timestamp_column=bool(options.get("timestamp_column")))
    assert len(load) == 200
    got = s3_cdc_by_key("ratings", cdc)
    if options.get("data_format") == "parquet":  # typed values: compare as text
        got = {k: [(op, as_text(r) if r else None) for op, r in v] for k, v in got.items()}
    assert got == want
