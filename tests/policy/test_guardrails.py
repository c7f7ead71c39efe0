"""Each policy of the pack holds on the program as it is, and names the defect when a resource breaks it.

The resources are the program's own (its run under mocks, single and fleet, with and without a
domain). A mutation changes one property of one of them, the way an edit to the program would, and
the policy must report it with a message that says what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import guardrails
import pytest
from guardrails import compute, network, storage
from guardrails import tokens as t

from tests.infra.conftest import Deployment, cli_config, run_program
from tests.policy.conftest import MODES, ROOT, mutated, resources, view, without

RULE_IDS = [r.name for r in guardrails.RESOURCE_RULES]
STACK_IDS = [r.name for r in guardrails.STACK_RULES]


@pytest.fixture(params=MODES)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """The program's run in each mode: single (prod), fleet, fleet with HTTPS."""
    return request.getfixturevalue(request.param)


def resource_messages(
    rule: guardrails.ResourceRule, stack: list[guardrails.Resource], **config: Any
) -> list[str]:
    return [m for r in stack for m in rule.validate(r.typ, r.props, config)]


@pytest.mark.parametrize("rule", guardrails.RESOURCE_RULES, ids=RULE_IDS)
def test_the_programs_resources_pass_every_resource_policy(
    rule: guardrails.ResourceRule, deployment: Deployment
) -> None:
    assert resource_messages(rule, resources(deployment)) == []


@pytest.mark.parametrize("rule", guardrails.STACK_RULES, ids=STACK_IDS)
def test_the_programs_stack_passes_every_stack_policy(
    rule: guardrails.StackRule, deployment: Deployment
) -> None:
    assert rule.validate(resources(deployment)) == []


@pytest.mark.parametrize("rule", [r for r in guardrails.ALL_RULES if r.types], ids=lambda r: r.name)
def test_every_policy_judges_a_type_the_program_registers(
    rule: guardrails.Rule, prod: Deployment, fleet: Deployment, fleet_https: Deployment
) -> None:
    # a policy whose types the program never registers would pass by having nothing to look at
    registered = {r.typ for d in (prod, fleet, fleet_https) for r in d.resources}
    assert registered.intersection(rule.types), f"{rule.name} judges none of {registered}"


def test_every_type_the_program_registers_is_classified(deployment: Deployment) -> None:
    unclassified = sorted({r.typ for r in deployment.resources if not guardrails.classified(r.typ)})
    assert unclassified == [], "classify each in policy/guardrails/ (a policy, or UNCHECKED with a reason)"


def test_a_type_the_pack_does_not_know_is_listed_by_the_known_types_policy(prod: Deployment) -> None:
    stranger = guardrails.Resource("aws:rds/instance:Instance", "cali-db", "urn:pulumi:prod::cali::db", {})
    found = guardrails.STACK_RULES[-1].validate([*resources(prod), stranger])
    assert [(v.message, v.urn) for v in found] == [
        (
            "aws:rds/instance:Instance (cali-db) is a type this pack neither judges nor lists as unchecked.",
            stranger.urn,
        )
    ]


def test_no_type_is_both_judged_and_listed_as_unchecked() -> None:
    assert guardrails.checked_types().intersection(guardrails.UNCHECKED) == set()


def test_every_policy_has_a_unique_name_a_level_a_description_and_a_remediation() -> None:
    names = [r.name for r in guardrails.ALL_RULES]
    assert len(names) == len(set(names))
    for rule in guardrails.ALL_RULES:
        assert rule.level in (guardrails.MANDATORY, guardrails.ADVISORY), rule.name
        assert rule.description.endswith("."), rule.name
        assert rule.remediation.endswith("."), rule.name
        assert all("default" in schema for schema in rule.config.values()), (
            f"{rule.name}: a setting without default"
        )


def test_every_advisory_policy_is_a_choice_a_setting_or_a_waiver_can_change() -> None:
    # advisory = a stack's choice: configurable (a schema), or a setting the program lets a stack turn off
    advisory = {r.name for r in guardrails.ALL_RULES if r.level == guardrails.ADVISORY}
    assert advisory == {
        "allowed-instance-types",
        "volume-size-limits",
        "fleet-size-limit",
        "vpc-flow-logs",
        "alb-access-logs",
        "known-resource-types",
    }


# -- resource policies: one mutation each, the message that names it ----------------------------------


def _ingress(props: dict[str, Any], **rule: Any) -> None:
    props["ingress"] = [{"protocol": "tcp", "cidrBlocks": ["10.0.0.0/8"], "description": "x", **rule}]


Mutation = tuple[str, str, str, Callable[[dict[str, Any]], None], guardrails.ResourceRule, str]
MUTATIONS: list[Mutation] = [
    (
        "prod",
        t.SECURITY_GROUP,
        "cali-sg",
        lambda p: _ingress(p, fromPort=22, toPort=22),
        network.NO_SSH,
        "ingress[0] (x) admits port 22 (SSH) from 10.0.0.0/8.",
    ),
    (
        "fleet",
        t.SECURITY_GROUP,
        "cali-instance-sg",
        lambda p: _ingress(p, protocol="-1", fromPort=0, toPort=0),
        network.NO_SSH,
        "ingress[0] (x) admits port 22 (SSH) from 10.0.0.0/8.",
    ),
    (
        "prod",
        t.SECURITY_GROUP,
        "cali-sg",
        lambda p: _ingress(p, fromPort=8080, toPort=8080, cidrBlocks=["0.0.0.0/0"]),
        network.WORLD_INGRESS,
        "ingress[0] (x) opens TCP 8080 to 0.0.0.0/0; the public ports are [80, 443] "
        "(policy setting publicPorts).",
    ),
    (
        "fleet",
        t.SECURITY_GROUP,
        "cali-lb-sg",
        lambda p: _ingress(p, fromPort=0, toPort=65535, ipv6CidrBlocks=["::/0"]),
        network.WORLD_INGRESS,
        "ingress[0] (x) opens protocol tcp ports 0.0-65535.0 to ::/0; only single TCP ports may be public.",
    ),
    (
        "prod",
        t.DEFAULT_SECURITY_GROUP,
        "cali-default-sg",
        lambda p: _ingress(p, fromPort=443, toPort=443),
        network.DEFAULT_GROUP_CLOSED,
        "the VPC's default security group has ingress rules; it must have none.",
    ),
    (
        "prod",
        t.INSTANCE,
        "cali-instance",
        lambda p: p["metadataOptions"].update(httpPutResponseHopLimit=2.0),
        compute.IMDSV2,
        "metadataOptions.httpPutResponseHopLimit is 2.0; it must be 1, so a container (one hop further) "
        "cannot fetch the instance role's credentials.",
    ),
    (
        "fleet",
        t.LAUNCH_TEMPLATE,
        "cali-lt",
        lambda p: p["metadataOptions"].update(httpTokens="optional"),
        compute.IMDSV2,
        "metadataOptions.httpTokens is 'optional'; it must be 'required' (IMDSv2), else the AMI's or the "
        "account's default applies.",
    ),
    (
        "prod",
        t.INSTANCE,
        "cali-instance",
        lambda p: p["rootBlockDevice"].update(encrypted=False),
        compute.ENCRYPTED_VOLUMES,
        "rootBlockDevice is not encrypted (encrypted is False).",
    ),
    (
        "fleet",
        t.LAUNCH_TEMPLATE,
        "cali-lt",
        lambda p: p["blockDeviceMappings"][0]["ebs"].update(encrypted="false"),
        compute.ENCRYPTED_VOLUMES,
        "blockDeviceMappings[0].ebs is not encrypted (encrypted is 'false').",
    ),
    (
        "prod",
        t.INSTANCE,
        "cali-instance",
        lambda p: p.update(instanceType="m5.24xlarge"),
        compute.ALLOWED_INSTANCE_TYPES,
        "instance type 'm5.24xlarge' is not one of ['t3.micro', 't3.small', 't3.medium', 't3.large'] "
        "(policy setting allowedInstanceTypes).",
    ),
    (
        "fleet",
        t.LAUNCH_TEMPLATE,
        "cali-lt",
        lambda p: p["blockDeviceMappings"][0]["ebs"].update(volumeSize=500.0),
        compute.VOLUME_SIZE,
        "blockDeviceMappings[0].ebs is 500 GiB; this stack allows 8 to 64 (minVolumeGb, maxVolumeGb).",
    ),
    (
        "fleet",
        t.AUTOSCALING_GROUP,
        "cali-asg",
        lambda p: p.update(maxSize=50.0),
        compute.FLEET_SIZE,
        "maxSize is 50.0; this stack allows at most 10 instances.",
    ),
    (
        "prod",
        t.ECR_REPOSITORY,
        "cali-repo",
        lambda p: p.update(imageTagMutability="MUTABLE"),
        storage.IMMUTABLE_TAGS,
        "repository 'cali-housing-prod' has imageTagMutability 'MUTABLE'; a pushed tag could then be "
        "re-pointed at another image after it was tested.",
    ),
    (
        "fleet",
        t.BUCKET_LIFECYCLE[0],
        "cali-alb-logs",
        lambda p: p["rules"][0].pop("abortIncompleteMultipartUpload"),
        storage.ABORT_INCOMPLETE_UPLOADS,
        "no enabled rule over the whole bucket sets abortIncompleteMultipartUpload.daysAfterInitiation; "
        "an interrupted upload's parts stay (and are billed) forever.",
    ),
    (
        "fleet",
        t.BUCKET_LIFECYCLE[0],
        "cali-alb-logs",
        lambda p: p["rules"][0].update(filter={"prefix": "alb/"}),
        storage.ABORT_INCOMPLETE_UPLOADS,
        "no enabled rule over the whole bucket sets abortIncompleteMultipartUpload.daysAfterInitiation; "
        "an interrupted upload's parts stay (and are billed) forever.",
    ),
    (
        "fleet",
        t.BUCKET_LIFECYCLE[0],
        "cali-alb-logs",
        lambda p: p["rules"][0].update(filter={"and": {"prefix": "", "tags": {"keep": "no"}}}),
        storage.ABORT_INCOMPLETE_UPLOADS,
        "no enabled rule over the whole bucket sets abortIncompleteMultipartUpload.daysAfterInitiation; "
        "an interrupted upload's parts stay (and are billed) forever.",
    ),
    (
        "fleet",
        t.LOAD_BALANCER,
        "cali-alb",
        lambda p: p["accessLogs"].update(enabled=False),
        storage.ALB_ACCESS_LOGS,
        "the load balancer writes no access logs.",
    ),
]


@pytest.mark.parametrize(
    ("mode", "typ", "name", "change", "rule", "message"),
    MUTATIONS,
    ids=[f"{m[4].name}:{m[2]}" for m in MUTATIONS],
)
def test_a_broken_resource_is_reported_with_its_message(
    request: pytest.FixtureRequest,
    mode: str,
    typ: str,
    name: str,
    change: Callable[[dict[str, Any]], None],
    rule: guardrails.ResourceRule,
    message: str,
) -> None:
    _, broken = mutated(request.getfixturevalue(mode), typ, name, change)
    assert rule.validate(broken.typ, broken.props) == [message]


def test_the_alb_log_bucket_aborts_incomplete_uploads_as_the_state_bucket_does(fleet: Deployment) -> None:
    # item 4 of the issue (Checkov CKV_AWS_300): the fix in infra/logs.py, seen in what the program registers
    (rule,) = fleet.named(t.BUCKET_LIFECYCLE[0], "cali-alb-logs").inputs["rules"]
    assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7.0}
    assert rule["status"] == "Enabled"
    assert rule["filter"] == {"prefix": ""}


def test_a_build_cache_repository_may_be_mutable_and_only_it(prod: Deployment) -> None:
    cache = prod.named(t.ECR_REPOSITORY, "cali-cache-repo")
    assert cache.inputs["imageTagMutability"] == "MUTABLE"
    assert storage.IMMUTABLE_TAGS.validate(cache.typ, cache.inputs) == []
    assert storage.IMMUTABLE_TAGS.validate(cache.typ, cache.inputs, {"mutableRepositorySuffixes": []}) != []


@pytest.mark.parametrize(
    ("rule", "config", "typ", "props"),
    [
        (
            network.WORLD_INGRESS,
            {"publicPorts": [8080]},
            t.SECURITY_GROUP,
            {"ingress": [{"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidrBlocks": ["0.0.0.0/0"]}]},
        ),
        (
            compute.ALLOWED_INSTANCE_TYPES,
            {"allowedInstanceTypes": ["m6i.*"]},
            t.INSTANCE,
            {"instanceType": "m6i.xlarge"},
        ),
        (compute.FLEET_SIZE, {"maxFleetSize": 100}, t.AUTOSCALING_GROUP, {"maxSize": 50.0}),
    ],
    ids=["publicPorts", "allowedInstanceTypes", "maxFleetSize"],
)
def test_a_stacks_policy_config_admits_what_the_defaults_refuse(
    rule: guardrails.ResourceRule, config: dict[str, Any], typ: str, props: dict[str, Any]
) -> None:
    assert rule.validate(typ, props) != []
    assert rule.validate(typ, props, config) == []


@pytest.mark.parametrize(
    ("typ", "props", "rule"),
    [
        (
            t.SECURITY_GROUP_RULE,
            {
                "type": "ingress",
                "protocol": "tcp",
                "fromPort": 20,
                "toPort": 25,
                "cidrBlocks": ["10.0.0.0/8"],
            },
            network.NO_SSH,
        ),
        (t.INGRESS_RULE, {"ipProtocol": "-1", "cidrIpv4": "10.0.0.0/8"}, network.NO_SSH),
        (
            t.INGRESS_RULE,
            {"ipProtocol": "tcp", "fromPort": 5000, "toPort": 5000, "cidrIpv6": "::/0"},
            network.WORLD_INGRESS,
        ),
    ],
    ids=["ec2.SecurityGroupRule", "vpc.SecurityGroupIngressRule-all", "vpc.SecurityGroupIngressRule-world"],
)
def test_separate_security_group_rule_resources_are_judged_like_inline_rules(
    typ: str, props: dict[str, Any], rule: guardrails.ResourceRule
) -> None:
    # per-port rule resources (a program may move from inline ingress to them) keep the same invariants
    assert len(rule.validate(typ, props)) == 1
    egress_only = {"type": "egress", "protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}
    assert rule.validate(t.SECURITY_GROUP_RULE, egress_only) == []


# -- stack policies: a relation between resources broken -----------------------------------------------


def test_an_address_moved_without_the_readiness_gate_is_reported(prod: Deployment) -> None:
    association = prod.one(t.EIP_ASSOCIATION)
    gate = prod.named(t.DYNAMIC, "cali-ready")
    ungated = guardrails.Resource(
        association.typ,
        association.name,
        association.urn,
        association.inputs,
        tuple(d for d in association.dependencies if d != gate.urn),
    )
    stack = [ungated if r.urn == association.urn else view(r) for r in prod.resources]
    assert [(v.message, v.urn) for v in compute.READINESS_GATE.validate(stack)] == [
        ("cali-eip-assoc moves the address without waiting for a readiness gate.", association.urn)
    ]


def test_a_readiness_gate_that_waits_for_no_instance_is_reported(prod: Deployment) -> None:
    gate = prod.named(t.DYNAMIC, "cali-ready")
    stack = [
        guardrails.Resource(r.typ, r.name, r.urn, r.props, ()) if r.urn == gate.urn else r
        for r in resources(prod)
    ]
    assert [v.message for v in compute.READINESS_GATE.validate(stack)] == [
        "cali-eip-assoc's readiness gate waits for no instance."
    ]


@pytest.mark.parametrize(
    ("typ", "name", "change", "message"),
    [
        (
            t.AUTOSCALING_GROUP,
            "cali-asg",
            lambda p: p.update(healthCheckType="EC2"),
            "group cali-asg replaces instances on EC2 status only (healthCheckType 'EC2'); it must be 'ELB' "
            "so /ready decides.",
        ),
        (
            t.AUTOSCALING_GROUP,
            "cali-asg",
            lambda p: p.pop("minElbCapacity"),
            "group cali-asg sets neither minElbCapacity nor waitForElbCapacity, so `pulumi up` ends before "
            "any instance passes the load balancer's health check.",
        ),
        (
            t.TARGET_GROUP,
            "cali-tg",
            lambda p: p["healthCheck"].pop("path"),
            "target group cali-tg has no HTTP health check path; the load balancer would route to an "
            "instance before it is ready.",
        ),
    ],
    ids=["health-check-type", "no-elb-capacity-wait", "no-health-check-path"],
)
def test_a_fleet_that_serves_before_its_health_check_is_reported(
    fleet: Deployment, typ: str, name: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    stack, _ = mutated(fleet, typ, name, change)
    assert [v.message for v in compute.READINESS_GATE.validate(stack)] == [message]


def test_a_public_ip_in_fleet_mode_is_reported(fleet: Deployment) -> None:
    stack, template = mutated(
        fleet,
        t.LAUNCH_TEMPLATE,
        "cali-lt",
        lambda p: p["networkInterfaces"][0].update(associatePublicIpAddress="true"),
    )
    assert [(v.message, v.urn) for v in network.NO_PUBLIC_INSTANCE_IN_FLEET.validate(stack)] == [
        (
            "launch template cali-lt networkInterfaces[0] associatePublicIpAddress is 'true'; fleet "
            "instances must get none.",
            template.urn,
        )
    ]


def test_a_fleet_template_that_leaves_the_public_ip_to_the_subnet_is_reported(fleet: Deployment) -> None:
    stack, _ = mutated(fleet, t.LAUNCH_TEMPLATE, "cali-lt", lambda p: p.pop("networkInterfaces"))
    assert [v.message for v in network.NO_PUBLIC_INSTANCE_IN_FLEET.validate(stack)] == [
        "launch template cali-lt declares no network interface, so the subnet decides whether fleet "
        "instances get a public IP."
    ]


def test_the_single_servers_public_ip_is_by_design(prod: Deployment) -> None:
    assert prod.one(t.INSTANCE).inputs["associatePublicIpAddress"] is True
    assert network.NO_PUBLIC_INSTANCE_IN_FLEET.validate(resources(prod)) == []


def test_a_vpc_without_flow_logs_is_reported(deployment: Deployment) -> None:
    vpc = deployment.one(t.VPC)
    stack = list(without(deployment, t.FLOW_LOG, "cali-flow-log"))
    assert [(v.message, v.urn) for v in network.FLOW_LOGS.validate(stack)] == [
        ("VPC cali-vpc has no flow log.", vpc.urn)
    ]


def test_flow_logs_of_rejected_traffic_only_are_reported(prod: Deployment) -> None:
    stack, _ = mutated(prod, t.FLOW_LOG, "cali-flow-log", lambda p: p.update(trafficType="REJECT"))
    assert [v.message for v in network.FLOW_LOGS.validate(stack)] == [
        "VPC cali-vpc's flow logs do not record ALL traffic (accepted and rejected)."
    ]


def test_a_bucket_without_its_encryption_configuration_is_reported(fleet: Deployment) -> None:
    bucket = fleet.named(t.BUCKETS[0], "cali-alb-logs")
    stack = list(without(fleet, t.BUCKET_ENCRYPTION[0], "cali-alb-logs"))
    assert [(v.message, v.urn) for v in storage.ENCRYPTED_BUCKETS.validate(stack)] == [
        ("bucket cali-alb-logs has no server-side encryption configuration.", bucket.urn)
    ]


def test_a_bucket_encryption_rule_without_an_algorithm_is_reported(prod: Deployment) -> None:
    stack, config = mutated(
        prod, t.BUCKET_ENCRYPTION[0], "cali-state-encryption", lambda p: p.update(rules=[{}])
    )
    assert [(v.message, v.urn) for v in storage.ENCRYPTED_BUCKETS.validate(stack)] == [
        (
            "bucket cali-state-bucket's encryption rules name [None]; each must be one of "
            "['AES256', 'aws:kms', 'aws:kms:dsse'].",
            config.urn,
        )
    ]


def test_a_bucket_whose_public_access_block_is_loosened_is_reported(fleet: Deployment) -> None:
    stack, block = mutated(
        fleet, t.PUBLIC_ACCESS_BLOCK, "cali-alb-logs", lambda p: p.update(blockPublicPolicy=False)
    )
    assert [(v.message, v.urn) for v in storage.PRIVATE_BUCKETS.validate(stack)] == [
        ("bucket cali-alb-logs's public access block leaves ['blockPublicPolicy'] off.", block.urn)
    ]


def test_a_bucket_without_a_public_access_block_is_reported(prod: Deployment) -> None:
    stack = list(without(prod, t.PUBLIC_ACCESS_BLOCK, "cali-state-public-access-block"))
    assert [v.message for v in storage.PRIVATE_BUCKETS.validate(stack)] == [
        "bucket cali-state-bucket has no public access block."
    ]


def test_the_deploy_guide_lists_every_policy_with_its_level_and_settings() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    rows = {
        m[1]: (m[2], m[3])
        for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (\w+) \|[^|]*\|([^|]*)\|$", text, re.M)
    }
    assert {name: level for name, (level, _) in rows.items()} == {
        r.name: r.level for r in guardrails.ALL_RULES
    }
    for rule in guardrails.ALL_RULES:
        assert all(f"`{key}`" in rows[rule.name][1] for key in rule.config), rule.name


@pytest.fixture(scope="module")
def app_port_8080() -> tuple[Deployment, dict[str, str]]:
    """The single stack serving on 8080, and its config as the CLI hands it to the pack."""
    config = cli_config("prod", appPort=8080)
    return run_program(config), config


def test_the_stacks_own_app_port_is_public_in_single_mode(
    app_port_8080: tuple[Deployment, dict[str, str]],
) -> None:
    deployment, config = app_port_8080
    group = deployment.named(t.SECURITY_GROUP, "cali-sg")
    assert network.WORLD_INGRESS.validate(group.typ, group.inputs, None, config) == []
    # without the stack's config (an older CLI passes none) the defaults alone refuse it
    assert network.WORLD_INGRESS.validate(group.typ, group.inputs) == [
        "ingress[0] (app) opens TCP 8080 to 0.0.0.0/0; the public ports are [80, 443] "
        "(policy setting publicPorts)."
    ]


def test_a_fleet_stacks_app_port_is_never_public(app_port_8080: tuple[Deployment, dict[str, str]]) -> None:
    deployment, config = app_port_8080
    group = deployment.named(t.SECURITY_GROUP, "cali-sg")
    fleet_config = {**config, "cali-housing:mode": "fleet"}
    assert len(network.WORLD_INGRESS.validate(group.typ, group.inputs, None, fleet_config)) == 1
