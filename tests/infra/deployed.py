"""What the templates deploy, as the code sees it: each container that runs a gorse-cdc command,
its settings (environment and command-line flags), its task role, and where a setting's value
comes from across the nested stacks (root.yaml's wiring of outputs into parameters).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.infra import calls
from tests.infra.cfn import TEMPLATES, as_list, branches, environment, load, task_containers, text

ARN = "arn:${AWS::Partition}"
# actions on a stream's consumer (enhanced fan-out), not on the stream itself (IAM's resource types)
ON_STREAM_CONSUMER = {"kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"}
# DynamoDB calls the code makes only when the table is absent (it describes the table first)
ONLY_WHEN_ABSENT = {"dynamodb:CreateTable"}


@dataclass
class Process:
    """One container running ``gorse-cdc <words>``."""

    template: str
    task: str
    container: str
    words: list[str]
    settings: dict[str, Any]  # "kinesis.stream_name" -> template node
    role_id: str
    role: dict[str, Any] = field(repr=False)

    @property
    def where(self) -> str:
        return f"{self.template}:{self.task}/{self.container} ({' '.join(self.words)})"

    def calls(self) -> list[calls.Call]:
        return calls.calls_of(self.words)


@functools.cache
def consume_flags() -> dict[str, str]:
    """``consume``'s flags -> the settings field each sets, read from consumers/cli.py
    consume_settings (``if args.stream: kinesis["stream_name"] = args.stream``)."""
    fn = calls.modules()["consumers.cli"].functions["consume_settings"].node
    out = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Attribute):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and isinstance(stmt.targets[0], ast.Subscript)
                    and isinstance(stmt.targets[0].value, ast.Name)
                    and isinstance(stmt.targets[0].slice, ast.Constant)
                ):
                    group, key = stmt.targets[0].value.id, str(stmt.targets[0].slice.value)
                    out["--" + node.test.attr.replace("_", "-")] = f"{group}.{key}"
    return out


def _words(command: list[Any]) -> list[str]:
    words: list[str] = []
    for token in (t for t in command if isinstance(t, str)):
        if token.startswith("-"):
            if words:
                break
            continue
        words.append(token)
    return words


def _settings(container: dict[str, Any], words: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environment(container).items():
        if name.startswith("GORSE_CDC_") and "__" in name:
            group, _, key = name[len("GORSE_CDC_") :].lower().partition("__")
            out[f"{group}.{key}"] = value
    if words == ["consume"]:
        command = container.get("Command", [])
        flags = consume_flags()
        for i, token in enumerate(command[:-1]):
            if isinstance(token, str) and token in flags:
                out[flags[token]] = command[i + 1]
    return out


def processes() -> Iterator[Process]:
    """Every container of the templates that runs a gorse-cdc subcommand."""
    for path in TEMPLATES:
        tpl = load(path.name)
        for task_id, task, container in task_containers(tpl):
            if "EntryPoint" in container or not isinstance(container.get("Command"), list):
                continue
            words = _words(container["Command"])
            try:
                calls.entry_for(words)
            except KeyError:
                continue
            role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
            yield Process(
                path.name,
                task_id,
                container["Name"],
                words,
                _settings(container, words),
                role_id,
                tpl["Resources"][role_id],
            )


# ---- where a value comes from ------------------------------------------------------------------
def origins(template: str, node: Any) -> set[tuple[str, str]]:
    """(template, logical id) of the resources a value can name, followed through root.yaml's
    nested-stack parameters and the nested stacks' outputs."""
    out: set[tuple[str, str]] = set()
    for value in branches(node):
        if isinstance(value, dict) and "Ref" in value:
            name = value["Ref"]
            tpl = load(template)
            if name in tpl.get("Resources", {}):
                out.add((template, name))
            elif name in tpl.get("Parameters", {}):
                out |= _passed_in(template, name)
        elif isinstance(value, dict) and "Fn::GetAtt" in value:
            stack, att = value["Fn::GetAtt"]
            if att.startswith("Outputs."):
                child = _child_template(template, stack)
                if child:
                    output = load(child)["Outputs"].get(att[len("Outputs.") :])
                    if output:
                        out |= origins(child, output["Value"])
    return out


def _child_template(template: str, stack_id: str) -> str | None:
    res = load(template)["Resources"].get(stack_id)
    if res and res["Type"] == "AWS::CloudFormation::Stack":
        return str(res["Properties"]["TemplateURL"])
    return None


def _passed_in(template: str, parameter: str) -> set[tuple[str, str]]:
    if template == "root.yaml":
        return set()
    root = load("root.yaml")
    out: set[tuple[str, str]] = set()
    for res in root["Resources"].values():
        if res["Type"] == "AWS::CloudFormation::Stack" and res["Properties"]["TemplateURL"] == template:
            value = res["Properties"].get("Parameters", {}).get(parameter)
            if value is not None:
                out |= origins("root.yaml", value)
    return out


def resources_of_type(type_: str) -> set[tuple[str, str]]:
    return {
        (path.name, logical_id)
        for path in TEMPLATES
        for logical_id, res in load(path.name)["Resources"].items()
        if res["Type"] == type_
    }


# ---- what a call needs ---------------------------------------------------------------------------
def required(process: Process, call: calls.Call) -> list[tuple[str, list[str] | str]]:
    """(settings field, the ARNs any one of which the call needs on it) for each resource the
    call touches; the ARNs are a string when the process cannot tell (the problem, reported)."""
    fields = calls.fields_for(process.words, call.module, call.service)
    if not fields:
        return [
            (
                "?",
                f"{call}: calls.RESOURCE_OF does not say what {call.module}'s {call.service} client touches",
            )
        ]
    return [(f, _required_arns(process, call, f)) for f in fields]


def _required_arns(process: Process, call: calls.Call, field_: str) -> list[str] | str:
    s = process.settings
    if field_ not in s:
        return f"{call}: the container does not set {field_} (it would use the default)"
    value = s[field_]
    if call.service == "kinesis":
        arns = stream_arns(process.template, value)
        return [a + "/consumer/*" for a in arns] if call.action in ON_STREAM_CONSUMER else arns
    if call.service == "dynamodb":
        return _arns(process.template, value, TABLE_ARN)
    if call.service == "sqs":
        return [f"{ARN}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{text(value)}"]
    if call.service == "s3":
        if "s3.bucket" not in s:
            return f"{call}: the container does not set s3.bucket"
        bucket = text(s["s3.bucket"])
        if call.action == "s3:ListBucket":
            return [f"{ARN}:s3:::{bucket}"]
        return [f"{ARN}:s3:::{bucket}/{text(value)}/*"]
    return f"{call}: no ARN rule for {call.service}"


STREAM_ARN = f"{ARN}:kinesis:${{AWS::Region}}:${{AWS::AccountId}}:stream/"
TABLE_ARN = f"{ARN}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/"


def stream_arns(template: str, value: Any) -> list[str]:
    return _arns(template, value, STREAM_ARN)


def _arns(template: str, value: Any, prefix: str) -> list[str]:
    """A name given as a parameter (``${Name}`` in an ARN) or as a Ref to the resource itself."""
    out = []
    for v in branches(value):
        if isinstance(v, dict) and v.get("Ref") in load(template)["Resources"]:
            out += ["${" + v["Ref"] + ".Arn}", prefix + "${" + v["Ref"] + "}"]
        else:
            out.append(prefix + text(v))
    return out


def created_by_templates(process: Process, field_: str) -> bool:
    value = process.settings.get(field_)
    found = origins(process.template, value) if value is not None else set()
    return bool(found) and all(load(t)["Resources"][r]["Type"] == "AWS::DynamoDB::Table" for t, r in found)


def kms_via(role: dict[str, Any]) -> dict[str, set[str]]:
    """kms action -> the services (``kinesis``, ...) a role may use it through."""
    from tests.infra.cfn import role_statements

    out: dict[str, set[str]] = {}
    for stmt in role_statements(role):
        if stmt.get("Effect") != "Allow":
            continue
        via = stmt.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        services = {text(v).split(".")[0] for v in as_list(via)} if via is not None else {"*"}
        for action in as_list(stmt["Action"]):
            if str(action).startswith("kms:"):
                out.setdefault(str(action), set()).update(services)
    return out
