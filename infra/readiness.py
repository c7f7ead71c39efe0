"""The readiness gate: a replacement server gets the Elastic IP only once it serves the build being deployed.

Why a Pulumi dynamic resource (Python, boto3) rather than a `command` provider or a wait in CI:
- It sits in the dependency graph between the new instance and the address association, so the
  engine itself orders "new instance -> gate -> move the address"; a failing gate fails `pulumi up`
  before the association is touched, and the old server, which Pulumi deletes only at the end of a
  successful replacement (create-before-delete), keeps the address and keeps serving.
- It runs where `pulumi up` runs, needs no new plugin or binary (boto3 is already a dependency),
  and asks the instance itself through SSM Run Command (`curl` on loopback), so it does not depend
  on the security group admitting the machine that runs `pulumi up` (`allowedCidrs`).
- The logic is plain functions (`judge`, `wait_until_ready`, `parse_probe_output`), tested against
  real local HTTP servers; the provider class only wires boto3 clients to them.

Pulumi stores the provider with dill and runs it in `python -m pulumi.dynamic`, started in the
program's directory (pulumi/pulumi#5455), so the functions below import from `infra.readiness`
there as in the program; tests/infra/test_zero_downtime.py loads a serialized provider that way.

What only AWS can prove: that the SSM agent on Amazon Linux 2023 registers and runs the command
(moto accepts `send_command` but returns no output), and the console output's real content.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider

from infra.user_data import CONTAINER_NAME

# The bound on a replacement's boot: install Docker, pull, start, load the model. Two to three
# minutes is normal (infra/fleet.py BOOT_SECONDS); fifteen leaves room for a slow mirror and retries.
READY_TIMEOUT_S = 15 * 60
POLL_INTERVAL_S = 10
# Seconds one SSM command may take on the instance before it is counted as a failed probe.
COMMAND_TIMEOUT_S = 30
LOG_TAIL_LINES = 40
# What the gate is given; any change of one is a new gate. `image` is the digest reference the program
# deploys (registry/repo@sha256:...): every run derives it the same way (the digest found in ECR, or
# the one pushed), so a preview or a laptop `up` of an unchanged tree sees the same gate inputs as CI's.
GATE_INPUTS = ("region", "instance_id", "port", "timeout_s", "image")
# SSM's final states of a command invocation (GetCommandInvocation's Status).
_FINAL = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"})


# The error codes AWS answers a refused call with (SSM: AccessDeniedException; EC2:
# UnauthorizedOperation; botocore's error shapes of both services).
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


class AccessDenied(Exception):
    """The deploying identity may not make a call the gate needs: no retry can change that."""

    def __init__(self, action: str, detail: str) -> None:
        self.action = action
        super().__init__(
            f"the deploying identity may not call {action} ({detail}); waiting cannot fix this: "
            "put the account setup's policies in place (python -m account.bootstrap, docs/ci-cd.md)"
        )


def _refused(err: Exception, action: str) -> None:
    """Raise AccessDenied naming `action` when `err` is AWS refusing it."""
    error = getattr(err, "response", {}).get("Error", {})
    if error.get("Code") in DENIED_CODES:
        raise AccessDenied(action, f"{error.get('Code')}: {error.get('Message', '')}") from None


class NotReady(Exception):
    """The server did not serve the expected build within the bound; carries the last reason."""

    def __init__(self, reason: str, waited_s: float, log_tail: str = "") -> None:
        self.reason = reason
        self.waited_s = waited_s
        self.log_tail = log_tail
        message = f"not ready after {waited_s:.0f} s: {reason}"
        if log_tail:
            message += f"\n--- last lines of the boot log ---\n{log_tail}"
        super().__init__(message)


@dataclass(frozen=True)
class Probe:
    """One look at the server: the HTTP status of /ready (None: no answer), its body or the error, and
    the image reference the app's container was started from ("" when not asked or none runs)."""

    status: int | None
    body: str = ""
    detail: str = ""
    image: str = ""


@dataclass(frozen=True)
class Expected:
    """The build the server must serve: /ready's JSON keys with a value ("" or missing: not checked),
    and the image reference its container must run ("": not checked)."""

    fields: Mapping[str, str] = field(default_factory=dict)
    image: str = ""

    def checked(self) -> dict[str, str]:
        """The keys with a value to compare."""
        return {k: v for k, v in self.fields.items() if v}


def judge(probe: Probe, expected: Expected) -> str | None:
    """None when the probe shows the expected build ready, else the reason it does not.

    Args:
        probe: What /ready answered.
        expected: The identity the answer must carry.

    Returns:
        None (ready) or a one-line reason.
    """
    if probe.status is None:
        return f"/ready did not answer ({probe.detail or 'no response'})"
    if probe.status != 200:
        return f"/ready answered {probe.status}: {probe.body[:200]}"
    try:
        answer = json.loads(probe.body)
    except ValueError:
        return f"/ready answered 200 but not JSON: {probe.body[:200]!r}"
    if not isinstance(answer, dict):
        return f"/ready answered 200 with {type(answer).__name__}, not an object"
    if expected.image and probe.image != expected.image:
        return (
            f"the container runs {probe.image or 'no image'!r}, the deploy expects {expected.image!r} "
            "(another build is serving)"
        )
    for key, want in expected.checked().items():
        got = answer.get(key)
        if got != want:
            return f"/ready reports {key}={got!r}, the deploy expects {want!r} (another build is serving)"
    return None


def wait_until_ready(
    probe: Callable[[], Probe],
    expected: Expected,
    *,
    timeout_s: float = READY_TIMEOUT_S,
    interval_s: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Probe:
    """Probe until the expected build is ready or the bound passes.

    Args:
        probe: Takes one look (an HTTP GET, or the SSM command on the instance).
        expected: The build that must be reported.
        timeout_s: The bound.
        interval_s: Pause between looks.
        clock: Monotonic seconds (injectable for tests).
        sleep: How to pause (injectable for tests).

    Returns:
        The probe that showed the build ready.

    Raises:
        NotReady: The bound passed; the reason is the last probe's.
    """
    start = clock()
    while True:
        seen = probe()
        reason = judge(seen, expected)
        if reason is None:
            return seen
        waited = clock() - start
        if waited + interval_s > timeout_s:
            raise NotReady(reason, waited)
        sleep(interval_s)


def http_probe(url: str, timeout_s: float = 5) -> Probe:
    """GET `url` (a /ready URL) once; a refused or timed-out connection is a Probe with no status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) URL of ours
            return Probe(response.status, response.read(64 * 1024).decode("utf-8", "replace"))
    except urllib.error.HTTPError as err:
        return Probe(err.code, err.read(64 * 1024).decode("utf-8", "replace"))
    except (OSError, ValueError) as err:
        return Probe(None, detail=str(err))


# What the SSM command runs on the instance: /ready over loopback, so no security group is involved.
# Prints the HTTP status on the first line ("000" when nothing answered), on the second the image
# reference the app's container was started from (the boot script starts it by digest; empty when no
# such container exists), and the body after them. curl is part of Amazon Linux 2023 (curl-minimal).
PROBE_SCRIPT = """\
body=$(mktemp)
code=$(curl --silent --max-time 5 --output "$body" --write-out '%{{http_code}}' \\
    http://127.0.0.1:{port}/ready) || true
image=$(docker inspect --format '{{{{.Config.Image}}}}' {container} 2>/dev/null) || true
printf '%s\\n%s\\n' "${{code:-000}}" "$image"
head -c 65536 "$body"
rm -f "$body"
"""


def probe_command(port: int, container: str = CONTAINER_NAME) -> str:
    """The shell the instance runs to look at its own /ready on `port` and at `container`'s image."""
    return PROBE_SCRIPT.format(port=int(port), container=shlex.quote(container))


def parse_probe_output(stdout: str) -> Probe:
    """Turn PROBE_SCRIPT's output into a Probe."""
    first, _, rest = stdout.partition("\n")
    image, _, body = rest.partition("\n")
    first = first.strip()
    if not first.isdigit() or int(first) == 0:
        return Probe(None, detail=f"nothing listens on the instance's port (curl: {first or 'no output'})")
    return Probe(int(first), body, image=image.strip())


def ssm_probe(ssm: Any, instance_id: str, port: int, *, sleep: Callable[[float], None] = time.sleep) -> Probe:
    """Run PROBE_SCRIPT on the instance through SSM Run Command and read what it printed.

    Args:
        ssm: A boto3 SSM client.
        instance_id: The instance to ask.
        port: The host port the app is published on.
        sleep: How to pause between polls of the command's state.

    Returns:
        The Probe; a command that could not be sent or did not finish is a Probe with no status.
    """
    from botocore.exceptions import ClientError

    try:
        sent = ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [probe_command(port)]},
            TimeoutSeconds=COMMAND_TIMEOUT_S,
            Comment="cali-housing readiness gate",
        )
    except ClientError as err:
        _refused(err, "ssm:SendCommand")
        # InvalidInstanceId until the agent has registered, a minute or so after launch.
        return Probe(None, detail=f"SSM cannot reach the instance yet ({err.response['Error']['Code']})")
    command_id = sent["Command"]["CommandId"]
    for _ in range(COMMAND_TIMEOUT_S):
        sleep(1)
        try:
            result = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as err:  # InvocationDoesNotExist for a moment after send_command
            _refused(err, "ssm:GetCommandInvocation")
            if err.response["Error"]["Code"] != "InvocationDoesNotExist":
                raise
            continue
        if result["Status"] in _FINAL:
            if result["Status"] != "Success":
                detail = result.get("StandardErrorContent", "")[-300:]
                return Probe(None, detail=f"the SSM command ended {result['Status']}: {detail}")
            return parse_probe_output(result.get("StandardOutputContent", ""))
    return Probe(None, detail=f"the SSM command did not finish within {COMMAND_TIMEOUT_S} s")


def console_tail(ec2: Any, instance_id: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the instance's console, where cloud-init copies the boot script's log.

    GetConsoleOutput needs no agent and no network path to the instance, so it tells why a server
    that never got as far as the SSM agent failed too. botocore already decodes its base64 `Output`
    (botocore/handlers.py, decode_console_output).
    """
    from botocore.exceptions import ClientError

    try:
        output = ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
    except ClientError as err:
        code = err.response["Error"]["Code"]
        if code in DENIED_CODES:
            return f"(console output unavailable: may not call ec2:GetConsoleOutput, {code})"
        return f"(console output unavailable: {code})"
    if not output:
        return "(the console output is still empty)"
    return "\n".join(output.splitlines()[-lines:])


def gate(
    region: str,
    instance_id: str,
    port: int,
    expected: Expected,
    timeout_s: float = READY_TIMEOUT_S,
    interval_s: float = POLL_INTERVAL_S,
) -> Probe:
    """Wait until `instance_id` serves the expected build on `port`, asking it through SSM.

    Raises:
        NotReady: Not within `timeout_s`; carries the console's last lines.
        AccessDenied: AWS refused a call the gate makes; raised at the first refusal, naming it.
    """
    import boto3

    ssm = boto3.client("ssm", region_name=region)
    try:
        return wait_until_ready(
            lambda: ssm_probe(ssm, instance_id, port), expected, timeout_s=timeout_s, interval_s=interval_s
        )
    except NotReady as err:
        ec2 = boto3.client("ec2", region_name=region)
        raise NotReady(err.reason, err.waited_s, console_tail(ec2, instance_id)) from None


class ReadinessProvider(ResourceProvider):
    """Create = wait for readiness. Any change of input is a new gate (a new instance to wait for)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Block until the instance is ready; raising fails `pulumi up` with the reason."""
        expected = Expected(image=props.get("image", ""))
        seen = gate(
            props["region"],
            props["instance_id"],
            int(props["port"]),
            expected,
            timeout_s=float(props["timeout_s"]),
        )
        return CreateResult(
            id_=f"{props['instance_id']}-ready", outs={**props, "ready_body": seen.body[:1000]}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Replace on any input change: a new instance (or build) must be waited for again."""
        # Inputs only: `ready_body` is an output (None in the program, the answer in the state), and
        # `__provider` changes with this module's code; neither is a reason to wait again.
        changed = [k for k in GATE_INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing exists in AWS for a gate."""


@dataclass
class ReadinessGateArgs:
    """Arguments for ReadinessGate.

    Attributes:
        region: The instance's region.
        instance_id: The instance to wait for.
        port: The host port the app is published on.
        image: The digest reference the boot script starts (registry/repo@sha256:...); the instance's
            container must run exactly it.
        timeout_s: The bound.
    """

    region: str
    instance_id: pulumi.Input[str]
    port: int
    image: pulumi.Input[str]
    timeout_s: int = READY_TIMEOUT_S


class ReadinessGate(pulumi.dynamic.Resource):
    """Exists once its instance serves the expected build; its `instance_id` output is safe to route to."""

    instance_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: ReadinessGateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "region": args.region,
            "instance_id": args.instance_id,
            "port": args.port,
            "timeout_s": args.timeout_s,
            "image": args.image,
            "ready_body": None,
        }
        super().__init__(ReadinessProvider(), name, props, opts)
