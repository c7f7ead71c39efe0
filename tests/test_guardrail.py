"""The deploy guardrail (smoke/guardrail.py) against real HTTP servers on loopback ports.

The stand-in speaks the service's contract (tests/test_smoke.py's StandIn); a subclass breaks
`/predict` after a number of calls, as a build whose readiness passes and whose predictions then
fail. The alarms are read through a fake `aws` executable on PATH, so the CLI call, its arguments and
the parsing of its answer are the real ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smoke import guardrail
from smoke.client import SmokeOptions
from testkit.http import serving
from tests.test_smoke import StandIn

ROOT = Path(__file__).resolve().parent.parent


class BreaksAfter(StandIn):
    """The stand-in whose POST /predict answers 500 once it has answered `good_posts` times."""

    good_posts = 10**9
    posts = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's method name
        cls = type(self)
        cls.posts += 1
        if cls.posts > cls.good_posts:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(500, {"error": {"code": 500, "message": "internal error", "details": []}})
            return
        super().do_POST()


@contextlib.contextmanager
def service(good_posts: int = 10**9) -> Iterator[str]:
    """Serve BreaksAfter(good_posts) on a loopback port; yields its base URL."""
    handler = type("Handler", (BreaksAfter,), {"good_posts": good_posts, "posts": 0, "health_calls": 0})
    with serving(handler) as url:
        yield url


# The smoke test's own POSTs: one prediction, one batch, one bad request.
SMOKE_POSTS = 3


def options(url: str, window: float = 0.3, alarms: tuple[str, ...] = ()) -> guardrail.WatchOptions:
    return guardrail.WatchOptions(SmokeOptions(url, wait=10, interval=0.1, timeout=5), window, 0.05, alarms)


LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def alarms_in(*states: Mapping[str, str], since: datetime | None = None) -> guardrail.AlarmReader:
    """An alarm reader that answers these states, one read after another, then the last forever.

    Each state entered at `since`; by default, the moment of the read (so after the watch began).
    """
    answers = list(states)

    def read(names: Sequence[str]) -> Mapping[str, guardrail.AlarmState]:
        state = answers.pop(0) if len(answers) > 1 else answers[0]
        entered = since or datetime.now(UTC)
        return {name: guardrail.AlarmState(state[name], entered) for name in names}

    return read


def test_a_healthy_build_is_kept_after_its_whole_window() -> None:
    with service() as url:
        ok = {"errors": "OK", "latency": "INSUFFICIENT_DATA"}
        verdict = guardrail.watch(options(url, alarms=("errors", "latency")), alarms_in(ok))
    assert verdict.keep, verdict.reasons
    assert verdict.probes >= 2, "the window probes more than once"


def test_a_build_whose_predict_fails_after_ready_passes_is_undone_by_the_window() -> None:
    # /health and /ready keep answering; /predict breaks right after the smoke test's checks
    with service(good_posts=SMOKE_POSTS) as url:
        verdict = guardrail.watch(options(url), alarms_in({}))
    assert not verdict.keep
    assert verdict.reasons == ["POST /predict answered HTTP 500 for the known record"]
    assert verdict.probes == 1, "the first failed probe ends the watch"


def test_a_build_whose_predict_fails_from_the_start_fails_its_smoke_test() -> None:
    with service(good_posts=0) as url:
        verdict = guardrail.watch(options(url), alarms_in({}), out=io.StringIO(), err=io.StringIO())
    assert verdict.reasons == [f"the smoke test failed against {url}"]
    assert verdict.probes == 0


def test_an_alarm_that_fires_during_the_window_undoes_the_build() -> None:
    with service() as url:
        reader = alarms_in({"errors": "OK", "latency": "OK"}, {"errors": "OK", "latency": "ALARM"})
        verdict = guardrail.watch(options(url, window=30, alarms=("errors", "latency")), reader)
    (reason,) = verdict.reasons
    assert reason.startswith("alarm latency is in state ALARM (since ")
    assert verdict.probes == 2, "it stops at the read that saw the alarm, long before the window ends"


def test_an_alarm_already_firing_before_the_build_took_the_address_is_noted_not_counted() -> None:
    # Deploying the fix for an incident must not be rolled back to the build that caused it; the
    # probes still judge the new build.
    with service() as url:
        reader = alarms_in({"errors": "ALARM", "latency": "OK"}, since=LONG_AGO)
        verdict = guardrail.watch(options(url, alarms=("errors", "latency")), reader)
    assert verdict.keep, verdict.reasons
    assert verdict.notes == [
        "alarm errors was already in ALARM before this build took the address: not counted"
    ]


def test_the_window_is_zero_long_with_one_probe_when_asked() -> None:
    with service() as url:
        verdict = guardrail.watch(options(url, window=0), alarms_in({}))
    assert verdict.keep
    assert verdict.probes == 1


# --- the alarms: names from the state, states from the aws CLI ---------------------------------------


def alarm_resource(logical: str, name: str) -> dict:
    return {
        "urn": f"urn:pulumi:prod::cali-housing::cali:aws:Monitoring${guardrail.ALARM_TYPE}::{logical}",
        "type": guardrail.ALARM_TYPE,
        "outputs": {"name": name, "arn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"},
    }


def test_the_alarm_names_come_from_the_stacks_state() -> None:
    state = {
        "version": 3,
        "deployment": {
            "resources": [
                alarm_resource("cali-drift", "cali-drift-1111111"),
                alarm_resource("cali-latency", "cali-latency-2222222"),
                alarm_resource("cali-errors", "cali-errors-3333333"),
                {"urn": "urn:pulumi:prod::cali-housing::pulumi:pulumi:Stack::cali-housing-prod", "type": "x"},
            ]
        },
    }
    assert guardrail.alarm_names_from_state(state) == ("cali-errors-3333333", "cali-latency-2222222")


def test_a_state_without_the_guardrail_alarms_cannot_be_judged() -> None:
    state = {"deployment": {"resources": [alarm_resource("cali-errors", "cali-errors-3333333")]}}
    with pytest.raises(guardrail.GuardrailError, match="no alarm named cali-latency"):
        guardrail.alarm_names_from_state(state)


@pytest.fixture
def fake_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `aws` on PATH that logs its arguments and answers describe-alarms from answer.json."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "aws"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" >"{tmp_path}/args"\n'
        f'[ -f "{tmp_path}/fail" ] && {{ echo "AccessDenied: not allowed" >&2; exit 254; }}\n'
        f'cat "{tmp_path}/answer.json"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def answer(where: Path, since: str = "2099-01-01T00:00:00.000000+00:00", **states: str) -> None:
    """What describe-alarms prints: the states, each entered at `since` (by default: after any watch)."""
    alarms = [
        {"AlarmName": name, "StateValue": value, "StateUpdatedTimestamp": since}
        for name, value in states.items()
    ]
    (where / "answer.json").write_text(json.dumps({"MetricAlarms": alarms, "CompositeAlarms": []}))


def test_the_alarm_states_are_read_by_name_with_the_aws_cli(fake_aws: Path) -> None:
    answer(fake_aws, **{"cali-errors-1": "OK", "cali-latency-2": "ALARM"})
    states = guardrail.cloudwatch_states(["cali-errors-1", "cali-latency-2"])
    entered = datetime(2099, 1, 1, tzinfo=UTC)
    assert states == {
        "cali-errors-1": guardrail.AlarmState("OK", entered),
        "cali-latency-2": guardrail.AlarmState("ALARM", entered),
    }
    args = (fake_aws / "args").read_text().split()
    assert args == [
        "cloudwatch",
        "describe-alarms",
        "--alarm-names",
        "cali-errors-1",
        "cali-latency-2",
        "--output",
        "json",
    ]


def test_an_alarm_cloudwatch_does_not_know_cannot_be_judged(fake_aws: Path) -> None:
    answer(fake_aws, **{"cali-errors-1": "OK"})
    with pytest.raises(guardrail.GuardrailError, match="no alarm named cali-latency-2"):
        guardrail.cloudwatch_states(["cali-errors-1", "cali-latency-2"])


def test_a_refused_alarm_read_cannot_be_judged(fake_aws: Path) -> None:
    (fake_aws / "fail").touch()
    with pytest.raises(guardrail.GuardrailError, match="exited 254: AccessDenied"):
        guardrail.cloudwatch_states(["cali-errors-1"])


# --- the command, as the workflow runs it --------------------------------------------------------


def run_guardrail(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smoke.guardrail", url, "--wait", "10", "--interval", "0.05", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_command_keeps_a_healthy_build_and_says_so_in_the_summary(fake_aws: Path) -> None:
    answer(fake_aws, **{"cali-errors-1": "OK", "cali-latency-2": "OK"})
    summary = fake_aws / "summary.md"
    with service() as url:
        args = ("--window", "0.2", "--alarm", "cali-errors-1", "--alarm", "cali-latency-2")
        done = run_guardrail(url, *args, "--summary", str(summary), env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Guardrail: the new build is healthy" in summary.read_text()
    assert "`cali-latency-2`" in summary.read_text()


def test_the_command_exits_1_with_the_reason_when_predict_breaks(fake_aws: Path) -> None:
    summary = fake_aws / "summary.md"
    with service(good_posts=SMOKE_POSTS) as url:
        done = run_guardrail(url, "--window", "5", "--summary", str(summary))
    assert done.returncode == guardrail.UNDO, done.stdout + done.stderr
    assert "guardrail: FAIL POST /predict answered HTTP 500" in done.stderr
    assert "Guardrail: the new build FAILED" in summary.read_text()


def test_the_command_exits_2_when_the_alarms_cannot_be_read(fake_aws: Path) -> None:
    (fake_aws / "fail").touch()
    with service() as url:
        done = run_guardrail(url, "--window", "0", "--alarm", "cali-errors-1", env=dict(os.environ))
    assert done.returncode == guardrail.CANNOT_JUDGE, done.stdout + done.stderr
    assert "cannot judge the build" in done.stderr


def test_the_command_reads_the_alarm_names_from_a_state_export(fake_aws: Path) -> None:
    state = fake_aws / "state.json"
    state.write_text(
        json.dumps(
            {
                "deployment": {
                    "resources": [alarm_resource("cali-errors", "e-1"), alarm_resource("cali-latency", "l-2")]
                }
            }
        )
    )
    answer(fake_aws, **{"e-1": "ALARM", "l-2": "OK"})
    with service() as url:
        done = run_guardrail(url, "--window", "0", "--state", str(state), env=dict(os.environ))
    assert done.returncode == guardrail.UNDO, done.stdout + done.stderr
    assert "alarm e-1 is in state ALARM" in done.stderr


def test_the_command_notes_an_alarm_that_fired_before_it_began_and_keeps_a_healthy_build(
    fake_aws: Path,
) -> None:
    answer(fake_aws, since="2020-01-01T00:00:00+00:00", **{"e-1": "ALARM", "l-2": "OK"})
    summary = fake_aws / "summary.md"
    with service() as url:
        args = ("--window", "0", "--alarm", "e-1", "--alarm", "l-2", "--summary", str(summary))
        done = run_guardrail(url, *args, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "note: alarm e-1 was already in ALARM" in summary.read_text()


@pytest.mark.parametrize(
    "args",
    [("--window", "-1"), ("--interval", "0"), ("--samples", "0")],
)
def test_bad_arguments_are_a_usage_error_that_checks_nothing(args: tuple[str, ...]) -> None:
    done = run_guardrail("http://127.0.0.1:9", *args)
    assert done.returncode == 2
    assert "usage:" in done.stderr
