"""Helpers for the AWS deployment checks: template loading, IAM statement walking, settings names.

Fast and offline: templates are read with cfn-lint's YAML loader (which understands !Ref,
!Sub, ...), linted with cfn-lint's Python API, and the data-plane template is deployed into
moto's in-process CloudFormation. No AWS account, no network, no Docker engine.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CFN = ROOT / "infra" / "cloudformation"
TEMPLATES = sorted(CFN.glob("*.yaml"))
DOCKER = ROOT / "docker"

# What the KCL MultiLangDaemon (Java, ConsumerEngine=kcl) calls on the stream and the lease
# table, from KCL's documentation; the Python code's calls are read from it (tests/infra/calls.py).
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
# What the consumers call on the erasure log (consumers/sink/erasures.py): they never delete
# from it, and CloudFormation creates it (data-plane.yaml ErasuresTable).
ERASURE_LOG_ACTIONS = {"dynamodb:DescribeTable", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"}
ERASURES_TABLE_ARN = (
    "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${ErasuresTableName}"
)
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


def covers(pattern: str, value: str) -> bool:
    """Whether an IAM Action or Resource pattern (``*`` and ``?`` wildcards, case-insensitive
    for actions) matches a value; both are template text, ``${Name}`` placeholders included."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def actions_on(role: dict[str, Any], resource: str) -> set[str]:
    """Every Allow action (as written, wildcards kept) whose Resource pattern covers ``resource``."""
    out: set[str] = set()
    for stmt in role_statements(role):
        if stmt.get("Effect") != "Allow":
            continue
        assert "NotAction" not in stmt and "NotResource" not in stmt, stmt
        resources = [text(r) for r in as_list(stmt["Resource"]) for r in branches(r)]
        if any(covers(r, resource) for r in resources):
            out |= {str(a) for a in as_list(stmt["Action"])}
    return out


def task_containers(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(task definition id, task definition, container) of every container in a template."""
    for logical_id, res in template["Resources"].items():
        if res["Type"] == "AWS::ECS::TaskDefinition":
            for container in res["Properties"]["ContainerDefinitions"]:
                yield logical_id, res, container


def environment(container: dict[str, Any]) -> dict[str, Any]:
    """Name -> Value of a container's environment over every Fn::If branch."""
    return {e["Name"]: e["Value"] for x in container.get("Environment", []) for e in branches(x)}
