"""Compute invariants: the instances' metadata service, disks, sizes, and the gate before traffic."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from . import tokens as t
from .model import (
    ADVISORY,
    MANDATORY,
    Resource,
    ResourceRule,
    StackRule,
    Violation,
    depends_on,
    has_key,
    items,
    mapping,
    number,
    of_type,
    truthy,
)


def _imds(typ: str, props: Mapping[str, Any], _config: Mapping[str, Any]) -> Iterator[str]:
    options = mapping(props.get("metadataOptions"))
    if options.get("httpEndpoint") == "disabled":
        return  # no metadata service at all: nothing to steal a token from
    if options.get("httpTokens") != "required":
        yield (
            f"metadataOptions.httpTokens is {options.get('httpTokens')!r}; it must be 'required' (IMDSv2), "
            "else the AMI's or the account's default applies."
        )
    hops = number(options.get("httpPutResponseHopLimit"))
    if hops != 1:
        yield (
            f"metadataOptions.httpPutResponseHopLimit is {options.get('httpPutResponseHopLimit')!r}; it must "
            "be 1, so a container (one hop further) cannot fetch the instance role's credentials."
        )


IMDSV2 = ResourceRule(
    name="imdsv2-hop-limit-1",
    description="Instances and launch templates require IMDSv2 tokens with a response hop limit of 1: the "
    "instance role's credentials never reach a container or an SSRF'd request.",
    remediation="Set metadata_options http_tokens 'required' and http_put_response_hop_limit 1 "
    "(infra/server.py, infra/fleet.py).",
    level=MANDATORY,
    types=(t.INSTANCE, t.LAUNCH_TEMPLATE),
    check=_imds,
)


def _volumes(typ: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, EBS settings) for every volume a resource declares."""
    if typ == t.INSTANCE:
        yield "rootBlockDevice", mapping(props.get("rootBlockDevice"))
        for i, device in enumerate(items(props.get("ebsBlockDevices"))):
            yield f"ebsBlockDevices[{i}]", mapping(device)
    elif typ == t.LAUNCH_TEMPLATE:
        for i, device in enumerate(items(props.get("blockDeviceMappings"))):
            if has_key(device, "ebs"):
                yield f"blockDeviceMappings[{i}].ebs", mapping(device.get("ebs"))
    elif typ == t.VOLUME:
        yield "the volume", props


def _encrypted(typ: str, props: Mapping[str, Any], _config: Mapping[str, Any]) -> Iterator[str]:
    for where, ebs in _volumes(typ, props):
        if not truthy(ebs.get("encrypted")):
            yield f"{where} is not encrypted (encrypted is {ebs.get('encrypted')!r})."


ENCRYPTED_VOLUMES = ResourceRule(
    name="encrypted-volumes",
    description="Every EBS volume (root, extra, launch-template, standalone) says encrypted: true, "
    "whatever the account's default.",
    remediation="Set encrypted True on the root_block_device / the launch template's ebs block "
    "(infra/server.py, infra/fleet.py).",
    level=MANDATORY,
    types=(t.INSTANCE, t.LAUNCH_TEMPLATE, t.VOLUME),
    check=_encrypted,
)


def _instance_type(typ: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    patterns = [str(p) for p in config["allowedInstanceTypes"]]
    chosen = props.get("instanceType")
    if chosen is None and typ == t.LAUNCH_TEMPLATE:
        return  # a template without a type leaves it to the group (then judged there, if ever added)
    if not any(fnmatchcase(str(chosen), pattern) for pattern in patterns):
        yield f"instance type {chosen!r} is not one of {patterns} (policy setting allowedInstanceTypes)."


ALLOWED_INSTANCE_TYPES = ResourceRule(
    name="allowed-instance-types",
    description="Servers use an instance type this stack has agreed to pay for.",
    remediation="Choose one of allowedInstanceTypes with `pulumi config set instanceType`, or widen the "
    "list in the stack's policy config (docs/deploy.md).",
    level=ADVISORY,
    types=(t.INSTANCE, t.LAUNCH_TEMPLATE),
    check=_instance_type,
    config={
        "allowedInstanceTypes": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["t3.micro", "t3.small", "t3.medium", "t3.large"],
            "description": "Instance types (shell-style patterns such as 'm6i.*' allowed).",
        }
    },
)


def _volume_size(typ: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    low, high = number(config["minVolumeGb"]), number(config["maxVolumeGb"])
    for where, ebs in _volumes(typ, props):
        size = number(ebs.get("volumeSize", ebs.get("size")))
        if size is None:
            yield f"{where} sets no size, so the AMI's snapshot decides it."
        elif not (low or 0) <= size <= (high or 0):
            yield (
                f"{where} is {size:g} GiB; this stack allows {low:g} to {high:g} (minVolumeGb, maxVolumeGb)."
            )


VOLUME_SIZE = ResourceRule(
    name="volume-size-limits",
    description="Every EBS volume has a size within the stack's bounds (a cost and capacity choice).",
    remediation="Set rootVolumeGb within the bounds, or change minVolumeGb/maxVolumeGb in the stack's "
    "policy config (docs/deploy.md).",
    level=ADVISORY,
    types=(t.INSTANCE, t.LAUNCH_TEMPLATE, t.VOLUME),
    check=_volume_size,
    config={
        "minVolumeGb": {"type": "integer", "minimum": 1, "default": 8},
        "maxVolumeGb": {"type": "integer", "minimum": 1, "default": 64},
    },
)


def _fleet_size(_typ: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    most, limit = number(props.get("maxSize")), number(config["maxFleetSize"]) or 0
    if most is None or most > limit:
        yield f"maxSize is {props.get('maxSize')!r}; this stack allows at most {limit:g} instances."


FLEET_SIZE = ResourceRule(
    name="fleet-size-limit",
    description="An Auto Scaling group's maxSize stays within what the stack agreed to pay for.",
    remediation="Lower fleetMaxSize, or raise maxFleetSize in the stack's policy config (docs/deploy.md).",
    level=ADVISORY,
    types=(t.AUTOSCALING_GROUP,),
    check=_fleet_size,
    config={"maxFleetSize": {"type": "integer", "minimum": 1, "default": 10}},
)


def _gates(resources: Sequence[Resource]) -> list[Resource]:
    """The readiness gates: dynamic resources given the instance to wait for (infra/readiness.py)."""
    return [r for r in of_type(resources, t.DYNAMIC) if has_key(r.props, "instance_id")]


def _readiness(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterator[Violation]:
    instances = list(of_type(resources, t.INSTANCE))
    gates = _gates(resources)
    for association in of_type(resources, t.EIP_ASSOCIATION):
        before = [g for g in gates if depends_on(association, g)]
        if not before:
            yield Violation(
                f"{association.name} moves the address without waiting for a readiness gate.", association.urn
            )
        elif not any(depends_on(g, i) for g in before for i in instances):
            yield Violation(f"{association.name}'s readiness gate waits for no instance.", association.urn)
    groups = list(of_type(resources, t.AUTOSCALING_GROUP))
    for group in groups:
        if group.props.get("healthCheckType") != "ELB":
            yield Violation(
                f"group {group.name} replaces instances on EC2 status only (healthCheckType "
                f"{group.props.get('healthCheckType')!r}); it must be 'ELB' so /ready decides.",
                group.urn,
            )
        if not (number(group.props.get("minElbCapacity")) or number(group.props.get("waitForElbCapacity"))):
            yield Violation(
                f"group {group.name} sets neither minElbCapacity nor waitForElbCapacity, so `pulumi up` "
                "ends before any instance passes the load balancer's health check.",
                group.urn,
            )
    if groups:
        for target_group in of_type(resources, t.TARGET_GROUP):
            check = mapping(target_group.props.get("healthCheck"))
            if check.get("enabled") is False or not check.get("path"):
                yield Violation(
                    f"target group {target_group.name} has no HTTP health check path; the load balancer "
                    "would route to an instance before it is ready.",
                    target_group.urn,
                )


READINESS_GATE = StackRule(
    name="readiness-gate-before-address",
    description="Traffic reaches a new server only after it answers /ready: in single mode the Elastic IP "
    "association depends on a readiness gate that depends on the instance; in fleet mode the group "
    "waits for load-balancer health checks on a path.",
    remediation="Keep the ReadinessGate between the instance and the EipAssociation (infra/server.py), and "
    "health_check_type 'ELB', min_elb_capacity and the target group's health check (infra/fleet.py).",
    level=MANDATORY,
    types=(t.EIP_ASSOCIATION, t.DYNAMIC, t.AUTOSCALING_GROUP, t.TARGET_GROUP),
    check=_readiness,
)

RULES = (IMDSV2, ENCRYPTED_VOLUMES, ALLOWED_INSTANCE_TYPES, VOLUME_SIZE, FLEET_SIZE, READINESS_GATE)
