"""The gateway's deployment (infra/cloudformation/gateway.yaml): least privilege, HTTPS only,
a WAF rate-based rule in front, secrets from Secrets Manager."""

from __future__ import annotations

import json

import pytest

from tests.infra.cfn import granted, load, text

pytestmark = pytest.mark.unit
# what `gorse-cdc gateway serve` calls (gateway/keystore.py get, gateway/wiring.py readiness,
# gateway/publisher.py), and the KMS use behind them
GATEWAY_ACTIONS = {
    "dynamodb:GetItem": "${KeysTable.Arn}",
    "dynamodb:DescribeTable": "${KeysTable.Arn}",
    "kinesis:PutRecords": "${EventsStream.Arn}",
    "kinesis:DescribeStreamSummary": "${EventsStream.Arn}",
    "kms:Decrypt": "${KmsKeyArn}",
    "kms:GenerateDataKey": "${KmsKeyArn}",
}


def _arn(node: object) -> str:
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        return "${" + ".".join(node["Fn::GetAtt"]) + "}"
    return text(node)


def test_the_task_role_grants_what_the_gateway_calls_and_no_more() -> None:
    role = load("gateway.yaml")["Resources"]["TaskRole"]
    grants = granted(role)
    assert set(grants) == set(GATEWAY_ACTIONS), set(grants) ^ set(GATEWAY_ACTIONS)
    for action, resource in GATEWAY_ACTIONS.items():
        statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        resources = [_arn(s["Resource"]) for s in statements if action in s["Action"]]
        assert resources == [resource], (action, resources)
    # keys are written by operators (gateway keys create|revoke), never by the service
    assert not any(a in grants for a in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"))


def test_https_only_with_a_modern_policy_and_a_waf_rate_rule() -> None:
    res = load("gateway.yaml")["Resources"]
    listeners = [r for r in res.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"]
    assert [(lis["Properties"]["Protocol"], lis["Properties"]["Port"]) for lis in listeners] == [
        ("HTTPS", 443)
    ]
    assert listeners[0]["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert res["TargetGroup"]["Properties"]["Protocol"] == "HTTPS"  # TLS again to the tasks
    rules = res["WebAcl"]["Properties"]["Rules"]
    rate = next(r for r in rules if "RateBasedStatement" in r["Statement"])
    assert (
        rate["Action"] == {"Block": {}}
        and rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    )
    assert res["WebAclAssociation"]["Properties"]["ResourceArn"] == {"Ref": "LoadBalancer"}
    redacted = {f["SingleHeader"]["Name"] for f in res["WafLogging"]["Properties"]["RedactedFields"]}
    assert redacted == {"x-api-key", "authorization"}  # keys never in WAF logs either


def test_secrets_come_from_secrets_manager() -> None:
    container = load("gateway.yaml")["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    secrets = {s["Name"]: text(s["ValueFrom"]) for s in container["Secrets"]}
    assert secrets == {
        "GORSE_CDC_GORSE__API_KEY": "${GorseApiKeySecretArn}",
        "GORSE_CDC_GATEWAY__KEY_PEPPER": "${KeyPepperSecretArn}",
    }


def test_the_load_balancer_checks_liveness_not_the_upstreams() -> None:
    """/readyz calls Gorse, DynamoDB and Kinesis: as the target group's check, one Gorse blip
    failed every task at once. The ALB checks /healthz; /readyz stays for operators."""
    tg = load("gateway.yaml")["Resources"]["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/healthz"


def test_tokens_must_name_this_app_client() -> None:
    """With a JWKS, the issuer and the app client id (audience) are required and passed on: any
    other app client of the user pool is refused."""
    doc = load("gateway.yaml")
    rule = doc["Rules"]["JwtNeedsIssuerAndAudience"]
    asserted = [json.dumps(a["Assert"]) for a in rule["Assertions"]]
    assert any('"Ref": "JwtAudience"' in a for a in asserted) and any(
        '"Ref": "JwtIssuer"' in a for a in asserted
    )
    assert json.dumps(rule["RuleCondition"]) == json.dumps(
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwksUrl"}, ""]}]}
    )
    container = doc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = json.dumps(container["Environment"])
    for name, param in (
        ("JWT_AUDIENCE", "JwtAudience"),
        ("JWT_ISSUER", "JwtIssuer"),
        ("JWKS_URL", "JwksUrl"),
    ):
        assert f"GORSE_CDC_GATEWAY__{name}" in env and param in env


def test_the_task_runs_the_configured_worker_processes_and_drains_before_it_is_killed() -> None:
    """gateway.workers comes from a parameter; the container's stop timeout leaves the workers
    their drain time (settings.gateway.shutdown_timeout_s) before ECS kills them."""
    from gorse_cdc.settings import GatewaySettings

    doc = load("gateway.yaml")
    container = doc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    workers = {"Name": "GORSE_CDC_GATEWAY__WORKERS", "Value": {"Ref": "GatewayWorkers"}}
    assert workers in container["Environment"]
    assert doc["Parameters"]["GatewayWorkers"]["MinValue"] >= 1
    assert container["StopTimeout"] > GatewaySettings().shutdown_timeout_s
