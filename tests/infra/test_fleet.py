"""Policies on `mode: fleet`, run under Pulumi's mocks like test_program.py does for `mode: single`.

`fleet` is the prod stack with the one change a user makes (`mode: fleet`); `fleet_https` adds a
domain in a hosted zone. Each test reads resolved inputs as a provider would receive them.
"""

from __future__ import annotations

import base64
import json

import pytest

from infra.config import StackConfigError
from infra.endpoints import SERVING_SERVICES, SESSION_MANAGER_SERVICES
from infra.load_balancer import HEALTH_LISTENER_PORT, TLS_POLICY
from tests.infra.conftest import (
    ALB_DNS,
    DOMAIN,
    HOSTED_ZONE,
    HOSTED_ZONE_ID,
    PROJECT,
    REGION,
    Deployment,
    Registered,
    cli_config,
    run_program,
)
from tests.infra.test_program import accepts_tags

SG = "aws:ec2/securityGroup:SecurityGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
LISTENER = "aws:lb/listener:Listener"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
FLEET_ONLY = (
    LT,
    ASG,
    "aws:autoscaling/policy:Policy",
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup",
    LISTENER,
    ENDPOINT,
    "aws:acm/certificate:Certificate",
    "aws:route53/record:Record",
)
# What both modes share: flipping the mode must not replace any of these.
SHARED = (
    "aws:s3/bucket:Bucket",
    "aws:ecr/repository:Repository",
    "docker-build:index:Image",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:ec2/vpc:Vpc",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable",
    "aws:iam/role:Role",
    "aws:iam/instanceProfile:InstanceProfile",
)


def group(deployment: Deployment, name: str) -> Registered:
    """A security group by resource name."""
    (found,) = [g for g in deployment.of_type(SG) if g.name == name]
    return found


def launch_template_user_data(deployment: Deployment) -> str:
    """The boot script a fleet instance runs (launch templates carry it base64-encoded)."""
    return base64.b64decode(deployment.one(LT).inputs["userData"]).decode()


def listeners(deployment: Deployment) -> dict[int, dict]:
    """The load balancer's listeners by port."""
    return {int(r.inputs["port"]): r.inputs for r in deployment.of_type(LISTENER)}


# --- the network: nothing public but the load balancer -------------------------------------------


def test_no_instance_has_a_public_ip(fleet: Deployment) -> None:
    assert fleet.of_type("aws:ec2/instance:Instance") == [], "fleet instances come from the launch template"
    assert fleet.of_type("aws:ec2/eip:Eip") == []
    (interface,) = fleet.one(LT).inputs["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "false"
    for subnet in fleet.of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False


def test_instance_security_group_admits_only_the_load_balancer_group(fleet: Deployment) -> None:
    standalone_rules = [r for r in fleet.resources if "ingressRule" in r.typ or "securityGroupRule" in r.typ]
    assert standalone_rules == [], "rules outside the security groups would escape this check"
    (interface,) = fleet.one(LT).inputs["networkInterfaces"]
    assert interface["securityGroups"] == ["cali-instance-sg-id"]
    rules = group(fleet, "cali-instance-sg").inputs["ingress"]
    assert rules, "the instances must admit the load balancer"
    # Every port appPort may take but 22, so a port change is blue/green (infra/network.py
    # app_port_rules); the source is the load balancer's group alone.
    assert [(r["fromPort"], r["toPort"], r["protocol"]) for r in rules] == [
        (1, 21, "tcp"),
        (23, 65535, "tcp"),
    ]
    for rule in rules:
        assert rule["securityGroups"] == ["cali-lb-sg-id"]
        for other_source in ("cidrBlocks", "ipv6CidrBlocks", "prefixListIds", "self"):
            assert not rule.get(other_source), f"instances admit {other_source}: {rule}"


def test_load_balancer_admits_only_http_from_the_configured_networks_without_a_domain(
    fleet: Deployment,
) -> None:
    balancer = group(fleet, "cali-lb-sg").inputs
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in balancer["ingress"]] == [
        (80, 80, ["0.0.0.0/0"])
    ]
    # Out only inside the VPC (whose members admit nothing from it but the instances' app port), on
    # the ports appPort may take: the old and the new port of a change are open at once.
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in balancer["egress"]] == [
        (1, 21, ["10.40.0.0/16"]),
        (23, 65535, ["10.40.0.0/16"]),
    ]
    assert fleet.one("aws:lb/loadBalancer:LoadBalancer").inputs["securityGroups"] == ["cali-lb-sg-id"]


def test_load_balancer_admits_80_and_443_from_the_configured_cidrs_with_a_domain() -> None:
    cidrs = ["198.51.100.0/24", "203.0.113.7/32"]
    deployment = run_program(
        cli_config(mode="fleet", domain=DOMAIN, hostedZone=HOSTED_ZONE, allowedCidrs=cidrs, appPort=8081)
    )
    ingress = group(deployment, "cali-lb-sg").inputs["ingress"]
    assert sorted((r["fromPort"], r["toPort"]) for r in ingress) == [(80, 80), (443, 443)]
    assert all(r["cidrBlocks"] == cidrs for r in ingress)
    # The app port is the instances' port, reached from the load balancer only.
    (rule,) = [
        r
        for r in group(deployment, "cali-instance-sg").inputs["ingress"]
        if r["fromPort"] <= 8081 <= r["toPort"]
    ]
    assert rule["securityGroups"] == ["cali-lb-sg-id"]
    assert deployment.one("aws:lb/targetGroup:TargetGroup").inputs["port"] == 8081
    assert deployment.exports["url"] == f"https://{DOMAIN}", "the public port is 443, whatever appPort is"


def test_load_balancer_is_internet_facing_across_at_least_two_zones(fleet: Deployment) -> None:
    subnets = fleet.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) >= 2
    assert len({s.inputs["availabilityZone"] for s in subnets}) == len(subnets), "one subnet per zone"
    # registration order under mocks is not creation order: compare as sets of subnets
    subnet_ids = sorted(f"{s.name}-id" for s in subnets)
    balancer = fleet.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert balancer["internal"] is False
    assert balancer["loadBalancerType"] == "application"
    assert sorted(balancer["subnets"]) == subnet_ids
    assert balancer["dropInvalidHeaderFields"] is True
    assert sorted(fleet.one(ASG).inputs["vpcZoneIdentifiers"]) == subnet_ids


def test_fleet_zones_come_from_config() -> None:
    deployment = run_program(cli_config(mode="fleet", fleetZones=3))
    assert len(deployment.one(ASG).inputs["vpcZoneIdentifiers"]) == 3
    assert len(deployment.one("aws:lb/loadBalancer:LoadBalancer").inputs["subnets"]) == 3


# --- instances: the same as the single server's --------------------------------------------------


def test_instances_run_the_single_servers_boot_script_role_imdsv2_and_encrypted_root(
    fleet: Deployment, prod: Deployment
) -> None:
    server = prod.one("aws:ec2/instance:Instance").inputs
    template = fleet.one(LT).inputs
    assert launch_template_user_data(fleet) == server["userData"]
    assert f"IMAGE={fleet.exports['image']} " in launch_template_user_data(fleet)
    assert template["iamInstanceProfile"] == {"name": server["iamInstanceProfile"]}
    assert template["metadataOptions"] == server["metadataOptions"]
    assert template["imageId"] == server["ami"]
    assert template["instanceType"] == server["instanceType"]
    assert "keyName" not in template
    (root,) = template["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert root["ebs"]["encrypted"] == "true"
    assert root["ebs"]["volumeType"] == "gp3"
    assert root["ebs"]["volumeSize"] == server["rootBlockDevice"]["volumeSize"]


def test_a_new_ami_release_does_not_roll_the_fleet_but_a_pinned_one_does(fleet: Deployment) -> None:
    assert fleet.one(LT).ignore_changes == ["imageId"]
    pinned = run_program(cli_config(mode="fleet", ami="ami-0fedcba9876543210"))
    assert pinned.one(LT).inputs["imageId"] == "ami-0fedcba9876543210"
    assert pinned.one(LT).ignore_changes == []


# --- health, scaling and deploys -----------------------------------------------------------------


def test_target_group_health_check_is_ready(fleet: Deployment) -> None:
    target_group = fleet.one("aws:lb/targetGroup:TargetGroup").inputs
    assert target_group["healthCheck"]["path"] == "/ready"
    assert target_group["healthCheck"]["matcher"] == "200"
    assert target_group["port"] == 80
    assert fleet.one(ASG).inputs["targetGroupArns"] == [target_group["arn"]]


def test_group_uses_elb_health_checks_so_an_instance_never_ready_is_replaced(fleet: Deployment) -> None:
    asg = fleet.one(ASG).inputs
    assert asg["healthCheckType"] == "ELB"
    assert asg["healthCheckGracePeriod"] >= 180, "long enough to install Docker and pull the image"


def test_sizes_come_from_config_and_the_policy_owns_the_running_count() -> None:
    deployment = run_program(cli_config(mode="fleet", fleetMinSize=3, fleetMaxSize=9, fleetDesiredSize=4))
    asg = deployment.one(ASG)
    assert (asg.inputs["minSize"], asg.inputs["maxSize"], asg.inputs["desiredCapacity"]) == (3, 9, 4)
    assert asg.inputs["minElbCapacity"] == 3, "the first `up` waits for a serving fleet"
    assert asg.ignore_changes == ["desiredCapacity"], "an `up` must not undo the scaling policy's work"


def test_instance_refresh_rolls_with_the_configured_minimum_healthy_percentage(fleet: Deployment) -> None:
    refresh = fleet.one(ASG).inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    preferences = refresh["preferences"]
    assert preferences["minHealthyPercentage"] == 100, "default: never below the desired capacity"
    assert preferences["maxHealthyPercentage"] == 200, "so replacements launch before the old ones go"
    assert preferences["autoRollback"] is True
    half = run_program(cli_config(mode="fleet", refreshMinHealthyPercent=50)).one(ASG).inputs
    assert half["instanceRefresh"]["preferences"]["minHealthyPercentage"] == 50
    assert half["instanceRefresh"]["preferences"]["maxHealthyPercentage"] == 150, "AWS allows 100 points"


def test_a_new_image_digest_is_a_new_launch_template_version_which_the_group_follows(
    fleet: Deployment,
) -> None:
    # The provider starts an instance refresh whenever the group's launch_template changes; pointing
    # it at the numbered latest version (never "$Latest") is what makes a new digest such a change.
    rolled = run_program(cli_config(mode="fleet", imageDigest="sha256:" + "cd" * 32))
    assert launch_template_user_data(rolled) != launch_template_user_data(fleet)
    assert "@sha256:" + "cd" * 32 in launch_template_user_data(rolled)
    versions = []
    for deployment in (fleet, rolled):
        template = deployment.one(LT).inputs
        asg = deployment.one(ASG).inputs
        assert asg["launchTemplate"] == {"id": "cali-lt-id", "version": str(template["latestVersion"])}
        assert template["updateDefaultVersion"] is True
        versions.append(asg["launchTemplate"]["version"])
    assert versions[0] != versions[1]


def test_scaling_policy_tracks_cpu_by_default(fleet: Deployment) -> None:
    policy = fleet.one("aws:autoscaling/policy:Policy").inputs
    assert policy["policyType"] == "TargetTrackingScaling"
    assert policy["autoscalingGroupName"] == fleet.exports["autoscaling_group"]
    tracking = policy["targetTrackingConfiguration"]
    assert tracking["predefinedMetricSpecification"] == {"predefinedMetricType": "ASGAverageCPUUtilization"}
    assert tracking["targetValue"] == 60
    assert fleet.one(LT).inputs["monitoring"] == {"enabled": True}, "1-minute CPU metrics for the policy"


def test_scaling_policy_tracks_requests_per_instance_when_configured() -> None:
    deployment = run_program(
        cli_config(mode="fleet", scalingMetric="requests", scalingRequestsPerSecond=1200)
    )
    tracking = deployment.one("aws:autoscaling/policy:Policy").inputs["targetTrackingConfiguration"]
    assert tracking["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ALBRequestCountPerTarget",
        "resourceLabel": "app/cali-alb/50dc6c495c0c9188/targetgroup/cali-tg/73e2d6bc24d8a067",
    }
    assert tracking["targetValue"] == 1200 * 60, "CloudWatch counts requests per target per minute"
    assert deployment.one(LT).inputs["monitoring"] == {"enabled": False}


# --- egress: VPC endpoints, no NAT ---------------------------------------------------------------


def test_instances_reach_ecr_s3_and_logs_through_vpc_endpoints_not_a_nat_gateway(fleet: Deployment) -> None:
    assert fleet.of_type("aws:ec2/natGateway:NatGateway") == []
    endpoints = {r.inputs["serviceName"]: r for r in fleet.of_type(ENDPOINT)}
    subnet_ids = fleet.one(ASG).inputs["vpcZoneIdentifiers"]
    assert set(endpoints) == {f"com.amazonaws.{REGION}.{s}" for s in (*SERVING_SERVICES, "s3")}
    for service in SERVING_SERVICES:
        endpoint = endpoints[f"com.amazonaws.{REGION}.{service}"].inputs
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True
        assert sorted(endpoint["subnetIds"]) == sorted(subnet_ids), "one network interface in every zone"
        assert endpoint["securityGroupIds"] == ["cali-endpoints-sg-id"]
    s3 = endpoints[f"com.amazonaws.{REGION}.s3"].inputs
    assert (s3["vpcEndpointType"], s3["routeTableIds"]) == ("Gateway", ["cali-public-id"])
    (rule,) = group(fleet, "cali-endpoints-sg").inputs["ingress"]
    assert (rule["fromPort"], rule["securityGroups"]) == (443, ["cali-instance-sg-id"])
    assert not rule.get("cidrBlocks")


def test_the_group_is_created_after_the_endpoints_its_instances_boot_through(fleet: Deployment) -> None:
    endpoint_urns = {r.urn for r in fleet.of_type(ENDPOINT)}
    assert endpoint_urns <= set(fleet.one(ASG).dependencies)


def test_session_manager_endpoints_only_when_asked_for(fleet: Deployment) -> None:
    services = {r.inputs["serviceName"].rsplit(".", 1)[-1] for r in fleet.of_type(ENDPOINT)}
    assert not services & set(SESSION_MANAGER_SERVICES)
    deployment = run_program(cli_config(mode="fleet", fleetSessionManager=True))
    names = {r.inputs["serviceName"] for r in deployment.of_type(ENDPOINT)}
    assert {f"com.amazonaws.{REGION}.{s}" for s in SESSION_MANAGER_SERVICES} <= names


# --- HTTP or HTTPS -------------------------------------------------------------------------------


def test_without_a_domain_plain_http_on_the_load_balancers_name(fleet: Deployment) -> None:
    by_port = listeners(fleet)
    assert set(by_port) == {80, HEALTH_LISTENER_PORT}
    (action,) = by_port[80]["defaultActions"]
    assert action["type"] == "forward"
    assert "sslPolicy" not in by_port[80]
    assert fleet.of_type("aws:acm/certificate:Certificate") == []
    assert fleet.of_type("aws:route53/record:Record") == []
    assert not [c for c in fleet.calls if c[0] == "aws:route53/getZone:getZone"]
    assert fleet.exports["url"] == f"http://{ALB_DNS}"
    assert fleet.exports["load_balancer"] == fleet.one("aws:lb/loadBalancer:LoadBalancer").inputs["arn"]


def test_with_a_domain_https_with_a_modern_tls_policy_and_80_redirects(fleet_https: Deployment) -> None:
    by_port = listeners(fleet_https)
    assert set(by_port) == {80, 443, HEALTH_LISTENER_PORT}
    https = by_port[443]
    assert https["protocol"] == "HTTPS"
    assert https["sslPolicy"] == TLS_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    (forward,) = https["defaultActions"]
    assert forward["type"] == "forward"
    (redirect,) = by_port[80]["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}


@pytest.mark.parametrize("mode_fixture", ["fleet", "fleet_https"])
def test_the_health_listener_only_keeps_the_target_group_checked_and_admits_nobody(
    mode_fixture: str, request: pytest.FixtureRequest
) -> None:
    deployment: Deployment = request.getfixturevalue(mode_fixture)
    health = listeners(deployment)[HEALTH_LISTENER_PORT]
    (action,) = health["defaultActions"]
    assert (action["type"], action["targetGroupArn"]) == (
        "forward",
        deployment.one("aws:lb/targetGroup:TargetGroup").inputs["arn"],
    )
    public = {r["fromPort"] for r in group(deployment, "cali-lb-sg").inputs["ingress"]}
    assert HEALTH_LISTENER_PORT not in public, "the balancer's group admits the public ports only"


def test_certificate_is_validated_by_dns_before_the_listener_uses_it(fleet_https: Deployment) -> None:
    certificate = fleet_https.one("aws:acm/certificate:Certificate").inputs
    assert (certificate["domainName"], certificate["validationMethod"]) == (DOMAIN, "DNS")
    records = {r.name: r.inputs for r in fleet_https.of_type("aws:route53/record:Record")}
    validation_record = records["cali-cert-dns"]
    (option,) = certificate["domainValidationOptions"]
    assert validation_record["name"] == option["resourceRecordName"]
    assert validation_record["records"] == [option["resourceRecordValue"]]
    assert validation_record["zoneId"] == HOSTED_ZONE_ID
    validation = fleet_https.one("aws:acm/certificateValidation:CertificateValidation").inputs
    assert validation["validationRecordFqdns"] == [validation_record["fqdn"]]
    assert listeners(fleet_https)[443]["certificateArn"] == validation["certificateArn"]
    assert ("aws:route53/getZone:getZone", {"name": HOSTED_ZONE, "privateZone": False}) in fleet_https.calls


def test_with_a_domain_an_alias_record_points_it_at_the_load_balancer(fleet_https: Deployment) -> None:
    alias = next(r.inputs for r in fleet_https.of_type("aws:route53/record:Record") if r.name == "cali-alias")
    assert (alias["name"], alias["type"], alias["zoneId"]) == (DOMAIN, "A", HOSTED_ZONE_ID)
    (target,) = alias["aliases"]
    assert target["name"] == ALB_DNS
    assert target["evaluateTargetHealth"] is True
    assert fleet_https.exports["url"] == f"https://{DOMAIN}"
    assert fleet_https.exports["curl"].startswith(f"curl -s https://{DOMAIN}/predict ")


# --- every resource tagged, parented; exports ----------------------------------------------------


def tag_map(resource: Registered) -> dict[str, str]:
    """A resource's tags; the Auto Scaling group spells them as a list of key/value entries."""
    tags = resource.inputs.get("tags") or {}
    if isinstance(tags, list):
        return {t["key"]: t["value"] for t in tags}
    return tags


@pytest.mark.parametrize("stack", ["fleet", "fleet_https"])
def test_every_taggable_fleet_resource_is_tagged(stack: str, request: pytest.FixtureRequest) -> None:
    deployment: Deployment = request.getfixturevalue(stack)
    taggable = [
        r for r in deployment.resources if r.custom and r.typ.startswith("aws:") and accepts_tags(r.typ)
    ]
    assert {r.typ for r in taggable} >= {LT, ASG, ENDPOINT, LISTENER, "aws:lb/loadBalancer:LoadBalancer"}
    for resource in taggable:
        tags = tag_map(resource)
        assert tags.get("project") == PROJECT, f"{resource.typ} {resource.name} is untagged"
        assert tags.get("managed-by") == "pulumi"
    # What the group launches is tagged too, through the launch template.
    specs = {s["resourceType"]: s["tags"] for s in deployment.one(LT).inputs["tagSpecifications"]}
    assert set(specs) >= {"instance", "volume"}
    assert all(tags["project"] == PROJECT for tags in specs.values())


@pytest.mark.parametrize("stack", ["fleet", "fleet_https"])
def test_every_fleet_resource_belongs_to_a_component(stack: str, request: pytest.FixtureRequest) -> None:
    deployment: Deployment = request.getfixturevalue(stack)
    for resource in deployment.resources:
        if resource.custom:
            assert "cali:aws:" in resource.urn.split("::")[2], f"{resource.name} is not parented"


def test_fleet_exports_what_ci_and_a_user_need(fleet: Deployment) -> None:
    assert set(fleet.exports) == {
        "url",
        "autoscaling_group",
        "load_balancer",
        "ingress_group",
        "image",
        "state_bucket",
        "log_group",
        "curl",
    }
    assert fleet.exports["url"] == f"http://{ALB_DNS}"
    payload = fleet.exports["curl"].split("-d '", 1)[1].rstrip("'")
    assert fleet.exports["curl"].startswith(f"curl -s http://{ALB_DNS}/predict ")
    assert json.loads(payload)


# --- single mode is untouched by the flag -------------------------------------------------------


def test_single_mode_registers_nothing_of_the_fleet(prod: Deployment) -> None:
    for typ in FLEET_ONLY:
        assert prod.of_type(typ) == [], typ
    assert len(prod.of_type("aws:ec2/subnet:Subnet")) == 1


def test_fleet_settings_do_not_change_a_single_stack() -> None:
    def snapshot(deployment: Deployment) -> list[tuple[str, str, str]]:
        return sorted(
            (r.urn, json.dumps(r.inputs, sort_keys=True), str(r.ignore_changes)) for r in deployment.resources
        )

    default = run_program(cli_config())
    fleet_keys = {
        "mode": "single",
        "fleetZones": 3,
        "fleetMinSize": 3,
        "fleetMaxSize": 8,
        "fleetDesiredSize": 5,
        "scalingMetric": "requests",
        "refreshMinHealthyPercent": 50,
        "domain": DOMAIN,
        "hostedZone": HOSTED_ZONE,
        "fleetSessionManager": True,
    }
    configured = run_program(cli_config(**fleet_keys))
    assert snapshot(configured) == snapshot(default)
    assert configured.exports == default.exports


def test_flipping_the_mode_keeps_the_shared_resources(prod: Deployment, fleet: Deployment) -> None:
    # Same URNs and inputs: the flip adds and removes the mode's own resources, and replaces nothing else.
    for typ in SHARED:
        befores = {r.urn: r.inputs for r in prod.of_type(typ)}
        afters = {r.urn: r.inputs for r in fleet.of_type(typ)}
        assert befores, typ
        # every resource single mode has is in the fleet unchanged (the fleet may add its own, e.g.
        # the access-log bucket)
        assert {urn: afters.get(urn) for urn in befores} == befores, typ
    first_subnet = [s for s in fleet.of_type("aws:ec2/subnet:Subnet") if s.name == "cali-public-0"]
    assert [s.inputs for s in first_subnet] == [prod.one("aws:ec2/subnet:Subnet").inputs]


# --- config errors name the key ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        ({"mode": "cluster"}, "mode", "one of single, fleet"),
        ({"fleetMinSize": 5, "fleetMaxSize": 4}, "fleetMinSize", "at most fleetMaxSize (4)"),
        ({"fleetMinSize": 0}, "fleetMinSize", "from 1 to 100"),
        ({"fleetDesiredSize": 9}, "fleetDesiredSize", "from fleetMinSize (2) to fleetMaxSize (4)"),
        ({"fleetZones": 1}, "fleetZones", "from 2 to 3"),
        ({"domain": DOMAIN}, "hostedZone", "hosted zone"),
        ({"hostedZone": HOSTED_ZONE}, "domain", "since hostedZone is set"),
        (
            {"domain": "api.example.org", "hostedZone": HOSTED_ZONE},
            "domain",
            "in the hosted zone example.com",
        ),
        ({"domain": "API.Example.com", "hostedZone": HOSTED_ZONE}, "domain", "lower-case DNS name"),
        ({"scalingMetric": "memory"}, "scalingMetric", "one of cpu, requests"),
        ({"scalingCpuPercent": 95}, "scalingCpuPercent", "from 10 to 90"),
        ({"scalingRequestsPerSecond": 0}, "scalingRequestsPerSecond", "from 1 to 100000"),
        ({"refreshMinHealthyPercent": 101}, "refreshMinHealthyPercent", "from 0 to 100"),
        ({"fleetSessionManager": "yes"}, "fleetSessionManager", "true or false"),
    ],
)
@pytest.mark.parametrize("mode", ["single", "fleet"])
def test_invalid_fleet_config_fails_before_any_resource_naming_the_key(
    overrides: dict[str, object], key: str, says: str, mode: str
) -> None:
    deployment = Deployment()
    with pytest.raises(StackConfigError) as raised:
        run_program(cli_config(**{"mode": mode, **overrides}), deployment)
    assert raised.value.key == key
    assert f"{PROJECT}:{key}" in str(raised.value)
    assert says in str(raised.value)
    assert deployment.resources == [], "resources were registered before the config was checked"


def test_the_instance_refresh_names_the_5xx_and_latency_alarms_and_rolls_back(fleet: Deployment) -> None:
    preferences = fleet.one(ASG).inputs["instanceRefresh"]["preferences"]
    assert preferences["autoRollback"] is True
    alarms = {a.name: a for a in fleet.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    # the alarms' own fixed names (infra/monitoring.py alarm_name), as AWS knows them
    assert preferences["alarmSpecification"]["alarms"] == [
        alarms["cali-errors"].inputs["name"],
        alarms["cali-latency"].inputs["name"],
    ]
    assert preferences["alarmSpecification"]["alarms"] == [
        "cali-housing-prod-errors",
        "cali-housing-prod-latency",
    ]
    assert "Errors5xx" in json.dumps(alarms["cali-errors"].inputs["metricQueries"])
    assert alarms["cali-latency"].inputs["metricName"] == "LatencyP99"
    # drift is a slow signal about the data, not the build: it must not undo a rollout
    assert not any("drift" in name for name in preferences["alarmSpecification"]["alarms"])
