"""gorse.yaml deploys Gorse as its users run it: one master, two or more servers behind an
internal load balancer with autoscaling, workers, RDS PostgreSQL stores; nothing public, and
every Gorse client of the pipeline reaches the servers through that load balancer (or, for the
reconcile's bulk export/import, the master).

Offline: the templates as cfn-lint reads them, and root.yaml's wiring followed by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import deployed
from tests.infra.cfn import as_list, branches, environment, load, text

pytestmark = pytest.mark.unit

TPL = "gorse.yaml"
GORSE_IMAGES = ("GorseMasterImage", "GorseServerImage", "GorseWorkerImage")


def _res() -> dict[str, Any]:
    return load(TPL)["Resources"]


def _params() -> dict[str, Any]:
    return load(TPL)["Parameters"]


def _of_type(type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in _res().items() if v["Type"] == type_}


def _default(node: Any) -> Any:
    """A literal, or the default of the parameter it names."""
    if isinstance(node, dict) and "Ref" in node:
        return _params()[node["Ref"]].get("Default")
    return node


def _mapped(node: Any) -> Any:
    if isinstance(node, dict) and "Fn::FindInMap" in node:
        m, a, b = node["Fn::FindInMap"]
        return load(TPL)["Mappings"][m][a][b]
    return node


def _service_running(image_param: str) -> dict[str, Any]:
    """The ECS service whose task definition runs the image of ``image_param``."""
    found = []
    for sid, svc in _of_type("AWS::ECS::Service").items():
        task = _res()[svc["Properties"]["TaskDefinition"]["Ref"]]
        images = [c.get("Image") for x in task["Properties"]["ContainerDefinitions"] for c in branches(x)]
        if {"Ref": image_param} in images:
            found.append(sid)
    assert len(found) == 1, (image_param, found)
    return {"id": found[0], **_res()[found[0]]}


def _gorse_container(service: dict[str, Any]) -> dict[str, Any]:
    task = _res()[service["Properties"]["TaskDefinition"]["Ref"]]
    return next(
        c
        for x in task["Properties"]["ContainerDefinitions"]
        for c in branches(x)
        if isinstance(c.get("Image"), dict) and c["Image"].get("Ref") in GORSE_IMAGES
    )


def _commands(container: dict[str, Any]) -> list[list[Any]]:
    return [c for c in branches(container.get("Command", [])) if isinstance(c, list)]


def _flag(command: list[Any], flag: str) -> Any:
    return command[command.index(flag) + 1]


def _scalable_target_of(service_id: str) -> dict[str, Any] | None:
    for target in _of_type("AWS::ApplicationAutoScaling::ScalableTarget").values():
        if "${" + service_id + ".Name}" in text(target["Properties"]["ResourceId"]):
            return target
    return None


# ---- topology ------------------------------------------------------------------------------------
def test_the_images_are_gorse_0_5_11_master_server_worker() -> None:
    for param in GORSE_IMAGES:
        role = param[len("Gorse") : -len("Image")].lower()
        assert _params()[param]["Default"] == f"zhenghaoz/gorse-{role}:0.5.11"
    assert "GorseImage" not in _params()  # no gorse-in-one left


def test_the_master_is_exactly_one_task_found_through_cloud_map() -> None:
    master = _service_running("GorseMasterImage")
    props = master["Properties"]
    assert props["DesiredCount"] == 1
    # never two masters, not even during a deploy: both would train and write the cache
    assert props["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert "LoadBalancers" not in props
    assert _scalable_target_of(master["id"]) is None
    registry = props["ServiceRegistries"][0]["RegistryArn"]["Fn::GetAtt"][0]
    assert _res()[registry]["Properties"]["Name"] == "master"
    container = _gorse_container(master)
    env = environment(container)
    assert _mapped(env["GORSE_MASTER_PORT"]) == "8086" and _mapped(env["GORSE_MASTER_HTTP_PORT"]) == "8088"
    ports = {_mapped(p["ContainerPort"]) for p in container["PortMappings"]}
    assert ports == {"8086", "8088"}
    # the same config file as the stack, fetched from S3 before the master starts
    config = next(
        c
        for c in _res()[props["TaskDefinition"]["Ref"]]["Properties"]["ContainerDefinitions"]
        if c.get("Name") == "config"
    )
    assert {"ContainerName": "config", "Condition": "SUCCESS"} in next(branches(container["DependsOn"]))
    assert environment(config)["CONFIG_KEY"] == {"Ref": "GorseConfigKey"}
    assert _params()["GorseConfigKey"]["Default"] == "gorse-cdc/config/gorse/config.toml"


def test_servers_are_two_or_more_behind_an_internal_load_balancer_and_autoscale() -> None:
    server = _service_running("GorseServerImage")
    props = server["Properties"]
    assert _default(props["DesiredCount"]) >= 2
    assert _params()["ServerMinCount"]["MinValue"] >= 2
    (lb_binding,) = props["LoadBalancers"]
    tg = _res()[lb_binding["TargetGroupArn"]["Ref"]]["Properties"]
    assert tg["HealthCheckPath"] in ("/api/health/live", "/api/health/ready")
    assert _mapped(tg["Port"]) == _mapped(lb_binding["ContainerPort"]) == "8087"
    listeners = _of_type("AWS::ElasticLoadBalancingV2::Listener")
    assert listeners
    lbs = {lst["Properties"]["LoadBalancerArn"]["Ref"] for lst in listeners.values()}
    for lst in listeners.values():
        assert lst["Properties"]["DefaultActions"][0]["TargetGroupArn"] == lb_binding["TargetGroupArn"]
    for lb_id in lbs:
        assert _res()[lb_id]["Properties"]["Scheme"] == "internal"
    target = _scalable_target_of(server["id"])
    assert target is not None
    assert target["Properties"]["MinCapacity"] == {"Ref": "ServerMinCount"}
    assert _default(target["Properties"]["MaxCapacity"]) > _default(target["Properties"]["MinCapacity"])
    policies = [
        p
        for p in _of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["ScalingTargetId"] == {"Ref": next(k for k, v in _res().items() if v is target)}
    ]
    assert policies and all(p["Properties"]["PolicyType"] == "TargetTrackingScaling" for p in policies)
    for command in _commands(_gorse_container(server)):
        assert _flag(command, "--http-host") == "0.0.0.0"  # the image's default is 127.0.0.1


def test_a_worker_service_with_its_interval() -> None:
    worker = _service_running("GorseWorkerImage")
    assert _default(worker["Properties"]["DesiredCount"]) >= 1
    commands = _commands(_gorse_container(worker))
    assert commands
    for command in commands:
        assert _flag(command, "--interval") == {"Ref": "WorkerInterval"}
        assert _flag(command, "--jobs") == {"Ref": "WorkerJobs"}


def test_servers_and_workers_find_the_master_by_its_cloud_map_name() -> None:
    namespace = next(iter(_of_type("AWS::ServiceDiscovery::PrivateDnsNamespace")))
    assert _res()[namespace]["Properties"]["Name"] == {"Ref": "NamespaceName"}
    for image in ("GorseServerImage", "GorseWorkerImage"):
        for command in _commands(_gorse_container(_service_running(image))):
            assert text(_flag(command, "--master-host")) == "master.${NamespaceName}"
            assert _mapped(_flag(command, "--master-port")) == "8086"


# ---- stores -----------------------------------------------------------------------------------------
def test_the_stores_are_rds_postgresql_encrypted_backed_up_and_protected() -> None:
    (db_id, db) = next(iter(_of_type("AWS::RDS::DBInstance").items()))
    props = db["Properties"]
    assert props["Engine"] == "postgres"
    assert props["StorageEncrypted"] is True and props["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert _default(props["BackupRetentionPeriod"]) >= 7
    assert _params()["DbBackupRetentionDays"]["MinValue"] >= 1
    assert props["DeletionProtection"] is True
    assert db["DeletionPolicy"] == "Snapshot" and db["UpdateReplacePolicy"] == "Snapshot"
    assert props["PubliclyAccessible"] is False
    assert props["PerformanceInsightsKMSKeyId"] == {"Ref": "KmsKeyArn"}
    # credentials generated into Secrets Manager, never a parameter
    for key in ("MasterUsername", "MasterUserPassword"):
        assert text(props[key]).startswith("{{resolve:secretsmanager:"), key
    assert not any("password" in p.lower() for p in _params())
    group = _res()[props["DBParameterGroupName"]["Ref"]]["Properties"]
    assert group["Parameters"]["rds.force_ssl"] == "1"
    # the master gets both DSNs from a secret built on this instance, TLS required
    master = _gorse_container(_service_running("GorseMasterImage"))
    secrets = {s["Name"]: text(s["ValueFrom"]) for s in master["Secrets"]}
    assert secrets["GORSE_DATA_STORE"] == "${StoreSecret}:data_store::"
    assert secrets["GORSE_CACHE_STORE"] == "${StoreSecret}:cache_store::"
    assert not {"GORSE_DATA_STORE", "GORSE_CACHE_STORE"} & set(environment(master))
    dsn = _res()["StoreSecret"]["Properties"]["SecretString"]["Fn::Sub"][1]["Dsn"]["Fn::Sub"]
    assert dsn.startswith("postgres://") and "${" + db_id + ".Endpoint.Address}" in dsn
    assert "sslmode=require" in dsn
    for sid in ("DbSecret", "StoreSecret", "DashboardSecret"):
        assert _res()[sid]["Properties"]["KmsKeyId"] == {"Ref": "KmsKeyArn"}


# ---- network ----------------------------------------------------------------------------------------
def _ingress_rules() -> list[tuple[str, dict[str, Any]]]:
    """(group id, rule) of every ingress rule of the template, inline or standalone."""
    rules = []
    for sid, sg in _of_type("AWS::EC2::SecurityGroup").items():
        for rule in as_list(sg["Properties"].get("SecurityGroupIngress", [])):
            rules.append((sid, rule))
    for rule in _of_type("AWS::EC2::SecurityGroupIngress").values():
        rules.append((rule["Properties"]["GroupId"]["Ref"], rule["Properties"]))
    return rules


def _group_of(image: str) -> str:
    props = _service_running(image)["Properties"]
    (group,) = props["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    return str(group["Ref"])


def test_nothing_is_public_and_each_tier_admits_only_its_callers() -> None:
    for sid, rule in _ingress_rules():
        assert "CidrIp" not in rule and "CidrIpv6" not in rule, (sid, rule)
        assert "SourceSecurityGroupId" in rule, (sid, rule)
    for svc in _of_type("AWS::ECS::Service").values():
        assert (
            svc["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
        )
    master, server, worker = (_group_of(i) for i in GORSE_IMAGES)
    db = _res()[next(iter(_of_type("AWS::RDS::DBInstance")))]["Properties"]["VPCSecurityGroups"][0]["Ref"]
    lb_id = next(iter(_of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")))
    (lb_group,) = _res()[lb_id]["Properties"]["SecurityGroups"]

    def sources(group: str, port: str | None = None) -> set[str]:
        return {
            text(r["SourceSecurityGroupId"])
            for g, r in _ingress_rules()
            if g == group and (port is None or _mapped(r["FromPort"]) == port)
        }

    assert sources(db) == {"${" + g + "}" for g in (master, server, worker)}
    assert sources(master, "8086") == {"${" + server + "}", "${" + worker + "}"}
    assert sources(master) <= {"${" + server + "}", "${" + worker + "}", "${AdminSecurityGroupId}"}
    assert sources(server) == {"${" + lb_group["Ref"] + "}"}
    assert sources(worker) == set()
    # the load balancer's callers are admitted by root.yaml, where their groups exist
    root = load("root.yaml")["Resources"]
    lb_sources = {
        text(r["Properties"]["SourceSecurityGroupId"])
        for r in root.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": ["Gorse", "Outputs.LoadBalancerSecurityGroupId"]}
    }
    assert lb_sources == {
        "${Consumer.Outputs.SecurityGroupId}",
        "${Gateway.Outputs.TaskSecurityGroupId}",
        "${Reconcile.Outputs.SecurityGroupId}",
    }
    for r in root.values():
        if r["Type"] == "AWS::EC2::SecurityGroupIngress":
            assert "CidrIp" not in r["Properties"]


# ---- wiring ---------------------------------------------------------------------------------------
def _root_value_of(template: str, parameter: str) -> Any:
    """What root.yaml passes to ``template``'s ``parameter``."""
    for res in load("root.yaml")["Resources"].values():
        if res["Type"] == "AWS::CloudFormation::Stack" and res["Properties"]["TemplateURL"] == template:
            return res["Properties"]["Parameters"][parameter]
    raise KeyError(template)


def _gorse_output(node: Any) -> str | None:
    """The gorse.yaml output a root value takes when Gorse is deployed."""
    for value in branches(node):
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            stack, att = value["Fn::GetAtt"]
            if stack == "Gorse":
                return str(att[len("Outputs.") :])
    return None


def test_the_consumers_and_the_gateway_call_the_servers_load_balancer() -> None:
    lb_url = load(TPL)["Outputs"]["GorseUrl"]["Value"]
    urls = [text(v) for v in branches(lb_url)]
    assert any("${LoadBalancer.DNSName}" in u for u in urls)
    assert all("${LoadBalancer.DNSName}" in u or u == "https://${ApiDomainName}" for u in urls)
    # with a certificate, the name resolves to that load balancer inside the VPC
    record = _res()["PrivateZoneRecord"]["Properties"]
    assert record["AliasTarget"]["DNSName"] == {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}
    processes = [p for p in deployed.processes() if "gorse.url" in p.settings]
    assert {p.template for p in processes} >= {"consumer.yaml", "gateway.yaml"}
    for p in processes:
        assert p.settings["gorse.url"] == {"Ref": "GorseUrl"}, p.where
        assert _gorse_output(_root_value_of(p.template, "GorseUrl")) == "GorseUrl", p.where
    assert _gorse_output(load("root.yaml")["Outputs"]["GorseUrl"]["Value"]) == "GorseUrl"


def test_the_reconcile_calls_the_master_where_bulk_export_lives() -> None:
    assert _gorse_output(_root_value_of("reconcile.yaml", "GorseUrl")) == "GorseMasterUrl"
    master_url = text(load(TPL)["Outputs"]["GorseMasterUrl"]["Value"])
    assert master_url.startswith("http://master.${NamespaceName}:")
