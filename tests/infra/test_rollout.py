"""The fleet's rollout wait (infra/rollout.py), against a real boto3 client on loopback.

moto 5.2.5 has no instance-refresh API (its autoscaling backend implements neither
StartInstanceRefresh nor DescribeInstanceRefreshes), so the Auto Scaling endpoint here is a small
stand-in that speaks the Query protocol's XML on a loopback port: boto3 signs, sends and parses
real requests, and the stand-in walks a scripted list of refresh states.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from infra.rollout import RefreshWaiter, RolloutFailed
from testkit.http import serving
from tests.infra.conftest import REGION, Deployment

GROUP = "cali-asg-1234"
NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


def refresh_xml(status: str, started: datetime, percent: int = 50, reason: str = "") -> str:
    return (
        f"<member><InstanceRefreshId>r-{status}</InstanceRefreshId><AutoScalingGroupName>{GROUP}"
        f"</AutoScalingGroupName><Status>{status}</Status><StatusReason>{reason}</StatusReason>"
        f"<StartTime>{started.strftime('%Y-%m-%dT%H:%M:%SZ')}</StartTime>"
        f"<PercentageComplete>{percent}</PercentageComplete></member>"
    )


@contextlib.contextmanager
def auto_scaling(script: list[list[str]]) -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """An Auto Scaling endpoint answering DescribeInstanceRefreshes with script[i] on the i-th call
    (the last entry repeats); yields its URL and the requests it received."""
    received: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            received.append(form)
            members = script[min(len(received), len(script)) - 1]
            body = (
                f'<DescribeInstanceRefreshesResponse xmlns="{NS}"><DescribeInstanceRefreshesResult>'
                f"<InstanceRefreshes>{''.join(members)}</InstanceRefreshes></DescribeInstanceRefreshesResult>"
                "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></DescribeInstanceRefreshesResponse>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as url:
        yield url, received


def client(url: str):
    return boto3.client(
        "autoscaling",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - a stand-in's
    )


class FakeClock:
    """Time that moves only when the waiter sleeps: a bounded wait without waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


NOW = datetime.now(UTC).replace(microsecond=0)


def wait(url: str, *, expect_refresh: bool = True, timeout_s: float = 600) -> tuple[str, FakeClock]:
    clock = FakeClock()
    outcome = RefreshWaiter().wait(
        client(url),
        GROUP,
        expect_refresh=expect_refresh,
        timeout_s=timeout_s,
        interval_s=15,
        clock=clock,
        sleep=clock.sleep,
        now=lambda: NOW,
    )
    return outcome, clock


def test_waits_through_pending_and_in_progress_until_successful() -> None:
    script = [
        [refresh_xml("Pending", NOW)],
        [refresh_xml("InProgress", NOW)],
        [refresh_xml("Successful", NOW)],
    ]
    with auto_scaling(script) as (url, received):
        outcome, clock = wait(url)
    assert outcome == f"{GROUP}: instance refresh r-Successful Successful"
    assert len(received) == 3
    assert received[0]["Action"] == ["DescribeInstanceRefreshes"]
    assert received[0]["AutoScalingGroupName"] == [GROUP]
    assert clock.t == 30, "two sleeps of the poll interval"


@pytest.mark.parametrize(
    "status",
    ["Failed", "Cancelled", "Cancelling", "RollbackInProgress", "RollbackSuccessful", "RollbackFailed"],
)
def test_a_failed_cancelled_or_rolled_back_refresh_fails_the_deploy_naming_it(status: str) -> None:
    script = [
        [refresh_xml("InProgress", NOW)],
        [refresh_xml(status, NOW, reason="instances failed health checks")],
    ]
    with (
        auto_scaling(script) as (url, _),
        pytest.raises(RolloutFailed, match=f"ended {status}: instances failed"),
    ):
        wait(url)


def test_a_refresh_that_never_ends_fails_at_the_bound() -> None:
    script = [[refresh_xml("InProgress", NOW, percent=40)]]
    with (
        auto_scaling(script) as (url, received),
        pytest.raises(RolloutFailed, match=r"still InProgress \(40%\) after 120s"),
    ):
        wait(url, timeout_s=120)
    assert len(received) == 9, "polls at 0, 15, ..., 120 s of the fake clock, then gives up"


def test_the_newest_recent_refresh_counts_not_an_old_failure() -> None:
    old_failure = refresh_xml("Failed", NOW - timedelta(days=2))
    earlier_today = refresh_xml("Cancelled", NOW - timedelta(minutes=5))
    with auto_scaling(
        [[old_failure, earlier_today, refresh_xml("Successful", NOW + timedelta(seconds=3))]]
    ) as (
        url,
        _,
    ):
        outcome, _clock = wait(url)
    assert outcome.endswith("Successful")


def test_a_changed_template_without_a_refresh_fails() -> None:
    script = [[refresh_xml("Successful", NOW - timedelta(days=1))]]
    with auto_scaling(script) as (url, _), pytest.raises(RolloutFailed, match="no instance refresh started"):
        wait(url, expect_refresh=True)


def test_a_new_group_has_no_refresh_to_wait_for() -> None:
    with auto_scaling([[]]) as (url, _):
        outcome, _clock = wait(url, expect_refresh=False)
    assert outcome == f"{GROUP}: no instance refresh to wait for"


def test_only_a_new_template_version_is_a_change_to_wait_for() -> None:
    olds = {"group": GROUP, "template_version": "3", "region": REGION, "timeout_s": 1800}
    assert RefreshWaiter().diff("id", olds, dict(olds)).changes is False
    assert RefreshWaiter().diff("id", olds, {**olds, "template_version": "4"}).changes is True


def test_the_provider_travels_to_pulumis_provider_process_by_value(tmp_path: Path) -> None:
    # Pulumi runs a dynamic provider from its dill-serialized form in another process; this one has
    # neither the project on its path nor anything but the venv, and still waits correctly.
    serialized = serialize_provider(RefreshWaiter())
    script = tmp_path / "run.py"
    script.write_text(
        "import base64, sys, dill\n"
        "from datetime import datetime, timezone\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "now = datetime(2026, 1, 1, tzinfo=timezone.utc)\n"
        "class Client:\n"
        "    def __init__(self, status): self.status = status\n"
        "    def describe_instance_refreshes(self, AutoScalingGroupName):\n"
        "        refresh = {'InstanceRefreshId': 'r1', 'Status': self.status, 'StartTime': now}\n"
        "        return {'InstanceRefreshes': [refresh]}\n"
        "print(provider.wait(Client('Successful'), 'g', expect_refresh=True, timeout_s=5, now=lambda: now))\n"
        "try:\n"
        "    provider.wait(Client('Failed'), 'g', expect_refresh=True, timeout_s=5, now=lambda: now)\n"
        "except Exception as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", str(script)],  # -I: no cwd, no PYTHONPATH, no user site
        input=serialized,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "g: instance refresh r1 Successful",
        "RuntimeError g: instance refresh r1 ended Failed",
    ]


def test_the_fleet_registers_the_wait_after_its_group(fleet: Deployment) -> None:
    (wait_resource,) = [
        r for r in fleet.of_type("pulumi-python:dynamic:Resource") if r.name == "cali-rollout"
    ]
    group = fleet.one("aws:autoscaling/group:Group")
    assert group.urn in wait_resource.dependencies
    assert wait_resource.inputs["group"] == group.inputs.get("name", "cali-asg")
    assert wait_resource.inputs["region"] == REGION
    assert wait_resource.inputs["template_version"]


def test_the_single_server_has_no_rollout_to_wait_for(prod: Deployment) -> None:
    # single mode's one dynamic resource is the readiness gate (infra/readiness.py), no rollout wait
    dynamic = prod.of_type("pulumi-python:dynamic:Resource")
    assert [r.name for r in dynamic] == ["cali-ready"]
