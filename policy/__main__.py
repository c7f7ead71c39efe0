"""The policy pack the Pulumi CLI runs (`pulumi preview --policy-pack policy`).

The CLI starts it as `python -u -m pulumi.policy <engine> <this directory>`, which runs this file
with the directory on sys.path (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go,
RunPlugin; sdk/python/lib/pulumi/policy/__main__.py), in the virtualenv PulumiPolicy.yaml names,
made from requirements.txt. The rules are plain functions in guardrails/; this file only wraps each
in the pulumi_policy class the engine speaks to, so it holds no invariant of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

import guardrails
import pulumi.runtime
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "cali-housing-guardrails"
_LEVELS: Mapping[str, EnforcementLevel] = {
    guardrails.MANDATORY: EnforcementLevel.MANDATORY,
    guardrails.ADVISORY: EnforcementLevel.ADVISORY,
}


def _schema(rule: guardrails.Rule) -> PolicyConfigSchema | None:
    # The engine fills each property's default in before Configure (pkg/resource/analyzer/config.go,
    # createConfigWithDefaults); Rule.settings applies the same defaults again, so tests agree.
    return PolicyConfigSchema(properties=dict(rule.config)) if rule.config else None


def _described(rule: guardrails.Rule) -> dict[str, object]:
    """What both kinds of policy say of a rule: its name, words, level, settings and remediation."""
    return {
        "name": rule.name,
        "description": rule.description,
        "enforcement_level": _LEVELS[rule.level],
        "config_schema": _schema(rule),
        "remediation_steps": rule.remediation,
    }


def resource_policy(rule: guardrails.ResourceRule) -> ResourceValidationPolicy:
    """A rule judging one resource, as the engine's Analyze call runs it."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        # The stack's config, which pulumi.policy's entry point read from PULUMI_CONFIG.
        stack = pulumi.runtime.get_config_env()
        for message in rule.validate(args.resource_type, args.props, args.get_config(), stack):
            report_violation(message, None)

    return ResourceValidationPolicy(validate=validate, **_described(rule))


def stack_policy(rule: guardrails.StackRule) -> StackValidationPolicy:
    """A rule judging the whole stack, as the engine's AnalyzeStack call runs it."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        # PolicyResource.dependencies holds the resources (not URNs) the engine named in
        # AnalyzerResource.dependencies (proto/pulumi/analyzer.proto).
        resources = [
            guardrails.Resource(
                typ=r.resource_type,
                name=r.name,
                urn=r.urn,
                props=r.props,
                dependencies=tuple(d.urn for d in r.dependencies),
            )
            for r in args.resources
        ]
        for violation in rule.validate(resources, args.get_config()):
            report_violation(violation.message, violation.urn)

    return StackValidationPolicy(validate=validate, **_described(rule))


def policies() -> list[Policy]:
    """Every rule of guardrails/, as pulumi_policy policies."""
    return [
        *(resource_policy(rule) for rule in guardrails.RESOURCE_RULES),
        *(stack_policy(rule) for rule in guardrails.STACK_RULES),
    ]


if __name__ == "__main__":
    # PolicyPack serves the engine over gRPC and does not return.
    PolicyPack(
        name=PACK_NAME,
        policies=policies(),
        enforcement_level=EnforcementLevel.ADVISORY,
        description="cali-housing's security and cost invariants (docs/deploy.md, Policy pack).",
    )
