"""The pack served from its own venv, as the CLI starts it, and asked over gRPC what the engine asks.

The language host runs `python -u -m pulumi.policy <engine> <pack directory>` in the venv
PulumiPolicy.yaml names (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go, RunPlugin),
and the pack prints the port it serves the Analyzer service on. This test does the same with
policy/.venv (`make dev` makes it) and plays the engine's part: GetAnalyzerInfo, then Analyze on
the program's own instance and on one with hop limit 2. Without policy/.venv it is reported
skipped, and fails under CALI_REQUIRE_ALL_GROUPS=1 (as CI sets). What it cannot stand in for is the
engine itself: that takes the Pulumi CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import guardrails
import pytest
from google.protobuf import empty_pb2, struct_pb2
from guardrails import tokens as t
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

from testkit.processes import stop
from tests.infra.conftest import Deployment, cli_config, run_program
from tests.policy.conftest import PACK

PACK_PYTHON = PACK / ".venv" / "bin" / "python"
# The stack's config as the language host passes it to a Python pack (PULUMI_CONFIG, main.go RunPlugin).
STACK_CONFIG = cli_config("prod", appPort=8080)


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """An Analyzer client to the pack, started from policy/.venv as the language host starts it."""
    if not PACK_PYTHON.exists():
        why = "no policy/.venv (make dev makes it from policy/requirements.txt)"
        if os.environ.get("CALI_REQUIRE_ALL_GROUPS") == "1":
            pytest.fail(f"{why}; CALI_REQUIRE_ALL_GROUPS=1 forbids skipping it", pytrace=False)
        pytest.skip(why)
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


def test_the_pack_names_every_rule_to_the_engine(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "cali-housing-guardrails"
    assert sorted(p.name for p in info.policies) == sorted(r.name for r in guardrails.ALL_RULES)


def test_the_pack_reports_a_hop_limit_of_2_and_passes_the_programs_instance(
    analyzer: Any, prod: Deployment
) -> None:
    instance = prod.one(t.INSTANCE)

    def analyze(props: dict[str, Any]) -> list[tuple[str, int]]:
        request = proto.AnalyzeRequest(
            type=instance.typ, properties=_struct(props), urn=instance.urn, name="x"
        )
        return [(d.policyName, d.enforcementLevel) for d in analyzer.Analyze(request).diagnostics]

    assert analyze(instance.inputs) == []
    hop_2 = {
        **instance.inputs,
        "metadataOptions": {**instance.inputs["metadataOptions"], "httpPutResponseHopLimit": 2},
    }
    assert analyze(hop_2) == [("imdsv2-hop-limit-1", proto.MANDATORY)]


def test_the_pack_reads_the_stacks_app_port_from_the_config_the_cli_passes(analyzer: Any) -> None:
    group = run_program(STACK_CONFIG).named(t.SECURITY_GROUP, "cali-sg")
    assert group.inputs["ingress"][0]["toPort"] == 8080
    request = proto.AnalyzeRequest(type=group.typ, properties=_struct(group.inputs), urn=group.urn, name="x")
    assert list(analyzer.Analyze(request).diagnostics) == []
