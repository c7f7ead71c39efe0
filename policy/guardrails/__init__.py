"""The stack's guardrails: every rule of the policy pack, and the classification of every resource type.

A type is either judged by a rule (`checked_types`) or listed in UNCHECKED with the reason no rule
judges it. The `known-resource-types` rule names any other type the program registers, and
tests/policy fails on one, so a new kind of resource cannot arrive without a decision about it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import compute, network, storage
from .model import ADVISORY, MANDATORY, Resource, ResourceRule, Rule, StackRule, Violation

# Types that are structure, not cloud resources: the stack, providers, this project's components
# (their children are judged one by one).
STRUCTURAL_PREFIXES = ("pulumi:pulumi:", "pulumi:providers:", "cali:")

_LOGS = "holds logs/metrics only; retention is the program's setting and CloudWatch encrypts at rest"
_IAM = "least privilege is pinned by the program's tests (tests/infra, tests/account), not re-judged here"
_PLUMBING = "network plumbing with no access or data decision of its own"
_SETTING = "a bucket setting with no invariant of its own in this pack"
UNCHECKED: Mapping[str, str] = {
    "aws:cloudwatch/logGroup:LogGroup": _LOGS,
    "aws:cloudwatch/dashboard:Dashboard": _LOGS,
    "aws:cloudwatch/metricAlarm:MetricAlarm": "an alarm reads metrics; it grants and stores nothing",
    "aws:sns/topic:Topic": "the alarm topic; encrypted with the stack's key by the program (tests/infra)",
    "aws:sns/topicPolicy:TopicPolicy": _IAM,
    "aws:sns/topicSubscription:TopicSubscription": "an e-mail address AWS confirms first",
    "aws:kms/key:Key": "the alarm topic's key; its policy is the program's and its tests'",
    "aws:iam/role:Role": _IAM,
    "aws:iam/rolePolicy:RolePolicy": _IAM,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _IAM,
    "aws:iam/instanceProfile:InstanceProfile": _IAM,
    "aws:iam/policy:Policy": _IAM,
    "aws:ec2/eip:Eip": "an address; what it reaches is judged by readiness-gate-before-address",
    "aws:ec2/internetGateway:InternetGateway": _PLUMBING,
    "aws:ec2/routeTable:RouteTable": _PLUMBING,
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _PLUMBING,
    "aws:ec2/subnet:Subnet": "fleet instances' public IP is judged on the launch template, not the subnet",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "reached only through its own security group (judged)",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "outbound only; ingress is what is judged",
    "aws:lb/listener:Listener": "forwards to the target group whose health check is judged",
    "aws:lb/listenerRule:ListenerRule": "forwards to a target group whose health check is judged",
    "aws:acm/certificate:Certificate": "DNS-validated by AWS; nothing to misconfigure into exposure",
    "aws:acm/certificateValidation:CertificateValidation": "a wait, no resource of its own",
    "aws:route53/record:Record": "a name; the address behind it is judged",
    "aws:autoscaling/policy:Policy": "target tracking within the group's bounds (fleet-size-limit)",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "expires old images; tags stay immutable (judged)",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _SETTING,
    "aws:s3/bucketPolicy:BucketPolicy": "TLS-only and log-delivery statements are pinned by tests/infra",
    "aws:s3/bucketVersioning:BucketVersioning": _SETTING,
    "aws:s3/bucketVersioningV2:BucketVersioningV2": _SETTING,
    "docker-build:index:Image": "proven by the container tests; pushed to a judged repository",
}

RESOURCE_RULES: tuple[ResourceRule, ...] = tuple(
    r for r in (*network.RULES, *compute.RULES, *storage.RULES) if isinstance(r, ResourceRule)
)
_STACK_RULES: tuple[StackRule, ...] = tuple(
    r for r in (*network.RULES, *compute.RULES, *storage.RULES) if isinstance(r, StackRule)
)


def checked_types() -> frozenset[str]:
    """Every type some rule judges."""
    return frozenset(typ for rule in (*RESOURCE_RULES, *_STACK_RULES) for typ in rule.types)


def classified(typ: str) -> bool:
    """Whether the pack has decided about a type: judged, deliberately unchecked, or structure."""
    return typ in checked_types() or typ in UNCHECKED or typ.startswith(STRUCTURAL_PREFIXES)


def _unknown_types(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterator[Violation]:
    seen: set[str] = set()
    for resource in resources:
        if resource.typ not in seen and not classified(resource.typ):
            seen.add(resource.typ)
            yield Violation(
                f"{resource.typ} ({resource.name}) is a type this pack neither judges nor lists "
                "as unchecked.",
                resource.urn,
            )


KNOWN_TYPES = StackRule(
    name="known-resource-types",
    description="Every resource type in the stack is one the policy pack has classified: judged by a "
    "policy, or listed as deliberately unchecked with a reason.",
    remediation="Add a policy for the new type in policy/guardrails/, or list it in UNCHECKED there "
    "with the reason it needs none.",
    level=ADVISORY,
    check=_unknown_types,
)

STACK_RULES: tuple[StackRule, ...] = (*_STACK_RULES, KNOWN_TYPES)
ALL_RULES: tuple[Rule, ...] = (*RESOURCE_RULES, *STACK_RULES)

__all__ = [
    "ADVISORY",
    "ALL_RULES",
    "MANDATORY",
    "RESOURCE_RULES",
    "STACK_RULES",
    "UNCHECKED",
    "Resource",
    "ResourceRule",
    "StackRule",
    "Violation",
    "checked_types",
    "classified",
]
