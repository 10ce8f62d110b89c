"""Static and moto checks of the AWS deployment (infra/cloudformation) and the container files.

Fast and offline: templates are read with cfn-lint's YAML loader (which understands !Ref,
!Sub, ...), linted with cfn-lint's Python API, and the data-plane template is deployed into
moto's in-process CloudFormation. No AWS account, no network, no Docker engine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.infra.calls import calls_of
from tests.infra.cfn import (
    CFN,
    CONSUMER_DYNAMODB_ACTIONS,
    CONSUMER_KINESIS_ACTIONS,
    CONSUMER_KMS_ACTIONS,
    DATA_SERVICES,
    DOCKER,
    ERASURES_TABLE_ARN,
    TEMPLATES,
    as_list,
    branches,
    granted,
    iam_allow_statements,
    load,
    settings_env_names,
    statements,
    text,
)

pytestmark = pytest.mark.unit


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
    # the erasure log has its own test (test_consumer_roles_grant_exactly_the_erasure_log_calls)
    grants = {a: [r for r in rs if r != ERASURES_TABLE_ARN] for a, rs in grants.items()}
    grants = {a: rs for a, rs in grants.items() if rs}
    stream = "stream/${StreamName}"
    for action in CONSUMER_KINESIS_ACTIONS:
        assert action in grants, action
        assert all(stream in r for r in grants[action]), (action, grants[action])
    table = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${LeaseTableName}"
    kcl_tables = [f"{table}-CoordinatorState", f"{table}-WorkerMetricStats"]  # ConsumerEngine=kcl only
    for action in CONSUMER_DYNAMODB_ACTIONS:
        assert action in grants, action
        assert grants[action] in ([table], [table, *kcl_tables]), (action, grants[action])
    for action in ("dynamodb:UpdateTable", "dynamodb:Query"):  # KCL 3's lease-owner index
        assert grants.pop(action) == [table, f"{table}/index/*"], action
    for action in CONSUMER_KMS_ACTIONS:
        assert grants[action] == ["${KmsKeyArn}"]
    # dead letters: S3 prefix by default, SQS queue as the option
    assert grants["s3:PutObject"] == ["arn:${AWS::Partition}:s3:::${BucketName}/${DeadLetterS3Prefix}/*"]
    assert grants["sqs:SendMessage"] == [
        "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${DeadLetterQueueName}"
    ]
    # refresh records go to the stream it reads (gorse_cdc/refresh_records.py; issue 20 item 4)
    assert grants["kinesis:PutRecords"] == [
        "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/${StreamName}"
    ]
    # no more than the code calls (read from it: tests/infra/calls.py) and the KCL daemon's
    made = {c.action for c in calls_of(["consume"])}
    expected = made | CONSUMER_KINESIS_ACTIONS | CONSUMER_DYNAMODB_ACTIONS | CONSUMER_KMS_ACTIONS
    assert set(grants) <= expected | {"dynamodb:UpdateTable", "dynamodb:Query"}, set(grants) - expected
    # the API key arrives through the execution role (ECS secrets), not the task role
    assert not any(a.startswith("secretsmanager:") for a in grants)


def test_the_kcl_grants_exist_only_with_the_kcl_engine() -> None:
    role = load("consumer.yaml")["Resources"]["TaskRole"]
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    kcl = [st for st in statements if "Fn::If" in st and st["Fn::If"][0] == "UseKcl"]
    assert {st["Fn::If"][1]["Sid"] for st in kcl} == {"KclLeaseIndex", "KclCoordinatorTables"}
    assert all(st["Fn::If"][2] == {"Ref": "AWS::NoValue"} for st in kcl)
    assert not any(isinstance(st, dict) and str(st.get("Sid", "")).startswith("Kcl") for st in statements)


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
    # the events consumer's (docker/compose.yaml events-consumer: --lease-table gorse-cdc-events-leases)
    assert params["EventsLeaseTableName"]["Default"] == "gorse-cdc-events-leases"
    assert load("consumer.yaml")["Parameters"]["EventsLeaseTableName"]["Default"] == "gorse-cdc-events-leases"
    for logical_id in ("LeaseTable", "ReplayLeaseTable", "EventsLeaseTable"):
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
