"""The consumers' data-plane contracts in the templates: the erasure log table and its grants,
and one feedback batch at a time against a SQL-store Gorse. Parsed templates only."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.infra import deployed
from tests.infra.cfn import (
    ERASURE_LOG_ACTIONS,
    ERASURES_TABLE_ARN,
    actions_on,
    as_list,
    covers,
    load,
    role_statements,
    text,
)

pytestmark = pytest.mark.unit


# ---- the erasure log (consumers/sink/erasures.py) ----------------------------------------------
def _erasures_table_default() -> str:
    from gorse_cdc.settings import ConsumerSettings

    return str(ConsumerSettings.model_fields["erasures_table"].default)


def erasures_table_problems(template: dict[str, Any]) -> list[str]:
    """What is wrong with the data plane's erasure log table (empty: nothing)."""
    table = template["Resources"].get("ErasuresTable")
    if table is None or table["Type"] != "AWS::DynamoDB::Table":
        return ["no ErasuresTable"]
    p = table["Properties"]
    checks = {
        "named by ErasuresTableName": p.get("TableName") == {"Ref": "ErasuresTableName"},
        "key schema user_hash HASH only": p.get("KeySchema")
        == [{"AttributeName": "user_hash", "KeyType": "HASH"}],
        "user_hash is S": p.get("AttributeDefinitions")
        == [{"AttributeName": "user_hash", "AttributeType": "S"}],
        "on demand": p.get("BillingMode") == "PAY_PER_REQUEST",
        "SSE with the data key": p.get("SSESpecification")
        == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": ["DataKey", "Arn"]}},
        "point-in-time recovery": p.get("PointInTimeRecoverySpecification")
        == {"PointInTimeRecoveryEnabled": True},
        "no TTL (erasures never expire)": "TimeToLiveSpecification" not in p,
        "retained on delete": table.get("DeletionPolicy") == "Retain",
        "retained on replacement": table.get("UpdateReplacePolicy") == "Retain",
    }
    return [name for name, ok in checks.items() if not ok]


def test_erasures_table_is_encrypted_recoverable_retained_and_keyed_as_the_consumer_expects() -> None:
    tpl = load("data-plane.yaml")
    assert erasures_table_problems(tpl) == []
    assert tpl["Parameters"]["ErasuresTableName"]["Default"] == _erasures_table_default()
    assert text(tpl["Outputs"]["ErasuresTableName"]["Value"]) == "${ErasuresTable}"


def test_erasures_table_check_catches_a_broken_table() -> None:
    """Guards the test above: each break of the table is reported."""

    def broken(change: Any) -> list[str]:
        tpl = copy.deepcopy(load("data-plane.yaml"))
        change(tpl["Resources"]["ErasuresTable"])
        return erasures_table_problems(tpl)

    props = "Properties"
    assert broken(lambda t: t[props].pop("SSESpecification"))
    assert broken(lambda t: t[props]["SSESpecification"].update(SSEType="AES256"))
    assert broken(lambda t: t[props].pop("PointInTimeRecoverySpecification"))
    assert broken(
        lambda t: t[props]["PointInTimeRecoverySpecification"].update(PointInTimeRecoveryEnabled=False)
    )
    assert broken(lambda t: t[props]["KeySchema"].append({"AttributeName": "at", "KeyType": "RANGE"}))
    assert broken(lambda t: t[props]["KeySchema"][0].update(AttributeName="user_id"))
    assert broken(lambda t: t[props]["AttributeDefinitions"][0].update(AttributeType="N"))
    assert broken(lambda t: t.pop("DeletionPolicy"))
    assert broken(lambda t: t[props].update(TimeToLiveSpecification={"AttributeName": "x", "Enabled": True}))


def consumer_processes() -> list[deployed.Process]:
    """Every container that runs a consumer (`consume`, on any stream) or the replay tool."""
    return [p for p in deployed.processes() if p.words in (["consume"], ["replay"])]


def consumer_task_roles() -> dict[tuple[str, str], dict[str, Any]]:
    """(template, role id) -> role of every task that runs a consumer or the replay tool."""
    return {(p.template, p.role_id): p.role for p in consumer_processes()}


FORBIDDEN_ON_ERASURES = ("dynamodb:delete", "dynamodb:put", "dynamodb:update", "dynamodb:partiql")


def erasure_grant_problems(role: dict[str, Any]) -> list[str]:
    """What is wrong with a role's access to the erasure log (empty: nothing)."""
    granted_here = actions_on(role, ERASURES_TABLE_ARN)
    problems = [
        f"lacks {a}" for a in sorted(ERASURE_LOG_ACTIONS) if not any(covers(g, a) for g in granted_here)
    ]
    for action in sorted(granted_here):
        if not covers(action, "dynamodb:" + action.split(":")[-1]):
            continue  # another service's action on a pattern that happens to match
        if action.lower().startswith(FORBIDDEN_ON_ERASURES) or any(
            covers(action, f + "item") or covers(action, f + "table") for f in FORBIDDEN_ON_ERASURES
        ):
            problems.append(f"forbidden {action}")
        elif action.lower() not in {a.lower() for a in ERASURE_LOG_ACTIONS}:
            problems.append(f"extra {action}")
    return problems


def test_consumer_roles_grant_exactly_the_erasure_log_calls() -> None:
    roles = consumer_task_roles()
    assert set(roles) == {
        ("consumer.yaml", "TaskRole"),
        ("consumer.yaml", "ReplayTaskRole"),
        ("consumer.yaml", "EventsTaskRole"),
    }
    for where, role in roles.items():
        assert erasure_grant_problems(role) == [], where
        # the table is encrypted with the data key: the role decrypts through DynamoDB
        data_key = [
            s
            for s in role_statements(role)
            if "kms:Decrypt" in as_list(s["Action"]) and text(s["Resource"]) == "${KmsKeyArn}"
        ]
        via = [text(v) for s in data_key for v in as_list(s["Condition"]["StringEquals"]["kms:ViaService"])]
        assert "dynamodb.${AWS::Region}.amazonaws.com" in via, where


def test_erasure_grant_check_catches_a_broken_role() -> None:
    """Guards the test above: a missing action or a write beyond the three is reported."""
    erasures = {"Fn::Sub": ERASURES_TABLE_ARN}
    any_table = {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"}

    def broken(action: str | None = None, resource: Any = erasures, drop: str | None = None) -> list[str]:
        role = copy.deepcopy(load("consumer.yaml")["Resources"]["TaskRole"])
        stmts = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if drop:
            log = next(s for s in stmts if isinstance(s, dict) and s.get("Sid") == "ErasureLog")
            log["Action"] = [a for a in log["Action"] if a != drop]
        if action:
            stmts.append({"Effect": "Allow", "Action": [action], "Resource": resource})
        return erasure_grant_problems(role)

    for action in ERASURE_LOG_ACTIONS:
        assert broken(drop=action) == [f"lacks {action}"]
    for action in ("dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteTable"):
        assert broken(action) == [f"forbidden {action}"]
        assert broken(action, any_table) == [f"forbidden {action}"]
    assert broken("dynamodb:Delete*") == ["forbidden dynamodb:Delete*"]
    assert broken("dynamodb:*Item") == ["forbidden dynamodb:*Item"]
    assert broken("dynamodb:Scan") == ["extra dynamodb:Scan"]
    assert broken("*", {"Fn::Sub": "*"}) == ["forbidden *"]
    assert broken("logs:PutLogEvents", {"Fn::Sub": "*"}) == []
    # the lease table's writes do not reach the erasure log
    assert broken("dynamodb:DeleteItem", {"Fn::Sub": "arn:aws:dynamodb:r:a:table/${LeaseTableName}"}) == []


def test_every_consumer_container_names_the_erasure_log() -> None:
    consumers = [(p.template, p.task, p.container, p.settings) for p in consumer_processes()]
    assert {(name, c) for name, _, c, _ in consumers} == {
        ("consumer.yaml", "consumer"),
        ("consumer.yaml", "replay"),
        ("consumer.yaml", "events-consumer"),
    }
    for name, task, c, env in consumers:
        assert env.get("consumer.erasures_table") == {"Ref": "ErasuresTableName"}, (name, task, c)
    params = load("consumer.yaml")["Parameters"]
    assert params["ErasuresTableName"]["Default"] == _erasures_table_default()
    passed = load("root.yaml")["Resources"]["Consumer"]["Properties"]["Parameters"]
    assert passed["ErasuresTableName"] == {"Fn::GetAtt": ["DataPlane", "Outputs.ErasuresTableName"]}


def test_every_writer_to_gorse_keeps_its_writes_key_disjoint_and_unbounded() -> None:
    """The deployed Gorse keeps its data in PostgreSQL or MySQL (gorse.yaml), where Gorse 0.5.11
    deadlocks concurrent writes that share users or items; the client's write locks keep them
    disjoint (tests/integration/core/test_gorse_concurrent_writes.py), so no writer is held to one
    feedback batch at a time any more."""
    writers = [
        (
            p.template,
            p.container,
            p.settings.get("gorse.write_partitions"),
            p.settings.get("gorse.feedback_writers"),
        )
        for p in consumer_processes()
    ]
    assert len(writers) >= 3  # the consumer, the events consumer and the replay task
    assert all(parts == "4" and bound is None for _, _, parts, bound in writers), writers
    glue_args = load("reconcile.yaml")["Resources"]
    args = next(
        r["Properties"]["DefaultArguments"] for r in glue_args.values() if r["Type"] == "AWS::Glue::Job"
    )
    assert args.get("--GORSE_CDC_GORSE__WRITE_PARTITIONS") == "4"
    assert "--GORSE_CDC_GORSE__FEEDBACK_WRITERS" not in args
