"""The pack served from its own venv, as the CLI starts it, and asked over gRPC what the engine asks.

The language host runs `python -u -m pulumi.policy <engine> <pack directory>` in the venv
PulumiPolicy.yaml names (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go, RunPlugin),
and the pack prints the port it serves the Analyzer service on. This test does the same with
policy/.venv (`make dev` makes it) and plays the engine's part with the program's own resources
from the mocks: GetAnalyzerInfo, Analyze on each resource's inputs, AnalyzeStack on the whole stack,
and both again as a first deploy's preview sends them, with the values no provider has computed yet
unknown. It also pins the venv's lock (policy/constraints.txt, applied by policy/requirements.txt).
Without policy/.venv its tests are reported skipped, and fail under CALI_REQUIRE_ALL_GROUPS=1 (as CI
sets). What it cannot stand in for is the engine itself: that takes the Pulumi CLI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import guardrails
import pytest
from google.protobuf import empty_pb2, struct_pb2
from guardrails import tokens as t
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi.runtime.rpc import UNKNOWN

from testkit.processes import stop
from tests.infra.conftest import Deployment, Registered, cli_config, run_program
from tests.policy.conftest import PACK

PACK_PYTHON = PACK / ".venv" / "bin" / "python"
REQUIREMENTS = PACK / "requirements.txt"
LOCK = PACK / "constraints.txt"
# The stack's config as the language host passes it to a Python pack (PULUMI_CONFIG, main.go RunPlugin).
STACK_CONFIG = cli_config("prod", appPort=8080)
# Outputs the provider's Check assigns (autonames), so a preview already knows them.
AUTONAMES = frozenset({"name", "bucket"})


def _require_pack_venv() -> None:
    """Skip without policy/.venv, or fail when CALI_REQUIRE_ALL_GROUPS=1 forbids skipping."""
    if not PACK_PYTHON.exists():
        why = "no policy/.venv (make dev makes it from policy/requirements.txt)"
        if os.environ.get("CALI_REQUIRE_ALL_GROUPS") == "1":
            pytest.fail(f"{why}; CALI_REQUIRE_ALL_GROUPS=1 forbids skipping it", pytrace=False)
        pytest.skip(why)


def _pins(lines: list[str]) -> dict[str, str]:
    """{normalized name: version} of `name==version` lines (PEP 503 names: pip freeze writes `_`)."""
    pins = {}
    for line in lines:
        pin = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert pin, f"{line!r} is not an exact pin"
        pins[re.sub(r"[-_.]+", "-", pin[1]).lower()] = pin[2]
    return pins


def _lines(path: Path) -> list[str]:
    """A requirements file's lines, without comments and blank lines."""
    return [x for x in path.read_text().splitlines() if x and not x.startswith("#")]


def test_the_pack_requirements_apply_the_lock_and_pin_each_package_as_the_lock_does() -> None:
    # `-c` inside the file: Make, CI's pulumi-setup action and a laptop all run `pip install -r
    # policy/requirements.txt`, and pip reads the nested file relative to the one naming it.
    first, *requirements = _lines(REQUIREMENTS)
    assert first == "-c constraints.txt"
    lock = _pins(_lines(LOCK))
    top = _pins(requirements)
    assert {name: lock.get(name) for name in top} == top
    assert {"pulumi-policy", "pulumi", "protobuf", "grpcio"} <= set(top)
    assert len(lock) > len(top)  # the transitive ones (opentelemetry, semver, ...) are locked too


def test_the_pack_venv_holds_exactly_the_locked_versions() -> None:
    _require_pack_venv()
    freeze = subprocess.run(
        [str(PACK_PYTHON), "-m", "pip", "freeze", "--all", "--exclude", "pip", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert _pins(freeze.stdout.splitlines()) == _pins(_lines(LOCK))


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """An Analyzer client to the pack, started from policy/.venv as the language host starts it."""
    _require_pack_venv()
    # The engine address is only passed on; nothing here dials it.
    proc = subprocess.Popen(
        [str(PACK_PYTHON), "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=PACK,
        env={**os.environ, "PULUMI_CONFIG": json.dumps(STACK_CONFIG)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), (
            f"the pack printed {port!r}, stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        stop(proc, grace_s=5)


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(props)
    return message


def _inputs(r: Registered) -> dict[str, Any]:
    """What the engine's Analyze call carries: the resource's inputs (step_generator.go), not its outputs.

    `Registered.inputs` is the mock provider's state (inputs and computed outputs); `raw` holds the
    keys the program itself sent.
    """
    return {k: v for k, v in r.inputs.items() if k in r.raw}


def _analyze(r: Registered, props: dict[str, Any]) -> proto.AnalyzeRequest:
    return proto.AnalyzeRequest(type=r.typ, properties=_struct(props), urn=r.urn, name=r.name)


def _stack(
    deployment: Deployment, props: dict[str, dict[str, Any]] | None = None, drop: str = ""
) -> proto.AnalyzeStackRequest:
    """AnalyzeStack as the engine sends it: every resource's outputs and dependencies (`drop` removed)."""
    return proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                urn=r.urn,
                type=r.typ,
                name=r.name,
                properties=_struct(r.inputs if props is None else props[r.urn]),
                dependencies=[d for d in r.dependencies if d != drop],
            )
            for r in deployment.resources
        ]
    )


def test_every_rule_becomes_one_policy_with_its_level_and_config_schema(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "cali-housing-guardrails"
    by_name = {p.name: p for p in info.policies}
    assert len(info.policies) == len(guardrails.ALL_RULES)
    assert set(by_name) == {r.name for r in guardrails.ALL_RULES}
    for rule in guardrails.ALL_RULES:
        level = proto.MANDATORY if rule.level == guardrails.MANDATORY else proto.ADVISORY
        assert by_name[rule.name].enforcementLevel == level, rule.name
        assert by_name[rule.name].remediation_steps == rule.remediation, rule.name
        assert set(by_name[rule.name].configSchema.properties) == set(rule.config), rule.name


def test_the_pack_reports_a_hop_limit_of_2_and_passes_the_programs_instance(
    analyzer: Any, prod: Deployment
) -> None:
    instance = prod.one(t.INSTANCE)

    def analyze(props: dict[str, Any]) -> list[tuple[str, int]]:
        found = analyzer.Analyze(_analyze(instance, props)).diagnostics
        return [(d.policyName, d.enforcementLevel) for d in found]

    assert analyze(_inputs(instance)) == []
    hop_2 = {
        **_inputs(instance),
        "metadataOptions": {**instance.inputs["metadataOptions"], "httpPutResponseHopLimit": 2},
    }
    assert analyze(hop_2) == [("imdsv2-hop-limit-1", proto.MANDATORY)]


def test_the_pack_reads_the_stacks_app_port_from_the_config_the_cli_passes(analyzer: Any) -> None:
    group = run_program(STACK_CONFIG).named(t.SECURITY_GROUP, "cali-sg")
    assert group.inputs["ingress"][0]["toPort"] == 8080
    assert list(analyzer.Analyze(_analyze(group, _inputs(group))).diagnostics) == []


def test_the_engines_analyze_stack_call_follows_dependencies_to_the_gate(
    analyzer: Any, prod: Deployment
) -> None:
    gate = prod.named(t.DYNAMIC, "cali-ready").urn
    assert list(analyzer.AnalyzeStack(_stack(prod)).diagnostics) == []
    found = analyzer.AnalyzeStack(_stack(prod, drop=gate)).diagnostics
    assert [(d.policyName, d.urn, d.enforcementLevel) for d in found] == [
        ("readiness-gate-before-address", prod.one(t.EIP_ASSOCIATION).urn, proto.MANDATORY)
    ]


def _computed_keys(r: Registered) -> set[str]:
    """The outputs `r`'s provider computes on create, so a first deploy's preview does not know them.

    They are the state's keys the program did not send (arn, addresses, digests, versions), less the
    autonames. An adopted resource (`import_`) is read during the preview, and a component has no
    provider: of those, everything is known.
    """
    if not r.custom or r.import_id:
        return set()
    return {k for k in r.inputs if k not in r.raw and k not in AUTONAMES}


def _computed(r: Registered) -> set[Any]:
    """The values a first deploy's preview does not know of `r`: its id and its computed outputs.

    The mocks name a new resource `<name>-id` (tests/infra/conftest.py, RecordingMocks.new_resource).
    """
    if not r.custom or r.import_id:
        return set()
    values = (r.inputs[k] for k in _computed_keys(r))
    return {
        f"{r.name}-id",
        *(v for v in values if isinstance(v, str | int | float) and not isinstance(v, bool)),
    }


def _unknown_where(value: Any, unknown: set[Any]) -> Any:
    """`value` with every leaf made from an unknown replaced by the wire's unknown sentinel.

    A string an Output built from an unknown (an id, `f"{arn}/*"`, a JSON policy naming an arn) is
    unknown as a whole; a list or object keeps its known members. The Python SDK sends every unknown
    as pulumi.runtime.rpc.UNKNOWN, the engine reads it back as an unknown string and marshals it to
    an analyzer as the same sentinel (pulumi/pulumi sdk/go/common/resource/plugin/rpc.go,
    marshalUnknownProperty; analyzer_plugin.go marshals with KeepUnknowns), which pulumi_policy's
    proxy raises UnknownValueError on when a policy reads it (pulumi_policy/proxy.py).
    """
    if isinstance(value, dict):
        return {k: _unknown_where(v, unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknown_where(v, unknown) for v in value]
    if isinstance(value, str) and any(u in value if isinstance(u, str) else value == str(u) for u in unknown):
        return UNKNOWN  # an unknown, or an unknown number made a string (the rollout's template version)
    if isinstance(value, int | float) and not isinstance(value, bool) and value in unknown:
        return UNKNOWN
    return value


def _as_in_a_first_preview(deployment: Deployment, r: Registered, props: dict[str, Any]) -> dict[str, Any]:
    """`props` of `r` as a first deploy's preview sends them.

    What `r` reads of other resources' computed values (its property dependencies) is unknown, and
    so are its own computed outputs (in `props` only when they are AnalyzeStack's outputs).
    """
    by_urn = {d.urn: d for d in deployment.resources}
    own = _computed_keys(r)
    out = {}
    for key, value in props.items():
        reads = r.property_dependencies.get(key, [])
        unknown = set().union(*(_computed(by_urn[u]) for u in reads if u in by_urn))
        out[key] = UNKNOWN if key in own else _unknown_where(value, unknown)
    return out


def _count_unknowns(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_count_unknowns(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_unknowns(v) for v in value)
    return int(value == UNKNOWN)


def test_the_pack_reads_the_wires_unknown_sentinel_as_a_value_a_preview_cannot_know(
    analyzer: Any, prod: Deployment
) -> None:
    # Guards the next test: were the sentinel an ordinary string to the pack, a preview would pass
    # vacuously. A policy that reads it is reported as unable to run, an advisory note.
    instance = prod.one(t.INSTANCE)
    found = analyzer.Analyze(_analyze(instance, {**_inputs(instance), "metadataOptions": UNKNOWN}))
    assert [(d.policyName, d.enforcementLevel) for d in found.diagnostics] == [
        ("imdsv2-hop-limit-1", proto.ADVISORY)
    ]
    assert "can't run policy 'imdsv2-hop-limit-1'" in found.diagnostics[0].message
    assert "during preview" in found.diagnostics[0].message


@pytest.mark.parametrize("mode", ["prod", "fleet"])
def test_a_first_deploys_preview_with_unknown_ids_runs_every_policy_without_a_violation(
    analyzer: Any, request: pytest.FixtureRequest, mode: str
) -> None:
    deployment: Deployment = request.getfixturevalue(mode)
    inputs = {r.urn: _as_in_a_first_preview(deployment, r, _inputs(r)) for r in deployment.resources}
    outputs = {r.urn: _as_in_a_first_preview(deployment, r, r.inputs) for r in deployment.resources}
    # The requests are a preview's: the instance (or launch template) reads other resources' ids
    # unknown, and AnalyzeStack's outputs add each new resource's own computed ones.
    compute = deployment.one(t.INSTANCE if mode == "prod" else t.LAUNCH_TEMPLATE)
    assert _count_unknowns(inputs[compute.urn]) > 0
    in_inputs, in_outputs = (sum(map(_count_unknowns, p.values())) for p in (inputs, outputs))
    assert in_outputs > in_inputs

    notes = list(analyzer.AnalyzeStack(_stack(deployment, outputs)).diagnostics)
    for r in deployment.resources:
        notes += analyzer.Analyze(_analyze(r, inputs[r.urn])).diagnostics
    # A policy that read an unknown would leave an advisory "can't run ... during preview" note (the
    # test above); the rules read no id or computed output, so every one runs, and passes.
    assert [(d.policyName, d.message) for d in notes] == []
