"""The DMS, reconcile and Gorse layers, the container files, and the data plane deployed into moto.

Fast and offline: templates are read with cfn-lint's YAML loader (which understands !Ref,
!Sub, ...), linted with cfn-lint's Python API, and the data-plane template is deployed into
moto's in-process CloudFormation. No AWS account, no network, no Docker engine.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import pytest
import yaml

from tests.infra.cfn import (
    CFN,
    DOCKER,
    branches,
    load,
    text,
)

pytestmark = pytest.mark.unit


# ---- DMS ---------------------------------------------------------------------------------------
def test_dms_endpoints_and_tasks() -> None:
    res = load("dms.yaml")["Resources"]
    kinesis = res["KinesisTargetEndpoint"]["Properties"]["KinesisSettings"]
    assert kinesis["MessageFormat"] == "json-unformatted"
    for flag in (
        "IncludeTransactionDetails",
        "IncludePartitionValue",
        "IncludeTableAlterOperations",
        "IncludeControlDetails",
    ):
        assert kinesis[flag] is True, flag
    s3 = res["S3TargetEndpoint"]["Properties"]["S3Settings"]
    assert s3["DataFormat"] == "csv" and s3["CsvNullValue"] == "NULL"
    assert s3["AddColumnName"] is False and s3["EncryptionMode"] == "SSE_KMS"
    assert s3["DatePartitionEnabled"] == {"Ref": "DatePartitionEnabled"}
    source = res["SourceEndpoint"]["Properties"]
    assert "Password" not in source and "Username" not in source
    pg = next(branches(source["PostgreSqlSettings"]))
    assert pg["SecretsManagerSecretId"] == {"Ref": "SourceSecretArn"}
    assert "SecretsManagerAccessRoleArn" in pg

    archive = res["ArchiveTask"]["Properties"]
    stream = res["StreamTask"]["Properties"]
    assert archive["MigrationType"] == "full-load-and-cdc"
    assert archive["TargetEndpointArn"] == {"Ref": "S3TargetEndpoint"}
    assert stream["MigrationType"] == "cdc"
    assert stream["TargetEndpointArn"] == {"Ref": "KinesisTargetEndpoint"}

    def mapping(task: dict[str, Any]) -> dict[str, Any]:
        raw = task["TableMappings"]["Fn::Sub"].replace("${SourceSchema}", "public")
        return json.loads(raw)

    for task in (archive, stream):
        included = {
            (r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
            for r in mapping(task)["rules"]
            if r["rule-type"] == "selection" and r["rule-action"] == "include"
        }
        assert included == {("public", "users"), ("public", "movies"), ("public", "ratings")}
    keys = {
        r["object-locator"]["table-name"]: r["mapping-parameters"]
        for r in mapping(stream)["rules"]
        if r["rule-type"] == "object-mapping"
    }
    assert all(
        r["rule-action"] == "map-record-to-record"
        for r in mapping(stream)["rules"]
        if r["rule-type"] == "object-mapping"
    )
    assert keys == {
        "users": {"partition-key-type": "attribute-name", "partition-key-name": "user_id"},
        "ratings": {"partition-key-type": "attribute-name", "partition-key-name": "user_id"},
        "movies": {"partition-key-type": "attribute-name", "partition-key-name": "movie_id"},
    }
    settings = json.loads(stream["ReplicationTaskSettings"])
    assert settings["BeforeImageSettings"]["EnableBeforeImage"] is True
    json.loads(archive["ReplicationTaskSettings"])


# ---- Glue and Gorse -------------------------------------------------------------------------------
def test_reconcile_job_is_glue_5_nightly_and_encrypted() -> None:
    res = load("reconcile.yaml")["Resources"]
    job = res["ReconcileJob"]["Properties"]
    assert job["GlueVersion"] == "5.0"
    assert job["Command"]["Name"] == "glueetl"
    assert job["Command"]["ScriptLocation"] == {"Fn::Sub": "s3://${ArtifactsBucket}/${ScriptKey}"}
    assert "--additional-python-modules" in job["DefaultArguments"]
    assert job["SecurityConfiguration"] == {"Ref": "SecurityConfiguration"}
    enc = res["SecurityConfiguration"]["Properties"]["EncryptionConfiguration"]
    assert enc["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert enc["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert enc["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
    trigger = res["NightlyTrigger"]["Properties"]
    assert trigger["Type"] == "SCHEDULED"
    params = load("reconcile.yaml")["Parameters"]
    assert params["Schedule"]["Default"] == "cron(0 2 * * ? *)"


def test_gorse_image_is_pinned_everywhere() -> None:
    params = load("gorse.yaml")["Parameters"]
    for role in ("Master", "Server", "Worker"):
        assert params[f"Gorse{role}Image"]["Default"] == f"zhenghaoz/gorse-{role.lower()}:0.5.11"
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert compose["services"]["gorse"]["image"] == "zhenghaoz/gorse-in-one:0.5.11"


# ---- containers ---------------------------------------------------------------------------------
def test_consumer_image_is_non_root_with_a_health_check() -> None:
    dockerfile = (DOCKER / "Dockerfile.consumer").read_text()
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert froms and all(f == "python:3.11-slim-bookworm" for f in froms)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "http://127.0.0.1:9108/healthz" in dockerfile
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)


def test_compose_stack_wiring() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "gorse", "kinesalite", "moto", "dms", "consumer"} <= set(services)
    assert re.fullmatch(r"motoserver/moto:5\.1\.\d+", services["moto"]["image"])
    assert "kinesalite@3.3.3" in services["kinesalite"]["command"]
    assert "wal_level=logical" in services["postgres"]["command"]
    assert "postgresql-15-wal2json" in services["postgres"]["build"]["dockerfile_inline"]
    for name in ("postgres", "kinesalite", "moto"):
        assert "test" in services[name]["healthcheck"], name
    assert services["dms"]["command"][-2:] == ["dms", "run"]
    assert services["consumer"]["command"][-1] == "consume"
    assert services["consumer"]["depends_on"]["gorse-ready"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["dms"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


# ---- moto: the data plane deploys and creates what the consumer needs ---------------------------
@pytest.mark.parametrize("dead_letter_kind", ["s3", "sqs"])
def test_data_plane_deploys_into_moto(dead_letter_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    body = (CFN / "data-plane.yaml").read_text()
    # moto creates the stream, tables, buckets, queue, key and topic; it skips (with a warning)
    # the bucket/queue/topic policies and the secret, and ignores stream mode and encryption:
    # those are checked statically above.
    with mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        cfn.create_stack(
            StackName="gorse-cdc-data",
            TemplateBody=body,
            Parameters=[{"ParameterKey": "DeadLetterKind", "ParameterValue": dead_letter_kind}],
        )
        stack = cfn.describe_stacks(StackName="gorse-cdc-data")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

        kinesis = boto3.client("kinesis", region_name="us-east-1")
        summary = kinesis.describe_stream_summary(StreamName=outputs["StreamName"])
        assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        assert outputs["StreamName"] == "gorse-cdc-dms"

        ddb = boto3.client("dynamodb", region_name="us-east-1")
        for table in ("gorse-cdc-leases", "gorse-cdc-replay-leases"):
            desc = ddb.describe_table(TableName=table)["Table"]
            assert desc["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
        assert outputs["LeaseTableName"] == "gorse-cdc-leases"
        erasures = ddb.describe_table(TableName="gorse-cdc-erasures")["Table"]
        assert erasures["KeySchema"] == [{"AttributeName": "user_hash", "KeyType": "HASH"}]
        assert outputs["ErasuresTableName"] == "gorse-cdc-erasures"

        s3 = boto3.client("s3", region_name="us-east-1")
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert outputs["BucketName"] in buckets
        s3.put_object(Bucket=outputs["BucketName"], Key="dead-letters/x.json", Body=b"{}")

        sqs = boto3.client("sqs", region_name="us-east-1")
        queues = sqs.list_queues().get("QueueUrls", [])
        if dead_letter_kind == "sqs":
            assert any(q.endswith("/gorse-cdc-dead-letters") for q in queues)
            assert outputs["DeadLetterQueueName"] == "gorse-cdc-dead-letters"
        else:
            assert queues == []


def test_reconcile_job_runs_with_the_source_check_and_the_delete_cap_by_default() -> None:
    from glue.reconcile_job import OPTIONS

    doc = load("reconcile.yaml")
    params, res = doc["Parameters"], doc["Resources"]
    args = res["ReconcileJob"]["Properties"]["DefaultArguments"]
    assert args["--SOURCE_CHECK"] == {"Ref": "SourceCheck"} and params["SourceCheck"]["Default"] == "true"
    assert "erased" in params["SourceCheck"]["Description"]  # says what turning it off loses
    assert (
        args["--MAX_DELETE_SHARE"] == {"Ref": "MaxDeleteShare"}
        and params["MaxDeleteShare"]["Default"] == "0.05"
    )
    for name in ("SOURCE_CHECK", "MAX_DELETE_SHARE", "source_dsn_secret_id", "repair"):
        assert f"--{name}" in args and name in OPTIONS
    # least privilege: the DSN secret only, and the DB port only, both only with the check on
    statements = res["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    dsn = next(s for s in statements if "SourceDsn" in text(s))
    assert dsn["Fn::If"][0] == "SourceCheckOn" and dsn["Fn::If"][1]["Resource"] == {
        "Ref": "SourceDsnSecretArn"
    }
    egress = res["SecurityGroupSourceDbEgress"]
    assert egress["Condition"] == "SourceCheckOn" and egress["Properties"]["FromPort"] == {
        "Ref": "SourceDbPort"
    }
    assert "SourceCheckNeedsDsn" in doc["Rules"]
