"""The readiness gate's decision, against real HTTP servers on loopback and a moto server for SSM and EC2.

The gate's inside is plain Python: `wait_until_ready(probe, expected)` with a probe that either GETs
/ready itself (`http_probe`) or runs PROBE_SCRIPT on the instance through SSM (`ssm_probe`). Here the
probes talk to real servers: a threaded HTTP server answering what a test sets, and the very shell
command SSM would run, run by bash with curl against that server. moto accepts `send_command` but
does not run it, so what it proves is the request path; only AWS proves the agent's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra import readiness
from infra.readiness import Expected, NotReady, Probe, http_probe, judge, parse_probe_output, wait_until_ready
from testkit.ports import free_port
from tests.infra.conftest import MotoServer

BUILD = {"model_version": "mv-1234abcd", "revision": "0123456789ab"}


class ReadyServer:
    """A real HTTP server on loopback whose /ready answers `status` and `body`, counting the requests."""

    def __init__(self) -> None:
        self.status = 503
        self.body: dict[str, object] = {"status": "loading"}
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                payload = json.dumps(owner.body).encode()
                self.send_response(owner.status if self.path == "/ready" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/ready"

    def serve(self, code: int, **body: object) -> None:
        """Answer /ready with this from now on."""
        self.status, self.body = code, body


@pytest.fixture
def server() -> Iterator[ReadyServer]:
    """A loopback server whose /ready is not ready yet (503)."""
    srv = ReadyServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


class FakeClock:
    """Monotonic time that moves only when the gate sleeps: the bound is checked without waiting it out."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait(probe, expected: Expected, clock: FakeClock, timeout_s: float = 900) -> Probe:
    return wait_until_ready(
        probe, expected, timeout_s=timeout_s, interval_s=10, clock=clock, sleep=clock.sleep
    )


# --- the decision, over real HTTP ------------------------------------------------------------------


def test_ready_with_the_expected_build_passes_at_once(server: ReadyServer) -> None:
    server.serve(200, status="ready", **BUILD)
    clock = FakeClock()
    seen = wait(lambda: http_probe(server.url), Expected(BUILD), clock)
    assert json.loads(seen.body)["model_version"] == BUILD["model_version"]
    assert server.hits == 1
    assert clock.now == 0


def test_a_server_that_becomes_ready_later_passes_once_it_is(server: ReadyServer) -> None:
    def probe() -> Probe:
        if server.hits == 3:  # the fourth look finds the model loaded
            server.serve(200, status="ready", **BUILD)
        return http_probe(server.url)

    wait(probe, Expected(BUILD), FakeClock())
    assert server.hits == 4


def test_never_ready_fails_with_the_reason_within_the_bound(server: ReadyServer) -> None:
    clock = FakeClock()
    with pytest.raises(NotReady) as failed:
        wait(lambda: http_probe(server.url), Expected(BUILD), clock, timeout_s=120)
    assert "/ready answered 503" in str(failed.value)
    assert "loading" in failed.value.reason
    assert failed.value.waited_s <= 120
    assert server.hits == 13  # at t = 0, 10, ..., 120 s: one look every 10 s, none past the bound


def test_ready_with_another_build_fails_naming_the_key(server: ReadyServer) -> None:
    server.serve(200, status="ready", model_version="mv-old", revision=BUILD["revision"])
    with pytest.raises(NotReady) as failed:
        wait(lambda: http_probe(server.url), Expected(BUILD), FakeClock(), timeout_s=60)
    assert "model_version='mv-old'" in failed.value.reason
    assert "another build" in failed.value.reason


def test_another_revision_fails_too(server: ReadyServer) -> None:
    server.serve(200, status="ready", model_version=BUILD["model_version"], revision="ffffffffffff")
    assert "revision='ffffffffffff'" in judge(http_probe(server.url), Expected(BUILD))


def test_nothing_listening_is_not_ready_with_the_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/ready"
    with pytest.raises(NotReady) as failed:
        wait(lambda: http_probe(url, timeout_s=2), Expected(BUILD), FakeClock(), timeout_s=30)
    assert "did not answer" in failed.value.reason


def test_without_expected_values_readiness_alone_passes(server: ReadyServer) -> None:
    server.serve(200, status="ready", model_version="anything")
    assert judge(http_probe(server.url), Expected({"model_version": "", "revision": ""})) is None


@pytest.mark.parametrize(
    ("probe", "says"),
    [
        (Probe(200, "<html>"), "not JSON"),
        (Probe(200, "[1, 2]"), "not an object"),
        (Probe(None, detail="refused"), "refused"),
    ],
)
def test_odd_answers_are_not_ready_and_say_why(probe: Probe, says: str) -> None:
    assert says in judge(probe, Expected(BUILD))


# --- the command SSM runs on the instance, run here by bash against the same real server -----------


def run_probe_script(port: int, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", "-c", readiness.probe_command(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=env,
    )
    return done.stdout


DEPLOYED = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cali-housing-prod@sha256:" + "5e" * 32


def docker_stand_in(tmp_path: Path, image: str) -> dict[str, str]:
    """PATH with a `docker` whose `inspect` of the app's container prints `image` (what Docker answers
    for a container started by digest: `.Config.Image` is the reference it was run with)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/bash\n"
        f'[[ "$1 ${{@: -1}}" == "inspect {readiness.CONTAINER_NAME}" ]] || exit 1\n'
        f"echo '{image}'\n"
    )
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_the_instance_side_command_reports_the_containers_image_and_the_gate_checks_it(
    server: ReadyServer, tmp_path: Path
) -> None:
    server.serve(200, status="ready", **BUILD)
    probe = parse_probe_output(run_probe_script(server.port, docker_stand_in(tmp_path, DEPLOYED)))
    assert probe.image == DEPLOYED
    assert json.loads(probe.body)["status"] == "ready"
    assert judge(probe, Expected(image=DEPLOYED)) is None


def test_a_ready_server_running_another_digest_is_not_ready(server: ReadyServer, tmp_path: Path) -> None:
    server.serve(200, status="ready", **BUILD)
    other = DEPLOYED.replace("5e" * 32, "77" * 32)
    probe = parse_probe_output(run_probe_script(server.port, docker_stand_in(tmp_path, other)))
    assert "another build is serving" in judge(probe, Expected(image=DEPLOYED))
    assert "no image" in judge(Probe(200, "{}"), Expected(image=DEPLOYED)), "no container at all"


def test_the_instance_side_command_reads_ready_and_the_gate_passes_on_it(server: ReadyServer) -> None:
    server.serve(200, status="ready", **BUILD)
    probe = parse_probe_output(run_probe_script(server.port))
    assert probe.status == 200
    assert judge(probe, Expected(BUILD)) is None


def test_the_instance_side_command_reports_a_503_and_another_build(server: ReadyServer) -> None:
    assert "answered 503" in judge(parse_probe_output(run_probe_script(server.port)), Expected(BUILD))
    server.serve(200, status="ready", model_version="mv-old")
    assert "another build" in judge(parse_probe_output(run_probe_script(server.port)), Expected(BUILD))


def test_the_instance_side_command_with_nothing_listening_is_no_answer() -> None:
    probe = parse_probe_output(run_probe_script(free_port()))
    assert probe.status is None
    assert "nothing listens" in probe.detail


# --- SSM and EC2 calls against moto ---------------------------------------------------------------


@pytest.fixture
def instance_id(aws_stand_in: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """One running instance in the stand-in account."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_stand_in.url)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small")["Instances"][0][
        "InstanceId"
    ]


def test_ssm_probe_sends_the_probe_script_to_the_instance(instance_id: str) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    probe = readiness.ssm_probe(ssm, instance_id, 80, sleep=lambda _s: None)
    # moto records the command but runs nothing, so its output is empty: no answer, not a pass
    assert probe.status is None
    sent = ssm.list_commands(InstanceId=instance_id)["Commands"]
    assert [c["DocumentName"] for c in sent] == ["AWS-RunShellScript"]
    assert sent[0]["Parameters"]["commands"] == [readiness.probe_command(80)]


def test_ssm_probe_on_an_unknown_instance_is_no_answer_not_an_error(instance_id: str) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    probe = readiness.ssm_probe(ssm, "i-0000000000000dead", 80, sleep=lambda _s: None)
    assert probe.status is None


def test_the_failure_carries_the_console_tail(instance_id: str) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    tail = readiness.console_tail(ec2, instance_id, lines=5)
    assert tail
    assert len(tail.splitlines()) <= 5
    failed = NotReady("/ready answered 503", 900, tail)
    assert "last lines of the boot log" in str(failed)
    assert tail in str(failed)


# --- a refused call stops the gate at once, naming the action (issue 24) ---------------------------


def _stubbed(service: str) -> tuple[Any, Any]:
    """A client of `service` and the Stubber that answers for it."""
    from botocore.stub import Stubber

    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")  # noqa: S106 - a stub
    return client, Stubber(client)


def test_a_refused_send_command_stops_the_gate_at_the_first_look_naming_the_action() -> None:
    # botocore's Stubber answers as SSM does when the policy lacks ssm:SendCommand; the gate must not
    # spend its 15 minutes retrying what no wait can fix.
    ssm, stub = _stubbed("ssm")
    stub.add_client_error(
        "send_command", "AccessDeniedException", "not authorized to perform: ssm:SendCommand"
    )
    clock = FakeClock()
    with stub, pytest.raises(readiness.AccessDenied) as refused:
        wait(
            lambda: readiness.ssm_probe(ssm, "i-0123456789abcdef0", 80, sleep=clock.sleep),
            Expected(BUILD),
            clock,
        )
    assert refused.value.action == "ssm:SendCommand"
    assert "ssm:SendCommand" in str(refused.value)
    assert clock.now == 0  # no second look
    stub.assert_no_pending_responses()


def test_a_refused_command_invocation_read_stops_the_gate_too() -> None:
    ssm, stub = _stubbed("ssm")
    stub.add_response("send_command", {"Command": {"CommandId": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"}})
    stub.add_client_error("get_command_invocation", "AccessDeniedException", "no")
    with stub, pytest.raises(readiness.AccessDenied) as refused:
        readiness.ssm_probe(ssm, "i-0123456789abcdef0", 80, sleep=lambda _s: None)
    assert refused.value.action == "ssm:GetCommandInvocation"


def test_an_unregistered_instance_is_still_retried_not_refused() -> None:
    ssm, stub = _stubbed("ssm")
    stub.add_client_error("send_command", "InvalidInstanceId", "not yet")
    with stub:
        probe = readiness.ssm_probe(ssm, "i-0123456789abcdef0", 80, sleep=lambda _s: None)
    assert probe.status is None
    assert "InvalidInstanceId" in probe.detail


def test_a_refused_console_read_says_which_action_is_missing() -> None:
    ec2, stub = _stubbed("ec2")
    stub.add_client_error("get_console_output", "UnauthorizedOperation", "no")
    with stub:
        tail = readiness.console_tail(ec2, "i-0123456789abcdef0")
    assert "ec2:GetConsoleOutput" in tail
