"""policy/__main__.py's wrapping, driven through pulumi_policy's own analyzer servicer.

pulumi-policy is not in the project's venv (it pins protobuf 5; the program's SDK runs on protobuf 6),
so this module runs only where it is importable: in the pack's own venv (policy/.venv, made from
policy/requirements.txt) with the test tools beside it, or a venv given pulumi-policy with
`pip install --no-deps` (docs/deploy.md, Policy pack). Elsewhere pytest reports it skipped, by name.
The servicer is the class the CLI's gRPC calls reach (pulumi_policy/policy.py, _PolicyAnalyzerServicer):
calling its Analyze/AnalyzeStack directly is what the engine does, without the engine.
"""

from __future__ import annotations

import runpy
from typing import Any

import guardrails
import pytest
from google.protobuf import struct_pb2
from guardrails import tokens as t

from tests.infra.conftest import Deployment
from tests.policy.conftest import PACK

pulumi_policy = pytest.importorskip("pulumi_policy", reason="pulumi-policy lives in the pack's own venv")
policy_module = pytest.importorskip("pulumi_policy.policy")
from pulumi.runtime import proto  # noqa: E402 - after the skip: only meaningful with pulumi_policy


@pytest.fixture(scope="module")
def pack() -> dict[str, Any]:
    """__main__.py's namespace, loaded without serving (its PolicyPack call is under __main__)."""
    return runpy.run_path(str(PACK / "__main__.py"), run_name="pack_under_test")


@pytest.fixture(scope="module")
def servicer(pack: dict[str, Any]) -> Any:
    return policy_module._PolicyAnalyzerServicer(
        pack["PACK_NAME"], "0.1.0", pack["policies"](), pulumi_policy.EnforcementLevel.ADVISORY
    )


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(props)
    return message


def test_every_rule_becomes_one_policy_with_its_level_and_config_schema(servicer: Any) -> None:
    info = servicer.GetAnalyzerInfo(None, None)
    by_name = {p.name: p for p in info.policies}
    assert set(by_name) == {r.name for r in guardrails.ALL_RULES}
    for rule in guardrails.ALL_RULES:
        level = proto.MANDATORY if rule.level == guardrails.MANDATORY else proto.ADVISORY
        assert by_name[rule.name].enforcementLevel == level, rule.name
        assert by_name[rule.name].remediation_steps == rule.remediation
        assert set(by_name[rule.name].configSchema.properties) == set(rule.config), rule.name


def test_the_engines_analyze_call_reports_a_hop_limit_of_2(servicer: Any, prod: Deployment) -> None:
    instance = prod.one(t.INSTANCE)
    props = {
        **instance.inputs,
        "metadataOptions": {**instance.inputs["metadataOptions"], "httpPutResponseHopLimit": 2},
    }
    request = proto.AnalyzeRequest(
        type=instance.typ, properties=_struct(props), urn=instance.urn, name=instance.name
    )
    found = [(d.policyName, d.enforcementLevel) for d in servicer.Analyze(request, None).diagnostics]
    assert found == [("imdsv2-hop-limit-1", proto.MANDATORY)]


def test_the_engines_analyze_call_passes_the_programs_instance(servicer: Any, prod: Deployment) -> None:
    instance = prod.one(t.INSTANCE)
    request = proto.AnalyzeRequest(
        type=instance.typ, properties=_struct(instance.inputs), urn=instance.urn, name=instance.name
    )
    assert list(servicer.Analyze(request, None).diagnostics) == []


def test_the_engines_analyze_stack_call_follows_dependencies_to_the_gate(
    servicer: Any, prod: Deployment
) -> None:
    gate = prod.named(t.DYNAMIC, "cali-ready").urn

    def request(drop_gate: bool) -> Any:
        return proto.AnalyzeStackRequest(
            resources=[
                proto.AnalyzerResource(
                    urn=r.urn,
                    type=r.typ,
                    name=r.name,
                    properties=_struct(r.inputs),
                    dependencies=[d for d in r.dependencies if not (drop_gate and d == gate)],
                )
                for r in prod.resources
            ]
        )

    assert list(servicer.AnalyzeStack(request(False), None).diagnostics) == []
    found = [(d.policyName, d.urn) for d in servicer.AnalyzeStack(request(True), None).diagnostics]
    assert found == [("readiness-gate-before-address", prod.one(t.EIP_ASSOCIATION).urn)]


UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi_policy/proxy.py UNKNOWN_STRING_VALUE


def _as_in_a_preview(value: Any) -> Any:
    """Every other resource's id unknown, as in the preview of a first deploy (the mocks' ids end in -id)."""
    if isinstance(value, dict):
        return {k: _as_in_a_preview(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_in_a_preview(v) for v in value]
    return UNKNOWN_STRING if isinstance(value, str) and value.endswith("-id") else value


@pytest.mark.parametrize("mode", ["prod", "fleet"])
def test_a_first_deploys_preview_with_unknown_ids_runs_every_policy_without_a_violation(
    servicer: Any, request: pytest.FixtureRequest, mode: str
) -> None:
    deployment: Deployment = request.getfixturevalue(mode)
    stack = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                urn=r.urn,
                type=r.typ,
                name=r.name,
                properties=_struct(_as_in_a_preview(r.inputs)),
                dependencies=r.dependencies,
            )
            for r in deployment.resources
        ]
    )
    notes = list(servicer.AnalyzeStack(stack, None).diagnostics)
    for r in deployment.resources:
        analyze = proto.AnalyzeRequest(
            type=r.typ, properties=_struct(_as_in_a_preview(r.inputs)), urn=r.urn, name=r.name
        )
        notes += servicer.Analyze(analyze, None).diagnostics
    # the SDK turns a policy that reads an unknown value into an advisory "can't run during preview"
    # note (pulumi_policy/policy.py, Analyze); the rules read no id, so every one runs, and passes
    assert [(d.policyName, d.message) for d in notes] == []
