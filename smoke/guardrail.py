"""The deploy guardrail: is the build that just took the address healthy, or must it be undone?

    python -m smoke.guardrail URL --expect-model-version V --expect-revision R --samples 40 \\
        --window 300 --state state.json --summary "$GITHUB_STEP_SUMMARY"

The readiness gate (infra/readiness.py) only lets a server take the address once `/ready` names the
expected build; a build can pass that and still fail its users (a broken `/predict`, a slow model).
After the address moves, this watches the new build and says whether to keep it:

1. the smoke test (smoke.client, the same checks and identity as `python -m smoke`), then
2. a short window (`--window` seconds) in which it predicts the schema's known record every
   `--interval` seconds, and reads the service's alarms (infra/monitoring.py: the 5xx rate and the p99
   latency) with `aws cloudwatch describe-alarms`. Any 5xx or unanswered probe, or an alarm that
   entered ALARM after the watch began, ends the watch at once: a known-good record never fails on a
   healthy build. An alarm already in ALARM when the watch began (an incident the new build may be
   the fix for) is reported and not counted: it would roll a fix back to the build that caused it;
   the probes still judge the new build.

Exit status: 0 keep the build; 1 undo it (the reasons are printed and, with `--summary`, written to
the job summary); 2 the guardrail could not judge (bad arguments, an alarm name CloudWatch does not
know, the aws CLI refused): the caller treats that as 1, since a build nobody could check is not
known to be good. The workflow then deploys the previous digest (docs/ci-cd.md, "Guardrail
rollback"); the rehearsal (scripts/rehearse.py) does the same against a local registry.

The alarms' names (`cali-housing-<stack>-errors`, infra/monitoring.py `alarm_name`) are read from
the stack's state (`pulumi stack export`, `--state`), not rebuilt here: the MetricAlarm resources
whose logical names are in GUARDRAIL_ALARMS, so a renamed alarm cannot be missed. Standard library
only, like the smoke client; the aws CLI is on every GitHub runner.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.schema import example_record
from smoke.client import SmokeOptions, request
from smoke.client import run as run_smoke

# The logical names infra/monitoring.py gives the alarms that judge a rollout (Monitoring "cali",
# keys "errors" and "latency"); tests/infra/test_guardrail_alarms.py fails when the program renames them.
GUARDRAIL_ALARMS = ("cali-errors", "cali-latency")
ALARM_TYPE = "aws:cloudwatch/metricAlarm:MetricAlarm"
ALARM_STATE = "ALARM"
UNDO, CANNOT_JUDGE = 1, 2


@dataclass(frozen=True)
class AlarmState:
    """An alarm's state (OK, ALARM, INSUFFICIENT_DATA) and when it entered it (timezone-aware)."""

    value: str
    since: datetime


AlarmReader = Callable[[Sequence[str]], Mapping[str, AlarmState]]


class GuardrailError(Exception):
    """The guardrail could not judge the build (exit 2); the message says why."""


@dataclass(frozen=True)
class WatchOptions:
    """What to watch after the smoke test, and for how long.

    Attributes:
        smoke: The smoke test's options (URL, identity, samples, how long to wait for /health).
        window: Seconds to keep probing and reading the alarms after the smoke test passed.
        interval: Seconds between two probes (and alarm reads).
        alarms: CloudWatch alarm names that must not be in ALARM; empty for none (the rehearsal).
    """

    smoke: SmokeOptions
    window: float = 300.0
    interval: float = 15.0
    alarms: tuple[str, ...] = ()


@dataclass
class GuardrailVerdict:
    """What the watch found: keep the build when `reasons` is empty."""

    reasons: list[str] = field(default_factory=list)
    probes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return not self.reasons


def alarm_names_from_state(deployment: Mapping[str, Any]) -> tuple[str, ...]:
    """The physical names of the guardrail alarms, from `pulumi stack export` JSON.

    Raises:
        GuardrailError: The state lacks one of GUARDRAIL_ALARMS (an older program, or another stack).
    """
    resources = deployment.get("deployment", deployment).get("resources") or []
    found: dict[str, str] = {}
    for resource in resources:
        urn = resource.get("urn", "")
        logical = urn.rsplit("::", 1)[-1]
        if resource.get("type") == ALARM_TYPE and logical in GUARDRAIL_ALARMS:
            name = (resource.get("outputs") or {}).get("name")
            if isinstance(name, str) and name:
                found[logical] = name
    missing = [logical for logical in GUARDRAIL_ALARMS if logical not in found]
    if missing:
        raise GuardrailError(f"the stack's state has no alarm named {', '.join(missing)}")
    return tuple(found[logical] for logical in GUARDRAIL_ALARMS)


def _aware(timestamp: str) -> datetime:
    """An ISO 8601 time as the aws CLI prints it (with an offset); one without is taken as UTC."""
    parsed = datetime.fromisoformat(timestamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cloudwatch_states(names: Sequence[str], aws: str = "aws") -> dict[str, AlarmState]:
    """Each alarm's StateValue and StateUpdatedTimestamp, read with the aws CLI.

    Raises:
        GuardrailError: The CLI failed, or CloudWatch does not know one of the names.
    """
    try:
        done = subprocess.run(
            [aws, "cloudwatch", "describe-alarms", "--alarm-names", *names, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise GuardrailError(f"aws cloudwatch describe-alarms did not run: {err}") from err
    if done.returncode != 0:
        message = done.stderr.strip()
        raise GuardrailError(f"aws cloudwatch describe-alarms exited {done.returncode}: {message}")
    try:
        alarms = json.loads(done.stdout).get("MetricAlarms", [])
        states = {
            alarm["AlarmName"]: AlarmState(alarm["StateValue"], _aware(alarm["StateUpdatedTimestamp"]))
            for alarm in alarms
        }
    except (ValueError, AttributeError, KeyError, TypeError) as err:
        raise GuardrailError(f"aws cloudwatch describe-alarms gave no alarm list: {err}") from err
    unknown = [name for name in names if name not in states]
    if unknown:
        raise GuardrailError(f"CloudWatch has no alarm named {', '.join(unknown)}")
    return states


def probe(url: str, timeout: float) -> str | None:
    """Predict the schema's known record once; the failure as one line, or None when it answered."""
    try:
        resp = request("POST", url + "/predict", example_record(), timeout=timeout)
    except OSError as err:
        return f"POST /predict: no answer ({err})"
    if resp.status >= 500:
        return f"POST /predict answered HTTP {resp.status} for the known record"
    if resp.status != 200:
        return f"POST /predict answered HTTP {resp.status} for the known record (expected 200)"
    return None


def watch(
    options: WatchOptions,
    read_alarms: AlarmReader = cloudwatch_states,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    out=sys.stdout,
    err=sys.stderr,
) -> GuardrailVerdict:
    """The smoke test, then the window of probes and alarm reads; the first failure ends it.

    Raises:
        GuardrailError: The alarms could not be read.
    """
    verdict = GuardrailVerdict()
    began = now()
    if run_smoke(options.smoke, out=out, err=err) != 0:
        verdict.reasons.append(f"the smoke test failed against {options.smoke.url}")
        return verdict
    deadline = clock() + options.window
    while True:
        verdict.probes += 1
        failure = probe(options.smoke.url, options.smoke.timeout)
        if failure:
            verdict.reasons.append(failure)
        if options.alarms:
            states = read_alarms(options.alarms)
            for name in options.alarms:
                state = states[name]
                if state.value != ALARM_STATE:
                    continue
                if state.since >= began:
                    verdict.reasons.append(
                        f"alarm {name} is in state ALARM (since {state.since.isoformat()})"
                    )
                else:
                    note = (
                        f"alarm {name} was already in ALARM before this build took the address: not counted"
                    )
                    if note not in verdict.notes:
                        verdict.notes.append(note)
        if verdict.reasons or clock() >= deadline:
            return verdict
        sleep(min(options.interval, max(0.0, deadline - clock())))


def summary(verdict: GuardrailVerdict, options: WatchOptions) -> str:
    """The job summary's lines for this verdict (markdown)."""
    watched = f"the smoke test, then {verdict.probes} probe(s) over {options.window:g}s"
    if options.alarms:
        watched += " and the alarms " + ", ".join(f"`{name}`" for name in options.alarms)
    notes = "".join(f"- note: {note}\n" for note in verdict.notes)
    if verdict.keep:
        return f"### Guardrail: the new build is healthy\n- watched: {watched}\n{notes}"
    lines = "".join(f"- {reason}\n" for reason in verdict.reasons)
    return f"### Guardrail: the new build FAILED\n- watched: {watched}\n{lines}{notes}"


def parse_args(argv: Sequence[str] | None = None) -> tuple[WatchOptions, Path | None]:
    """The command line as WatchOptions (alarm names from --alarm or --state) and the summary file."""
    parser = argparse.ArgumentParser(prog="python -m smoke.guardrail", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the service that just took the address")
    parser.add_argument("--expect-model-version", metavar="V", help="the build /ready must name")
    parser.add_argument("--expect-revision", metavar="R", help="the revision /ready must name")
    parser.add_argument("--samples", type=int, default=1, help="/ready answers to check for identity")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds the smoke test waits for /health")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--window", type=float, default=300.0, help="seconds to watch after the smoke test")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between two probes")
    parser.add_argument("--alarm", action="append", default=[], help="an alarm name that must not fire")
    parser.add_argument("--state", type=Path, help="`pulumi stack export` JSON: watch its guardrail alarms")
    parser.add_argument("--summary", type=Path, help="append the verdict (markdown) to this file")
    args = parser.parse_args(argv)
    parts = urllib.parse.urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        parser.error(f"URL must be http:// or https:// with a host, got {args.url!r}")
    if args.window < 0 or args.interval <= 0 or args.wait <= 0 or args.timeout <= 0:
        parser.error("--window must not be negative; --interval, --wait and --timeout must be positive")
    if not 1 <= args.samples <= 10_000:
        parser.error(f"--samples must be from 1 to 10000, got {args.samples}")
    alarms = tuple(args.alarm)
    if args.state is not None:
        try:
            alarms += alarm_names_from_state(json.loads(args.state.read_text()))
        except (OSError, ValueError) as err:
            parser.error(f"--state {args.state}: {err}")
    smoke = SmokeOptions(
        args.url.rstrip("/"),
        wait=args.wait,
        timeout=args.timeout,
        expect_model_version=args.expect_model_version or None,
        expect_revision=args.expect_revision or None,
        samples=args.samples,
    )
    return WatchOptions(smoke, args.window, args.interval, alarms), args.summary


def main(argv: Sequence[str] | None = None, read_alarms: AlarmReader = cloudwatch_states) -> int:
    """Entry point: 0 keep the build, 1 undo it, 2 could not judge (the caller undoes it too)."""
    try:
        options, summary_file = parse_args(argv)
        verdict = watch(options, read_alarms)
    except GuardrailError as failure:
        print(f"guardrail: cannot judge the build: {failure}", file=sys.stderr)
        return CANNOT_JUDGE
    text = summary(verdict, options)
    if summary_file is not None:
        with summary_file.open("a") as handle:
            handle.write(text)
    for note in verdict.notes:
        print(f"guardrail: note: {note}")
    if verdict.keep:
        print(f"guardrail: keep the build ({verdict.probes} probe(s), no alarm)")
        return 0
    for reason in verdict.reasons:
        print(f"guardrail: FAIL {reason}", file=sys.stderr)
    print("guardrail: undo the build: deploy the previous one", file=sys.stderr)
    return UNDO


if __name__ == "__main__":
    sys.exit(main())
