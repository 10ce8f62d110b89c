"""Static and moto checks of the AWS deployment (infra/cloudformation) and the container files.

Fast and offline: templates are read with cfn-lint's YAML loader (which understands !Ref,
!Sub, ...), linted with cfn-lint's Python API, and the data-plane template is deployed into
moto's in-process CloudFormation. No AWS account, no network, no Docker engine.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CFN = ROOT / "infra" / "cloudformation"
TEMPLATES = sorted(CFN.glob("*.yaml"))
DOCKER = ROOT / "docker"

# What the consumer calls (consumers/: shard readers, leases, dead letters).
CONSUMER_KINESIS_ACTIONS = {
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
    "kinesis:SubscribeToShard",
    "kinesis:DescribeStreamConsumer",
    "kinesis:RegisterStreamConsumer",
}
CONSUMER_DYNAMODB_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
    "dynamodb:CreateTable",
}
CONSUMER_KMS_ACTIONS = {"kms:Decrypt", "kms:GenerateDataKey"}
DATA_SERVICES = ("kinesis", "dynamodb", "s3", "sqs", "secretsmanager", "kms")


# ---- helpers -------------------------------------------------------------------------------
@functools.cache
def load(name: str) -> dict[str, Any]:
    """A template as cfn-lint reads it (cached: callers must not modify it)."""
    from cfnlint.decode import decode

    template, matches = decode(str(CFN / name))
    assert not matches, f"{name}: {matches}"
    assert template is not None
    return template


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def branches(node: Any) -> Iterator[Any]:
    """Every concrete value a node can take: both sides of Fn::If, AWS::NoValue dropped."""
    if isinstance(node, dict) and "Fn::If" in node:
        _, when_true, when_false = node["Fn::If"]
        yield from branches(when_true)
        yield from branches(when_false)
    elif isinstance(node, dict) and node.get("Ref") == "AWS::NoValue":
        return
    else:
        yield node


def text(node: Any) -> str:
    """A readable string for a Resource: the Fn::Sub template, ${Name} for a Ref."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            return sub if isinstance(sub, str) else sub[0]
        if "Ref" in node:
            return "${" + node["Ref"] + "}"
        if "Fn::GetAtt" in node:
            att = node["Fn::GetAtt"]
            return "${" + (".".join(att) if isinstance(att, list) else att) + "}"
    return json.dumps(node, default=str)


def statements(policy_document: Any) -> Iterator[dict[str, Any]]:
    for stmt in as_list(policy_document.get("Statement", [])):
        yield from branches(stmt)


def role_statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role.get("Properties", {}).get("Policies", []):
        yield from statements(policy["PolicyDocument"])


def iam_allow_statements() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(template, logical id, statement) of every Allow in an identity policy."""
    for path in TEMPLATES:
        tpl = load(path.name)
        for logical_id, res in tpl["Resources"].items():
            if res["Type"] == "AWS::IAM::Role":
                stmts = list(role_statements(res))
            elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                stmts = list(statements(res["Properties"]["PolicyDocument"]))
            else:
                continue
            for stmt in stmts:
                if stmt.get("Effect") == "Allow":
                    yield path.name, logical_id, stmt


def granted(role: dict[str, Any]) -> dict[str, list[str]]:
    """action -> resources (as text) over every branch of the role's policies."""
    out: dict[str, list[str]] = {}
    for stmt in role_statements(role):
        if stmt.get("Effect") != "Allow":
            continue
        resources = [text(r) for r in as_list(stmt["Resource"]) for r in branches(r)]
        for action in as_list(stmt["Action"]):
            out.setdefault(action, []).extend(resources)
    return out


def settings_env_names() -> set[str]:
    """Every GORSE_CDC_* variable the settings object reads (one level of nesting)."""
    from pydantic import BaseModel

    from gorse_cdc.settings import Settings

    names = set()
    for field, info in Settings.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub in ann.model_fields:
                names.add(f"GORSE_CDC_{field}__{sub}".upper())
        else:
            names.add(f"GORSE_CDC_{field}".upper())
    return names


# ---- every template ---------------------------------------------------------------------------
def test_the_layers_exist() -> None:
    names = {p.name for p in TEMPLATES}
    assert {
        "data-plane.yaml",
        "dms.yaml",
        "consumer.yaml",
        "reconcile.yaml",
        "gorse.yaml",
        "root.yaml",
    } <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(path: Path) -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(path, ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize("path", sorted((CFN / "params").glob("*.example.json")), ids=lambda p: p.name)
def test_example_parameters_match_their_template(path: Path) -> None:
    template = load(path.name.replace(".example.json", ".yaml"))
    declared = template["Parameters"]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in json.loads(path.read_text())}
    assert set(given) <= set(declared), set(given) - set(declared)
    required = {k for k, v in declared.items() if "Default" not in v}
    assert required <= set(given), required - set(given)
    for key, value in given.items():
        allowed = declared[key].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], (key, value)


def test_cfn_lint_does_catch_errors() -> None:
    """Guards the test above against linting nothing."""
    from cfnlint.api import lint_all

    bad = "Resources:\n  S:\n    Type: AWS::Kinesis::Stream\n    Properties:\n      Shards: 1\n"
    assert any(m.rule.id.startswith("E") for m in lint_all(bad))


def test_no_identity_policy_grants_wildcards_on_data() -> None:
    checked = 0
    for name, logical_id, stmt in iam_allow_statements():
        where = f"{name}:{logical_id}:{stmt.get('Sid', '')}"
        actions = [str(a) for a in as_list(stmt["Action"])]
        resources = [text(r) for r in as_list(stmt["Resource"]) for r in branches(r)]
        for action in actions:
            assert action != "*" and not action.endswith(":*"), f"{where}: wildcard {action}"
            service = action.split(":")[0]
            if service in DATA_SERVICES:
                assert "*" not in resources, f"{where}: {action} on Resource '*'"
        checked += 1
    assert checked > 20


def test_no_secret_values_in_templates() -> None:
    for path in TEMPLATES:
        tpl = load(path.name)
        for pname in tpl.get("Parameters", {}):
            assert not re.search(r"password|apikey|api_key|token", pname, re.I) or pname.endswith("Arn"), (
                f"{path.name}: parameter {pname} would carry a secret"
            )
        for logical_id, res in tpl["Resources"].items():
            if res["Type"] != "AWS::ECS::TaskDefinition":
                continue
            for container in res["Properties"]["ContainerDefinitions"]:
                for env in (e for x in container.get("Environment", []) for e in branches(x)):
                    assert not re.search(r"API_KEY|PASSWORD|SECRET|STORE", env["Name"]), (
                        f"{path.name}:{logical_id}: {env['Name']} must come from Secrets"
                    )


# ---- the consumer's task role --------------------------------------------------------------
def test_consumer_task_role_grants_what_the_consumer_calls_and_no_more() -> None:
    role = load("consumer.yaml")["Resources"]["TaskRole"]
    grants = granted(role)
    stream = "stream/${StreamName}"
    for action in CONSUMER_KINESIS_ACTIONS:
        assert action in grants, action
        assert all(stream in r for r in grants[action]), (action, grants[action])
    for action in CONSUMER_DYNAMODB_ACTIONS:
        assert action in grants, action
        assert grants[action] == [
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${LeaseTableName}"
        ], (action, grants[action])
    for action in CONSUMER_KMS_ACTIONS:
        assert grants[action] == ["${KmsKeyArn}"]
    # dead letters: S3 prefix by default, SQS queue as the option
    assert grants["s3:PutObject"] == ["arn:${AWS::Partition}:s3:::${BucketName}/${DeadLetterS3Prefix}/*"]
    assert grants["sqs:SendMessage"] == [
        "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${DeadLetterQueueName}"
    ]
    allowed_extra = {"sqs:GetQueueUrl"}
    expected = CONSUMER_KINESIS_ACTIONS | CONSUMER_DYNAMODB_ACTIONS | CONSUMER_KMS_ACTIONS
    assert set(grants) - expected - {"s3:PutObject", "sqs:SendMessage"} <= allowed_extra
    # the API key arrives through the execution role (ECS secrets), not the task role
    assert not any(a.startswith("secretsmanager:") for a in grants)


def test_consumer_gets_the_api_key_from_secrets_manager() -> None:
    tpl = load("consumer.yaml")
    res = tpl["Resources"]
    container = res["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    secrets = {s["Name"]: text(s["ValueFrom"]) for s in container["Secrets"]}
    assert secrets == {"GORSE_CDC_GORSE__API_KEY": "${GorseApiKeySecretArn}"}
    exec_grants = granted(res["ExecutionRole"])
    assert exec_grants["secretsmanager:GetSecretValue"] == ["${GorseApiKeySecretArn}"]


def test_task_environment_uses_real_settings_names() -> None:
    known = settings_env_names()
    env_names: set[str] = set()
    for name in ("consumer.yaml", "gorse.yaml"):
        for res in load(name)["Resources"].values():
            if res["Type"] == "AWS::ECS::TaskDefinition":
                for c in res["Properties"]["ContainerDefinitions"]:
                    env_names |= {e["Name"] for x in c.get("Environment", []) for e in branches(x)}
                    env_names |= {s["Name"] for s in c.get("Secrets", [])}
    ours = {n for n in env_names if n.startswith("GORSE_CDC_")}
    assert ours, "no GORSE_CDC_ variables found"
    assert ours <= known, ours - known
    for required in (
        "GORSE_CDC_LOCAL",
        "GORSE_CDC_GORSE__URL",
        "GORSE_CDC_GORSE__API_KEY",
        "GORSE_CDC_KINESIS__STREAM_NAME",
        "GORSE_CDC_LEASES__TABLE",
        "GORSE_CDC_DEAD_LETTERS__KIND",
        "GORSE_CDC_CONSUMER__METRICS_PORT",
    ):
        assert required in ours
    glue_args = load("reconcile.yaml")["Resources"]["ReconcileJob"]["Properties"]["DefaultArguments"]
    glue_env = {k[2:] for k in glue_args if k.startswith("--GORSE_CDC_")}
    assert glue_env and glue_env <= known, glue_env - known
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    compose_env = set(compose["x-gorse-cdc-env"])
    assert compose_env <= known, compose_env - known


def test_consumer_autoscales_on_iterator_age_and_cpu() -> None:
    res = load("consumer.yaml")["Resources"]
    metrics = {
        r["Properties"].get("MetricName")
        for r in res.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and any("Lag" in text(a) for a in r["Properties"].get("AlarmActions", []))
    }
    assert metrics == {"GetRecords.IteratorAgeMilliseconds"}
    cpu = res["CpuScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == ("ECSServiceAverageCPUUtilization")
    dead = res["DeadLetterMetricFilter"]["Properties"]
    assert '$.event = "dead_letter"' in dead["FilterPattern"]
    assert res["LogGroup"]["Properties"]["KmsKeyId"] == {"Ref": "KmsKeyArn"}


# ---- data plane -----------------------------------------------------------------------------
def test_bucket_is_encrypted_private_and_tls_only() -> None:
    res = load("data-plane.yaml")["Resources"]
    bucket = res["Bucket"]["Properties"]
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    for logical_id in ("Bucket", "AccessLogsBucket"):
        block = res[logical_id]["Properties"]["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert res[logical_id]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    for policy_id, bucket_id in (("BucketPolicy", "Bucket"), ("AccessLogsBucketPolicy", "AccessLogsBucket")):
        doc = res[policy_id]["Properties"]["PolicyDocument"]
        tls = [
            s
            for s in statements(doc)
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert len(tls) == 1, policy_id
        covered = {text(r) for r in as_list(tls[0]["Resource"])}
        assert covered == {f"${{{bucket_id}.Arn}}", f"${{{bucket_id}.Arn}}/*"}
        assert tls[0]["Principal"] == "*" and tls[0]["Action"] == "s3:*"
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["dead-letters-expiry"]["Prefix"] == {"Fn::Sub": "${DeadLetterS3Prefix}/"}


def test_lease_tables_match_what_the_consumer_creates() -> None:
    tpl = load("data-plane.yaml")
    params, res = tpl["Parameters"], tpl["Resources"]
    assert params["LeaseTableName"]["Default"] == "gorse-cdc-leases"
    assert params["ReplayLeaseTableName"]["Default"] == "gorse-cdc-replay-leases"
    for logical_id in ("LeaseTable", "ReplayLeaseTable"):
        p = res[logical_id]["Properties"]
        assert p["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
        assert p["AttributeDefinitions"] == [{"AttributeName": "leaseKey", "AttributeType": "S"}]
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["SSESpecification"]["SSEEnabled"] is True
        assert p["SSESpecification"]["SSEType"] == "KMS"
        assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_everything_at_rest_uses_the_customer_key() -> None:
    res = load("data-plane.yaml")["Resources"]
    key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert res["DataKey"]["Properties"]["EnableKeyRotation"] is True
    assert res["Stream"]["Properties"]["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": key}
    assert res["DeadLetterQueue"]["Properties"]["KmsMasterKeyId"] == key
    assert res["GorseApiKeySecret"]["Properties"]["KmsKeyId"] == key
    assert res["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == key
    assert "GenerateSecretString" in res["GorseApiKeySecret"]["Properties"]


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
    assert load("gorse.yaml")["Parameters"]["GorseImage"]["Default"] == ("zhenghaoz/gorse-in-one:0.5.11")
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
