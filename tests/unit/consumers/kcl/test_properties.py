"""The MultiLangDaemon's properties come from the one Settings object."""

from __future__ import annotations

import pytest

from consumers.kcl.properties import daemon_environment, daemon_properties, kcl_kinesis_endpoint, render
from gorse_cdc.settings import Settings


def test_local_properties_point_at_the_stack_and_share_the_lease_table() -> None:
    s = Settings(stack={"port_offset": 200}, leases={"table": "t1", "failover_ms": 3000})
    p = daemon_properties(s, "w1", python="/py")
    assert p["applicationName"] == "t1"
    assert p["streamName"] == s.kinesis.stream_name
    assert p["workerIdentifier"] == "w1"
    assert p["executableName"] == "/py -m consumers.kcl"
    assert p["kinesisEndpoint"] == "http://127.0.0.1:14768"  # the h2c listener, not 14767
    assert p["dynamoDBEndpoint"] == "http://127.0.0.1:15200"
    assert p["failoverTimeMillis"] == "3000"
    assert p["shardSyncIntervalMillis"] == "1000"
    assert p["shutdownGraceMillis"] == str(int(s.consumer.shutdown_timeout_s * 1000))


def test_kcl_defaults_leave_the_intervals_out() -> None:
    p = daemon_properties(Settings(kcl={"tuned": False}), "w")
    for name in ("shardSyncIntervalMillis", "leaseAssignmentIntervalMillis", "idleTimeBetweenReadsInMillis"):
        assert name not in p


def test_in_aws_no_endpoints_and_no_static_keys() -> None:
    s = Settings(local=False, gorse={"url": "https://g"}, source={"dsn": "postgresql://x"})
    p = daemon_properties(s, "w")
    assert "kinesisEndpoint" not in p and "dynamoDBEndpoint" not in p
    env = daemon_environment(s)
    assert "AWS_ACCESS_KEY_ID" not in env  # the task role, through DefaultCredentialsProvider


def test_an_explicit_kinesis_endpoint_wins() -> None:
    s = Settings(aws={"kinesis_endpoint_url": "http://kl:4567"})
    assert kcl_kinesis_endpoint(s) == "http://kl:4567"
    s = Settings(aws={"kinesis_endpoint_url": "http://kl:4567"}, kcl={"kinesis_endpoint_url": "http://h2:1"})
    assert kcl_kinesis_endpoint(s) == "http://h2:1"


def test_extra_properties_are_passed_and_multiline_values_refused() -> None:
    p = daemon_properties(Settings(kcl={"extra_properties": {"maxLeasesForWorker": "4"}}), "w")
    assert "maxLeasesForWorker = 4\n" in render(p)
    with pytest.raises(ValueError, match="span lines"):
        render({"a": "b\nc"})


def test_the_processors_get_the_folded_settings() -> None:
    s = Settings(kinesis={"stream_name": "s9"}, leases={"table": "l9"}, consumer={"metrics_port": 0})
    env = daemon_environment(s)
    assert env["GORSE_CDC_KINESIS__STREAM_NAME"] == "s9"
    assert env["GORSE_CDC_LEASES__TABLE"] == "l9"
    assert env["GORSE_CDC_CONSUMER__METRICS_PORT"] == "0"
    assert env["AWS_ACCESS_KEY_ID"] == "test"
