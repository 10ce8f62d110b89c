"""The alert rules (infra/prometheus/rules.yml): promtool checks and unit-tests them
(rules_test.yml), every rule has a CloudWatch twin in the templates and a runbook section, and
every metric a rule reads is one the code exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.cfn import ROOT, TEMPLATES, load

pytestmark = pytest.mark.unit

RULES_DIR = ROOT / "infra" / "prometheus"
RUNBOOK = ROOT / "docs" / "operations.md"
# rules with no CloudWatch twin yet, and why (the runbook says so too)
NO_TWIN: dict[str, str] = {
    "ReconcileDrift": "the Glue job's drift reaches no CloudWatch metric yet (its report is in S3)",
}
# CloudWatch alarms that watch AWS-only things (no Prometheus rule): scaling, task counts,
# throttling, DMS task latencies
AWS_ONLY = {
    "LagScaleOutAlarm",
    "LagScaleInAlarm",
    "EventsIteratorAgeAlarm",
    "ErrorAlarm",
    "RunningTasksAlarm",
    "ReadThrottleAlarm",
    "StreamTaskSourceLatencyAlarm",
    "StreamTaskTargetLatencyAlarm",
    "ArchiveTaskTargetLatencyAlarm",
}
EXPORTERS = [
    "consumers/metrics.py",
    "consumers/kcl/health.py",
    "gateway/metrics.py",
    "producers/dms/metrics.py",
    "gorse_cdc/status/export.py",
]


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((RULES_DIR / "rules.yml").read_text())
    return [r for group in doc["groups"] for r in group["rules"]]


def alarms() -> dict[str, str]:
    """Every CloudWatch alarm's logical id -> its template."""
    out = {}
    for path in TEMPLATES:
        for name, res in load(path.name).get("Resources", {}).items():
            if res.get("Type") == "AWS::CloudWatch::Alarm":
                out[name] = path.name
    return out


@pytest.fixture(scope="module")
def promtool() -> Path:
    from entrypoints.stack.prometheus import ensure_prometheus

    return ensure_prometheus()  # Debian's prometheus package, installed when missing


def test_promtool_checks_and_unit_tests_the_rules(promtool: Path) -> None:
    check = subprocess.run(
        [str(promtool), "check", "rules", "rules.yml"], cwd=RULES_DIR, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [str(promtool), "test", "rules", "rules_test.yml"], cwd=RULES_DIR, capture_output=True, text=True
    )
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_every_rule_is_unit_tested() -> None:
    tested = set(re.findall(r"alertname: (\w+)", (RULES_DIR / "rules_test.yml").read_text()))
    assert {r["alert"] for r in rules()} <= tested


def test_rules_and_cloudwatch_alarms_are_the_same_list() -> None:
    found = alarms()
    twins = {r["alert"]: r["annotations"].get("cloudwatch_alarm") for r in rules()}
    for rule, alarm in twins.items():
        if rule in NO_TWIN:
            assert alarm not in found, f"{rule} has a twin now: remove it from NO_TWIN"
            continue
        assert alarm in found, f"rule {rule}: its CloudWatch twin {alarm} is in no template"
    mapped = {a for r, a in twins.items() if r not in NO_TWIN}
    unmapped = set(found) - mapped - AWS_ONLY
    assert not unmapped, (
        f"CloudWatch alarms with no Prometheus rule (map them or list them as AWS-only): {unmapped}"
    )
    assert set(found) >= AWS_ONLY, f"AWS_ONLY names alarms that no longer exist: {AWS_ONLY - set(found)}"


def test_each_twin_names_its_rule_and_runbook() -> None:
    found = alarms()
    for r in rules():
        alarm = r["annotations"].get("cloudwatch_alarm")
        if r["alert"] in NO_TWIN:
            continue
        props = load(found[alarm])["Resources"][alarm]["Properties"]
        description = str(props.get("AlarmDescription", ""))
        if (
            alarm != "IteratorAgeAlarm" and alarm != "DeadLetterAlarm"
        ):  # older alarms, described in the runbook
            assert r["alert"] in description and r["annotations"]["runbook"] in description, alarm


def test_every_rule_has_a_runbook_section() -> None:
    text = RUNBOOK.read_text()
    headings = {re.sub(r"[^a-z0-9]", "", h.lower()) for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for r in rules():
        anchor = r["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in headings, f"docs/operations.md has no section for {r['alert']}"


def test_rules_read_only_metrics_the_code_exports() -> None:
    exported = set()
    for path in EXPORTERS:
        source = (ROOT / path).read_text()
        for kind, name in re.findall(r'(Counter|Gauge|Histogram)\(\s*f?"([a-z_{}A-Z]+)"', source):
            name = name.replace("{PREFIX}", "gorse_cdc").replace("{p}", "gorse_cdc")
            exported.add(name + "_total" if kind == "Counter" and not name.endswith("_total") else name)
    for r in rules():
        for metric in set(re.findall(r"\b(gorse_cdc_[a-z_]+)", r["expr"])):
            assert metric in exported, f"rule {r['alert']} reads {metric}, which no code exports"
