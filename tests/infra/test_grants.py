"""Every AWS call the deployed code makes is granted to the role of the container that makes
it, on the resource it touches, and every stream has a consumer. The calls are read from the
sources (tests/infra/calls.py), never listed here: a new call fails these tests until granted."""

from __future__ import annotations

import ast
import copy
from typing import Any

import pytest

from tests.infra import calls, deployed
from tests.infra.cfn import (
    CONSUMER_DYNAMODB_ACTIONS,
    CONSUMER_KINESIS_ACTIONS,
    TEMPLATES,
    as_list,
    branches,
    covers,
    load,
    role_statements,
    text,
)

pytestmark = pytest.mark.unit
KMS_SERVICES = {"kinesis", "dynamodb", "s3", "sqs"}  # every one keeps its data under the data key


def allows(role: dict[str, Any], action: str, arns: list[str]) -> bool:
    for stmt in role_statements(role):
        if stmt.get("Effect") != "Allow":
            continue
        if not any(covers(str(a), action) for a in as_list(stmt["Action"])):
            continue
        resources = [text(r) for r in as_list(stmt["Resource"]) for r in branches(r)]
        if any(covers(r, arn) for r in resources for arn in arns):
            return True
    return False


def grant_problems(process: deployed.Process) -> list[str]:
    """Each call of the process its role does not allow (empty: all granted)."""
    problems = []
    for call in process.calls():
        for field_, arns in deployed.required(process, call):
            if isinstance(arns, str):
                problems.append(arns)
            elif not allows(process.role, call.action, arns):
                if call.action in deployed.ONLY_WHEN_ABSENT and deployed.created_by_templates(
                    process, field_
                ):
                    continue  # the table exists: the code describes it and never creates it
                problems.append(f"{call} on {arns[0]}")
    return sorted(set(problems))


def kms_problems(process: deployed.Process) -> list[str]:
    via = deployed.kms_via(process.role)
    problems = []
    for service in sorted({c.service for c in process.calls()} & KMS_SERVICES):
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            if not ({service, "*"} & via.get(action, set())):
                problems.append(f"{action} through {service}")
    return problems


def by_command() -> dict[str, list[deployed.Process]]:
    out: dict[str, list[deployed.Process]] = {}
    for p in deployed.processes():
        out.setdefault(" ".join(p.words), []).append(p)
    return out


# ---- the reading of the code ---------------------------------------------------------------------
def test_the_deployed_commands_are_found() -> None:
    found = {(p.template, p.container, " ".join(p.words)) for p in deployed.processes()}
    assert {
        ("consumer.yaml", "consumer", "consume"),
        ("consumer.yaml", "replay", "replay"),
        ("gateway.yaml", "gateway", "gateway serve"),
    } <= found, found


def test_the_calls_are_read_from_the_code() -> None:
    """Guards the reading: the calls the issues were about are found where they are made."""
    consume = {c.action for c in calls.calls_of(["consume"])}
    assert {
        "kinesis:PutRecords",
        "kinesis:GetRecords",
        "dynamodb:UpdateItem",
        "dynamodb:BatchGetItem",
    } <= consume
    assert {"kinesis:PutRecords", "s3:GetObject", "s3:ListBucket"} <= {
        c.action for c in calls.calls_of(["replay"])
    }
    serve = {c.action for c in calls.calls_of(["gateway", "serve"])}
    assert {"kinesis:PutRecords", "dynamodb:GetItem"} <= serve
    assert not {"dynamodb:PutItem", "dynamodb:UpdateItem"} & serve  # `gateway keys` only
    assert "dynamodb:PutItem" in {c.action for c in calls.calls_of(["gateway", "keys", "create"])}
    # the KCL daemon's record processors (`python -m consumers.kcl`) are read too
    started = calls._programs_started(calls.reachable(*calls.entry_for(["consume"])))
    assert started == {"consumers.kcl.__main__"}
    # not AWS: Gorse's client (positional id), pydantic's SecretStr.get_secret_value()
    # (the refresh records' publisher is the one core module that calls AWS)
    assert {c.module for c in calls.calls_of(["consume"]) if c.module.startswith("gorse_cdc")} == {
        "gorse_cdc.refresh_records"
    }


def test_every_module_with_aws_calls_says_what_it_touches() -> None:
    commands = [["consume"], ["replay"], ["gateway", "serve"]]
    unplaced = {(c.module, c.service) for w in commands for c in calls.calls_of(w)} - set(calls.RESOURCE_OF)
    assert not unplaced, f"add these to calls.RESOURCE_OF: {sorted(unplaced)}"


# ---- the grants ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["consume", "replay", "gateway serve"])
def test_every_call_is_granted_on_the_resource_it_touches(command: str) -> None:
    processes = by_command().get(command, [])
    assert processes, f"no container runs {command}"
    for p in processes:
        assert grant_problems(p) == [], p.where


@pytest.mark.parametrize("command", ["consume", "replay", "gateway serve"])
def test_every_service_called_may_use_the_data_key(command: str) -> None:
    for p in by_command().get(command, []):
        assert kms_problems(p) == [], p.where


def test_no_role_grants_more_than_its_container_calls() -> None:
    """The other side: each data action a task role allows is one its command makes (the
    consumer's role also serves the KCL MultiLangDaemon, a Java program not read here; its
    calls are KCL's documented ones, tests/infra/cfn.py)."""
    kcl = CONSUMER_KINESIS_ACTIONS | CONSUMER_DYNAMODB_ACTIONS | {"dynamodb:UpdateTable", "dynamodb:Query"}
    for p in deployed.processes():
        made = {c.action for c in p.calls()}
        runs_kcl = "consumer.engine" in p.settings and "kcl" in [
            str(v) for v in _parameter_values(p.template, p.settings["consumer.engine"])
        ]
        extra = set()
        for stmt in role_statements(p.role):
            for action in as_list(stmt.get("Action", [])):
                a = str(action)
                if a.split(":")[0] in KMS_SERVICES and a not in made and not (runs_kcl and a in kcl):
                    extra.add(a)
        assert not extra, (p.where, sorted(extra))


def _parameter_values(template: str, node: Any) -> list[Any]:
    out = []
    for v in branches(node):
        if isinstance(v, dict) and "Ref" in v:
            param = load(template).get("Parameters", {}).get(v["Ref"], {})
            out += param.get("AllowedValues", [param.get("Default")])
        else:
            out.append(v)
    return out


def test_a_new_call_in_the_code_fails_until_granted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the tests above: a call added to the consumer's code is reported for its role."""
    consumer = next(p for p in by_command()["consume"] if p.container == "consumer")
    assert grant_problems(consumer) == []
    original = calls.modules()
    patched = dict(original)
    module = copy.deepcopy(original["gorse_cdc.refresh_records"])
    publish = module.classes["RefreshPublisher"]["publish"].node
    publish.body.insert(
        0, ast.parse("await self.kinesis.merge_shards(StreamName=self.stream, ShardToMerge='a')").body[0]
    )
    patched["gorse_cdc.refresh_records"] = module
    monkeypatch.setattr(calls, "modules", lambda: patched)
    assert [p.split(" (")[0] for p in grant_problems(consumer)] == ["kinesis:MergeShards"]


def test_a_missing_grant_is_reported() -> None:
    consumer = next(p for p in by_command()["consume"] if p.container == "consumer")
    role = copy.deepcopy(consumer.role)
    for stmt in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        for s in branches(stmt):
            if isinstance(s, dict) and "kinesis:PutRecords" in as_list(s.get("Action", [])):
                s["Action"] = [a for a in as_list(s["Action"]) if a != "kinesis:PutRecords"]
    broken = deployed.Process(**{**consumer.__dict__, "role": role})
    assert [p.split(" (")[0] for p in grant_problems(broken)] == ["kinesis:PutRecords"]


# ---- every stream is consumed, every layer deployed -------------------------------------------------
def test_every_stream_has_a_consumer() -> None:
    readers: dict[tuple[str, str], list[str]] = {}
    for p in deployed.processes():
        if "kinesis:GetRecords" not in {c.action for c in p.calls()}:
            continue
        stream = p.settings.get("kinesis.stream_name")
        if stream is None:
            continue
        arns = deployed._arns(
            p.template, stream, f"{deployed.ARN}:kinesis:${{AWS::Region}}:${{AWS::AccountId}}:stream/"
        )
        if not allows(p.role, "kinesis:GetRecords", arns):
            continue
        for origin in deployed.origins(p.template, stream):
            readers.setdefault(origin, []).append(p.where)
    streams = deployed.resources_of_type("AWS::Kinesis::Stream")
    assert streams, "no stream found"
    unread = sorted(s for s in streams if s not in readers)
    assert not unread, f"streams no deployed consumer reads: {unread}"


def test_root_deploys_every_layer() -> None:
    root = load("root.yaml")["Resources"]
    nested = {
        r["Properties"]["TemplateURL"] for r in root.values() if r["Type"] == "AWS::CloudFormation::Stack"
    }
    assert nested == {p.name for p in TEMPLATES} - {"root.yaml"}


def test_the_reconcile_job_may_make_every_call_of_its_code() -> None:
    """The Glue job (glue.main): each AWS call reachable from its code is granted to its role on
    the resources it touches: its S3 archive, reports and temp files, and the stream of its own
    kinesis.stream_name argument (the repair tells the repaired users' owners there)."""
    t = load("reconcile.yaml")
    role = t["Resources"]["JobRole"]
    units = calls.reachable("glue.main", "reconcile_and_print")
    actions = {c.action for u in units for c in calls.calls_in(u)}
    assert "kinesis:PutRecords" in actions
    args = t["Resources"]["ReconcileJob"]["Properties"]["DefaultArguments"]
    assert args["--GORSE_CDC_KINESIS__STREAM_NAME"] == {"Ref": "StreamName"}
    s3 = "arn:${AWS::Partition}:s3:::${BucketName}"
    touched = {
        "kinesis:PutRecords": [
            f"{deployed.ARN}:kinesis:${{AWS::Region}}:${{AWS::AccountId}}:stream/${{StreamName}}"
        ],
        "s3:GetObject": [f"{s3}/${{S3Prefix}}/LOAD00000001.parquet"],
        "s3:ListBucket": [s3],
        "s3:PutObject": [f"{s3}/reconcile/report.json"],
    }
    assert set(touched) >= actions, f"a call this test does not place: {sorted(actions - set(touched))}"
    missing = [a for a in sorted(actions) if not allows(role, a, touched[a])]
    assert not missing, f"reconcile.yaml's role does not grant {missing} on what they touch"
