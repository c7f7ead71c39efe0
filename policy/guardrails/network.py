"""Network invariants: who may reach what, and the VPC's record of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import tokens as t
from .model import (
    ADVISORY,
    MANDATORY,
    STACK_CONFIG,
    Resource,
    ResourceRule,
    StackRule,
    Violation,
    depends_on,
    items,
    number,
    of_type,
)

SSH_PORT = 22
# Pulumi.yaml's appPort and mode, as the stack's config names them
APP_PORT_KEY = "cali-housing:appPort"
MODE_KEY = "cali-housing:mode"
WORLD = frozenset({"0.0.0.0/0", "::/0"})
ALL_PROTOCOLS = frozenset({"-1", "all"})
TCP = frozenset({"tcp", "6"})


@dataclass(frozen=True)
class Ingress:
    """One ingress permission, whatever resource shape declared it."""

    protocol: str
    from_port: float | None
    to_port: float | None
    cidrs: tuple[str, ...]
    label: str

    def admits(self, port: int) -> bool:
        """Whether TCP traffic to `port` is let in (all protocols, or a TCP range holding it)."""
        if self.protocol in ALL_PROTOCOLS:
            return True
        if self.protocol not in TCP:
            return False
        low = self.from_port if self.from_port is not None else 0
        high = self.to_port if self.to_port is not None else 65535
        return low <= port <= high

    def single_tcp_port(self) -> int | None:
        """The one TCP port it opens, or None when it opens a range or another protocol."""
        if self.protocol in TCP and self.from_port is not None and self.from_port == self.to_port:
            return int(self.from_port)
        return None


def _cidrs(*values: Any) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            found.append(value)
        else:
            found.extend(v for v in items(value) if isinstance(v, str))
    return tuple(found)


def ingresses(typ: str, props: Mapping[str, Any]) -> Iterator[Ingress]:
    """Every ingress permission a security group, a group rule or a VPC ingress rule declares.

    The three shapes (pulumi_aws docstrings: ec2.SecurityGroup `ingress`, ec2.SecurityGroupRule
    `type`/`cidr_blocks`, vpc.SecurityGroupIngressRule `ip_protocol`/`cidr_ipv4`) say the same thing.
    """
    if typ == t.SECURITY_GROUP:
        for i, rule in enumerate(items(props.get("ingress"))):
            yield Ingress(
                protocol=str(rule.get("protocol", "")).lower(),
                from_port=number(rule.get("fromPort")),
                to_port=number(rule.get("toPort")),
                cidrs=_cidrs(rule.get("cidrBlocks"), rule.get("ipv6CidrBlocks")),
                label=f"ingress[{i}] ({rule.get('description') or 'no description'})",
            )
    elif typ == t.SECURITY_GROUP_RULE:
        if props.get("type") == "ingress":
            yield Ingress(
                protocol=str(props.get("protocol", "")).lower(),
                from_port=number(props.get("fromPort")),
                to_port=number(props.get("toPort")),
                cidrs=_cidrs(props.get("cidrBlocks"), props.get("ipv6CidrBlocks")),
                label="this rule",
            )
    elif typ == t.INGRESS_RULE:
        yield Ingress(
            protocol=str(props.get("ipProtocol", "")).lower(),
            from_port=number(props.get("fromPort")),
            to_port=number(props.get("toPort")),
            cidrs=_cidrs(props.get("cidrIpv4"), props.get("cidrIpv6")),
            label="this rule",
        )


INGRESS_TYPES = (t.SECURITY_GROUP, t.SECURITY_GROUP_RULE, t.INGRESS_RULE)


def _no_ssh(typ: str, props: Mapping[str, Any], _config: Mapping[str, Any]) -> Iterator[str]:
    for ingress in ingresses(typ, props):
        if ingress.admits(SSH_PORT):
            yield f"{ingress.label} admits port 22 (SSH) from {', '.join(ingress.cidrs) or 'another group'}."


NO_SSH = ResourceRule(
    name="no-ssh-ingress",
    description="No security group lets anything in on port 22 (SSH): instances are reached through "
    "Session Manager, never a shell port.",
    remediation="Remove the ingress that opens port 22 (or every port); use `aws ssm start-session` "
    "(docs/deploy.md) to reach an instance.",
    level=MANDATORY,
    types=INGRESS_TYPES,
    check=_no_ssh,
)


def _world_ingress(typ: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    allowed = {int(p) for p in config["publicPorts"]}
    stack = config[STACK_CONFIG]
    app_port = number(stack.get(APP_PORT_KEY))
    if app_port is not None and stack.get(MODE_KEY, "single") == "single":
        # the one server serves the stack's app port to allowedCidrs; a fleet's instances never do
        allowed.add(int(app_port))
    for ingress in ingresses(typ, props):
        world = sorted(WORLD.intersection(ingress.cidrs))
        if not world:
            continue
        port = ingress.single_tcp_port()
        if port is None:
            yield (
                f"{ingress.label} opens protocol {ingress.protocol or '?'} ports "
                f"{ingress.from_port}-{ingress.to_port} to {', '.join(world)}; "
                "only single TCP ports may be public."
            )
        elif port not in allowed:
            yield (
                f"{ingress.label} opens TCP {port} to {', '.join(world)}; the public ports are "
                f"{sorted(allowed)} (policy setting publicPorts)."
            )


WORLD_INGRESS = ResourceRule(
    name="world-ingress-app-port-only",
    description="Ingress from anywhere (0.0.0.0/0 or ::/0) is one TCP port the service answers on "
    "(the app port in single mode, 80/443 on the load balancer), nothing else.",
    remediation="Narrow the rule's source (allowedCidrs) or its port. In single mode the stack's "
    "appPort is public by design (read from the stack's config); another port goes in this policy's "
    "publicPorts setting.",
    level=MANDATORY,
    types=INGRESS_TYPES,
    check=_world_ingress,
    config={
        "publicPorts": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": 65535},
            "default": [80, 443],
            "description": "TCP ports that may be open to the whole internet.",
        }
    },
)


def _default_group_closed(_typ: str, props: Mapping[str, Any], _config: Mapping[str, Any]) -> Iterator[str]:
    for direction in ("ingress", "egress"):
        if items(props.get(direction)):
            yield f"the VPC's default security group has {direction} rules; it must have none."


DEFAULT_GROUP_CLOSED = ResourceRule(
    name="default-security-group-closed",
    description="The VPC's default security group admits and sends nothing, so a resource created "
    "without a group of its own is cut off rather than open.",
    remediation="Adopt the default group with aws.ec2.DefaultSecurityGroup and give it no ingress or "
    "egress (infra/network.py).",
    level=MANDATORY,
    types=(t.DEFAULT_SECURITY_GROUP,),
    check=_default_group_closed,
)


def _flow_logs(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterator[Violation]:
    logs = list(of_type(resources, t.FLOW_LOG))
    for vpc in of_type(resources, t.VPC):
        mine = [log for log in logs if depends_on(log, vpc)]
        if not mine:
            yield Violation(f"VPC {vpc.name} has no flow log.", vpc.urn)
        elif not any(str(log.props.get("trafficType", "")).upper() == "ALL" for log in mine):
            yield Violation(
                f"VPC {vpc.name}'s flow logs do not record ALL traffic (accepted and rejected).", vpc.urn
            )


FLOW_LOGS = StackRule(
    name="vpc-flow-logs",
    description="Every VPC records its accepted and rejected traffic (a flow log with traffic type ALL), "
    "so what a narrowed allowedCidrs refuses can be seen.",
    remediation="Keep the stack setting flowLogs true; a stack that turns them off on purpose disables "
    "this policy in its policy config (docs/deploy.md).",
    level=ADVISORY,
    types=(t.VPC, t.FLOW_LOG),
    check=_flow_logs,
)


def _public_instance_in_fleet(
    resources: Sequence[Resource], _config: Mapping[str, Any]
) -> Iterator[Violation]:
    if not any(of_type(resources, t.AUTOSCALING_GROUP)):
        return  # single mode: the one server is public by design, behind its Elastic IP
    for template in of_type(resources, t.LAUNCH_TEMPLATE):
        interfaces = items(template.props.get("networkInterfaces"))
        if not interfaces:
            yield Violation(
                f"launch template {template.name} declares no network interface, so the subnet decides "
                "whether fleet instances get a public IP.",
                template.urn,
            )
        for i, interface in enumerate(interfaces):
            value = interface.get("associatePublicIpAddress")
            if str(value).lower() != "false":
                yield Violation(
                    f"launch template {template.name} networkInterfaces[{i}] associatePublicIpAddress is "
                    f"{value!r}; fleet instances must get none.",
                    template.urn,
                )
    for instance in of_type(resources, t.INSTANCE):
        if str(instance.props.get("associatePublicIpAddress")).lower() == "true":
            yield Violation(f"instance {instance.name} gets a public IP in fleet mode.", instance.urn)
    for association in of_type(resources, t.EIP_ASSOCIATION):
        yield Violation(f"Elastic IP association {association.name} in fleet mode.", association.urn)


NO_PUBLIC_INSTANCE_IN_FLEET = StackRule(
    name="no-public-instance-in-fleet",
    description="In fleet mode (an Auto Scaling group) no instance has a public IP address: the load "
    "balancer is the only way in.",
    remediation="Set associate_public_ip_address 'false' on the launch template's network interface "
    "(infra/fleet.py) and attach no Elastic IP.",
    level=MANDATORY,
    types=(t.LAUNCH_TEMPLATE, t.AUTOSCALING_GROUP),
    check=_public_instance_in_fleet,
)

RULES = (NO_SSH, WORLD_INGRESS, DEFAULT_GROUP_CLOSED, FLOW_LOGS, NO_PUBLIC_INSTANCE_IN_FLEET)
