"""Every command in docs/ either runs here, as written, or is listed with the reason it cannot.

What counts as a command: each line of a fenced shell block (```sh, ```bash, ```console; also the
ones indented inside a list item) and every inline code span in prose that starts with a command
(`INLINE_COMMANDS`: `aws ...`, `pulumi ...`, `python ...`, `docker ...`, ...), so a command cannot
hide in a sentence. Each is classified by `how()`:

* **run**: the block runs under bash, unchanged but for the placeholders `PLACEHOLDERS` names, on a
  stand-in of a deployed prod stack: a moto server seeded as the program would leave the account
  (state bucket with two versions of the state file, the app's security group, two servers, the
  load balancer, the images, and the alarms **the program registers under Pulumi's mocks**, by the
  names it gives them), the service itself under gunicorn on loopback where a command calls the URL,
  and a `pulumi` stand-in that answers only `pulumi stack output NAME` with that stand-in's values,
  for names the program really exports. The AWS commands go through the AWS CLI found on PATH (v1
  or v2; the `awscli` test group, skipped loudly without one): every operation they use takes the
  same arguments in both, and the one v2-only command (`aws logs tail`) is listed, not run. Each
  run block has an expectation here, checked on its output or on moto's state.
* **listed**: `NOT_OFFLINE` says why it cannot run here (the Pulumi CLI, GitHub, a live instance).
  Any `$(aws ...)` or `$(sed ...)` inside such a line still runs, and every `pulumi stack output
  NAME` of the docs must name an output the program exports.
* **elsewhere**: run by another test, named here.

A new command in docs/ fails `test_every_docs_command_is_run_or_listed` until it is classified, and
a new runnable block fails until it has an expectation.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name

from tests.account.test_bootstrap import documented_bootstrap_commands
from tests.infra.conftest import (
    ACCOUNT,
    PUBLIC_IP,
    REGION,
    STATE_BUCKET,
    MotoServer,
    cli_config,
    run_program,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
SHELL_FENCES = ("```sh", "```bash", "```console")
STATE_KEY = ".pulumi/stacks/cali-housing/prod.json"
# The first words that make an inline code span a command (a span of one word is a name, not a command).
INLINE_COMMANDS = ("aws", "pulumi", "gh", "python", "curl", "docker", "make", "sudo", "pytest", "eval")

# Commands that cannot run on this machine, by their first words (after VAR=value words), and why.
NOT_OFFLINE: dict[str, str] = {
    "pulumi": "the Pulumi CLI and a state backend with AWS behind it; the program itself runs under "
    "Pulumi's mocks in tests/infra/",
    "gh": "GitHub's API and a token for the repository",
    "git add": "commits to your checkout (the file it adds exists only after `pulumi stack init staging`)",
    "aws logs tail": "AWS CLI v2 only (no such command in v1), and --follow streams until interrupted",
    "aws ssm start-session": "the Session Manager plugin and an SSM agent on a live instance; moto has no "
    "sessions (its target, `$(pulumi stack output instance_id)` or $NEW, is checked here)",
    "aws autoscaling describe-instance-refreshes": "moto does not implement DescribeInstanceRefreshes; "
    "the program's use of it is tests/infra/test_rollout.py (its arguments are checked here)",
    "make docker-run": "serves the image until Ctrl-C; tests/docker/test_serving.py runs the same image",
    "make docker": "builds the image, minutes of training inside; tests/docker/conftest.py builds the same "
    "Dockerfile from a clean checkout (the docker group)",
    "make": "a Makefile target (lint, the tests, training, benchmarks, the rehearsal): CI runs `make test`, "
    "the benchmarks are run by hand; not repeated from here",
    "docker": "needs a container of the image, on the server or the docker group's (tests/docker/, "
    "tests/reliability/test_container_faults.py run these commands' checks)",
    "docker buildx version": "the docker group's own probe (testkit/docker.py, buildkit_problem) checks it",
    "sudo": "on the server, in a Session Manager shell",
    "pytest": "the test suite itself (`--deep`: ten times the fuzz cases, many minutes)",
    "python -m bench.serving": "a benchmark: minutes of load on this machine, run by hand (`make bench`)",
    "pytest -m docker": "the docker group itself",
    "python -m smoke URL": "a template (URL, V, R stand for values); ci-cd.md's block runs the smoke command",
    "python -m smoke.drift_report": "a template, or the drift-report workflow's step with its SERVICE_URL; "
    "tests/test_smoke.py runs the report against the real service",
    "python -m model.gate": "a template (URL); tests/test_gate.py runs the gate against a real service",
    "aws iam simulate-principal-policy": "IAM's policy simulator evaluates the role's real policies in "
    "an AWS account, and moto evaluates no IAM; tests/account/test_authorization.py evaluates the same "
    "requests offline against the rendered policies",
    "python -m smoke.guardrail URL": "a template (URL, V, R stand for values); tests/test_guardrail.py runs "
    "the guardrail against HTTP servers on loopback, and the rehearsal runs it against containers",
    "aws ecr delete-repository": "deletes a repository and its images for good, a step a person takes on "
    "purpose at teardown (`<stack>` stands for the name); its arguments are checked here",
    "python -u -m pulumi.policy": "what Pulumi's language host runs (`<engine>` is the engine's address); "
    "tests/policy/test_pack_venv.py starts the pack exactly so, from policy/.venv",
    "python -m bench.first_run": "a benchmark: clones the tree and trains (about a minute), run by hand",
    "python -m bench.drift_noise": "a benchmark: 300 draws of the test split, run by hand",
    "python -m model.cache": "tests/test_cache.py::test_the_committed_evaluation_matches_this_checkout "
    "runs the same check",
    "python -m model.train": "a usage synopsis ([--out DIR] ...); `make train` and tests/test_model.py train",
}
# Inline spans that name a command in a sentence rather than give one to run (exact matches only).
MENTIONS: dict[str, str] = {
    "python -m smoke.guardrail": "the guardrail's name in a sentence; tests/test_guardrail.py runs it",
    "python -m pulumi.policy": "the pack's entry point named in a sentence; "
    "tests/policy/test_pack_venv.py runs it",
    "aws cloudwatch describe-alarms": "the guardrail's call named in a sentence; tests/test_guardrail.py "
    "runs smoke/guardrail.py with a stand-in aws that answers it",
    "python -m smoke": "the smoke command's name in a sentence; ci-cd.md's block runs it",
    "python -m account.bootstrap": "the bootstrap's name in a sentence; its command lines are run as written "
    "by tests/account/test_bootstrap.py",
}
PACK_VENV = (
    "the policy pack's own venv: `make dev` makes the same (Makefile PACK_STAMP), and tests/policy/"
    "test_pack_venv.py::test_the_pack_venv_holds_exactly_the_locked_versions checks it against the lock"
)
ELSEWHERE: dict[str, str] = {
    "python3 -m venv policy/.venv": PACK_VENV,
    "policy/.venv/bin/pip install": PACK_VENV,
    "rm -rf policy/.venv": PACK_VENV,
    "grep -v '^-c ' policy/requirements.txt": PACK_VENV,
    "{ grep '^#' policy/constraints.txt": PACK_VENV,
    "mv policy/constraints.new": PACK_VENV,
    ".venv/bin/python -m account.registries keep-in-state": "on an export of the previous version's state, "
    "by tests/infra/test_migration.py::"
    "test_keep_in_state_marks_the_old_repositories_retained_and_nothing_else "
    "(the export itself needs the Pulumi CLI)",
    "rm state.json": "the migration's scratch file, made by `pulumi stack export` (Pulumi CLI); "
    "tests/infra/test_migration.py::test_the_documented_commands_are_in_order pins the block",
    "AWS_REGION=us-east-1 .venv/bin/python -m account.bootstrap": "against moto, as written, by "
    "tests/account/test_bootstrap.py::test_each_documented_bootstrap_command_runs_as_written",
    "make bootstrap": "would install into .venv first (make dev); "
    "test_make_bootstrap_runs_the_documented_bootstrap_line checks with `make -n` that it runs the "
    "module line the bootstrap test runs against moto",
}
# Placeholders a reader replaces, and what the stand-in puts in their place.
PLACEHOLDERS = {
    "'<the VersionId to restore>'": "{good_version}",
    "http://127.0.0.1:8080": "{url}",
}
AWS_GLOBAL_OPTIONS = {"--query", "--output", "--region", "--profile", "--endpoint-url", "--no-cli-pager"}


# --- extraction ------------------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced shell block (or one inline `aws` span) of a page: its commands, continuations joined."""

    doc: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _strip_comment(line: str) -> str:
    # a comment is `#` after two or more spaces (as the docs write them); `#` inside a URL stays
    return re.split(r"\s{2,}#\s", line, maxsplit=1)[0].strip()


def blocks_of(path: Path) -> list[Block]:
    """The shell blocks and the inline `aws ...` spans of one Markdown page."""
    found: list[Block] = []
    prose: list[str] = []
    current: list[str] | None = None
    inside = False
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("```"):
            if inside:
                if current:
                    found.append(Block(path.name, current))
                current, inside = None, False
            else:
                inside = True
                current = [] if line in SHELL_FENCES else None
            continue
        if not inside:
            prose.append(raw)
        elif current is not None:
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command = _strip_comment(pending + line)
            pending = ""
            if command and not command.startswith("#"):
                current.append(command)
    for span in re.findall(r"`([^`]+)`", " ".join(prose)):
        words = span.split()
        if len(words) > 1 and words[0] in INLINE_COMMANDS:
            found.append(Block(path.name, [" ".join(words)]))
    return found


def all_blocks() -> list[Block]:
    """Every block of every page in docs/."""
    return [block for path in DOCS for block in blocks_of(path)]


def substitutions(line: str) -> list[str]:
    """The commands inside each `$( ... )` of a line, parentheses balanced (queries have their own)."""
    found = []
    start = line.find("$(")
    while start != -1:
        depth, i = 1, start + 2
        while i < len(line) and depth:
            depth += {"(": 1, ")": -1}.get(line[i], 0)
            i += 1
        found.append(line[start + 2 : i - 1])
        start = line.find("$(", i)
    return found


def command_words(line: str) -> list[str]:
    """The line's words (as the shell splits them) without the leading VAR=value ones (its environment).

    Empty for a line of assignments only, such as `KEY=...` or `NEW="$(aws ...)"`.
    """
    try:
        words = shlex.split(line)
    except ValueError:  # prose with an apostrophe in a placeholder (`<the instance's URN>`)
        words = line.split()
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0], flags=re.DOTALL):
        words.pop(0)
    return words


def aws_commands() -> list[list[str]]:
    """Every AWS CLI command of the docs, as words: whole lines and the ones inside `$( ... )`."""
    found = []
    for block in all_blocks():
        for line in block.lines:
            for words in [command_words(line), *(shlex.split(inner) for inner in substitutions(line))]:
                if words[:1] == ["aws"]:
                    found.append(words)
    return found


@dataclass(frozen=True)
class How:
    """How the tests treat one command line."""

    kind: str  # "run", "listed" or "elsewhere"
    why: str


def how(line: str) -> How:
    """The classification of one command line of the docs."""
    if line in MENTIONS:
        return How("listed", MENTIONS[line])
    for prefix, why in ELSEWHERE.items():
        if line.startswith(prefix):
            return How("elsewhere", why)
    command = " ".join(command_words(line))
    for prefix, why in sorted(NOT_OFFLINE.items(), key=lambda item: -len(item[0])):
        if command == prefix or command.startswith(prefix + " "):
            return How("listed", why)
    return How("run", "runs on the stand-in stack")


def runnable_script(block: Block) -> list[str]:
    """The block's lines that run here; of a listed line, an `echo` of each `$(...)` and `$VAR` in it.

    So a listed line's arguments are still computed: `$(pulumi stack output NAME)` must name an
    output, `$(aws ...)` runs against moto, a variable must have been set by the lines before.
    """
    script: list[str] = []
    assigned: set[str] = set()  # variables the block's own lines set (not the workflow's, e.g. SERVICE_URL)
    for line in block.lines:
        decision = how(line).kind
        if decision == "run":
            script.append(line)
            assigned |= set(re.findall(r"(?:^|[;\s])([A-Za-z_]\w*)=", line))
        elif decision == "listed":
            script += [f'echo "$({inner})"' for inner in substitutions(line)]
            used = re.findall(r"\$\{?([A-Za-z_]\w*)", line)
            script += [f'echo "${name}"' for name in used if name in assigned]
    return script


# --- the stand-in stack ----------------------------------------------------------------------------


@dataclass
class StandIn:
    """A deployed prod stack on moto: what the commands read, and what their expectations compare."""

    server: MotoServer
    outputs: dict[str, str]
    good_version: str = ""
    good_state: bytes = b""
    servers: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    allowed_cidr: str = "0.0.0.0/0"

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.server.url)


@pytest.fixture(scope="module")
def registered() -> dict[str, Any]:
    """What the program registers and exports, single and fleet, under Pulumi's mocks."""
    single = run_program(cli_config("prod"))
    fleet = run_program(cli_config("prod", mode="fleet"))
    alarm_type = "aws:cloudwatch/metricAlarm:MetricAlarm"
    return {
        "exports": {**fleet.exports, **single.exports},
        "alarms": sorted({r.inputs["name"] for d in (single, fleet) for r in d.of_type(alarm_type)}),
        "topic": single.one("aws:sns/topic:Topic").inputs["name"],
        "curl": single.exports["curl"],
    }


@pytest.fixture
def stand_in(aws_stand_in: MotoServer, registered: dict[str, Any]) -> StandIn:
    """The moto account seeded as after a prod deploy and one bad state write."""
    stand = StandIn(aws_stand_in, outputs={})
    s3 = stand.client("s3")
    s3.create_bucket(Bucket=STATE_BUCKET)
    s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    stand.good_state = json.dumps({"version": 3, "checkpoint": {"stack": "prod", "good": True}}).encode()
    stand.good_version = s3.put_object(Bucket=STATE_BUCKET, Key=STATE_KEY, Body=stand.good_state)["VersionId"]
    s3.put_object(Bucket=STATE_BUCKET, Key=STATE_KEY, Body=b'{"version": 3, "checkpoint": "garbled"}')

    ec2 = stand.client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    group = ec2.create_security_group(GroupName="cali-app", Description="app port", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": stand.allowed_cidr}]}
        ],
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"Key": "Name", "Value": "cali-instance"}, {"Key": "stack", "Value": "prod"}]
    for _ in range(2):  # the serving one, then the one a failed `up` left (newer launch time)
        (instance,) = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnets[0]["SubnetId"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"]
        stand.servers.append(instance["InstanceId"])
        time.sleep(1.1)  # LaunchTime has whole seconds

    elbv2 = stand.client("elbv2")
    balancer = elbv2.create_load_balancer(
        Name="cali-alb", Subnets=[s["SubnetId"] for s in subnets[:2]], SecurityGroups=[group]
    )["LoadBalancers"][0]["LoadBalancerArn"]
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=balancer, Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "60"}]
    )

    ecr = stand.client("ecr")
    ecr.create_repository(repositoryName="cali-housing-prod", imageTagMutability="IMMUTABLE")
    for n in range(2):
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"digest": f"sha256:{n:064x}"},
                "layers": [],
            }
        )
        pushed = ecr.put_image(
            repositoryName="cali-housing-prod", imageManifest=manifest, imageTag=f"content-{n}"
        )
        stand.digests.append(pushed["image"]["imageId"]["imageDigest"])
        time.sleep(1.1)

    cloudwatch = stand.client("cloudwatch")
    for name in registered["alarms"]:  # the names the program gives them, not the docs'
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="Errors5xx",
            Namespace="CaliHousing",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="the stand-in")
    stand.alarms = registered["alarms"]

    stand.outputs = {
        "state_bucket": STATE_BUCKET,
        "ingress_group": group,
        "instance_id": stand.servers[0],
        "load_balancer": balancer,
        "autoscaling_group": "cali-asg",
        "log_group": "cali-logs",
        "url": f"http://{PUBLIC_IP}",
        "curl": registered["curl"],
    }
    return stand


PULUMI_STAND_IN = """#!{python}
# `pulumi stack output NAME [--stack S]` from the stand-in stack; every other use is not offline.
import json, sys
args = sys.argv[1:]
if args[:2] != ["stack", "output"] or len(args) < 3:
    sys.exit("pulumi " + " ".join(args) + ": the Pulumi CLI is not runnable offline")
outputs = json.load(open({outputs!r}))
if args[2] not in outputs:
    sys.exit("pulumi stack output: no output named " + args[2])
print(outputs[args[2]])
"""


def run_block(
    script: list[str], stand: StandIn, workdir: Path, url: str | None
) -> subprocess.CompletedProcess:
    """The script under bash -eu, with the stand-in's `pulumi` first on PATH and AWS pointed at moto."""
    outputs = dict(stand.outputs)
    if url is not None:
        outputs["url"] = url
        outputs["curl"] = outputs["curl"].replace(f"http://{PUBLIC_IP}", url)
    (workdir / "outputs.json").write_text(json.dumps(outputs))
    fake = workdir / "bin" / "pulumi"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(PULUMI_STAND_IN.format(python=sys.executable, outputs=str(workdir / "outputs.json")))
    fake.chmod(0o755)
    values = {"good_version": stand.good_version, "url": url or ""}
    text = "\n".join(script)
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value.format(**values))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "PATH": os.pathsep.join([str(fake.parent), str(Path(sys.executable).parent), env["PATH"]]),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": stand.server.url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


# --- what each runnable block must do ----------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """A check on one runnable block: `key` is a piece of its text; `check(stand, stdout)` asserts."""

    key: str
    check: Callable[[StandIn, str], None]
    needs_service: bool = False


def _restored(stand: StandIn, out: str) -> None:
    s3 = stand.client("s3")
    current = s3.get_object(Bucket=STATE_BUCKET, Key=STATE_KEY)["Body"].read()
    assert current == stand.good_state, "the old version is the current state again"
    versions = s3.list_object_versions(Bucket=STATE_BUCKET, Prefix=STATE_KEY)["Versions"]
    assert len(versions) == 3, "the bad version is kept, as a noncurrent one"
    assert stand.good_version in out, "the listing showed the version to pick"


def _alarm(name: str) -> Callable[[StandIn, str], None]:
    def check(stand: StandIn, out: str) -> None:
        assert name in stand.alarms, f"the program registers no alarm named {name}: {stand.alarms}"
        assert out.split() == [name, "OK"]

    return check


def _json_answers(field_name: str, count: int | None = None) -> Callable[[StandIn, str], None]:
    def check(_stand: StandIn, out: str) -> None:
        decoder, answers, at = json.JSONDecoder(), [], 0
        while out[at:].strip():
            at += len(out[at:]) - len(out[at:].lstrip())
            answer, at = decoder.raw_decode(out, at)
            answers.append(answer)
        assert answers, "an answer"
        assert count is None or len(answers) == count, out
        for answer in answers:
            assert field_name in answer, answer

    return check


def _outputs(*names: str) -> Callable[[StandIn, str], None]:
    def check(stand: StandIn, out: str) -> None:
        assert out.split() == [stand.outputs[name] for name in names]

    return check


EXPECTATIONS = [
    Expectation("copy-object", _restored),
    # The simulator lines are listed (an account's IAM only); what runs is the variables they use.
    Expectation(
        "simulate-principal-policy",
        lambda stand, out: _equal(set(out.split()), {"123456789012", "us-east-1"}, "the account and region"),
    ),
    Expectation(
        "describe-load-balancer-attributes", lambda stand, out: _equal(out.split(), ["60"], "idle timeout")
    ),
    Expectation(
        "describe-security-group-rules",
        lambda stand, out: _equal(out.split()[:2], [stand.allowed_cidr, "80"], "the allowedCidrs rule"),
    ),
    Expectation("NEW=", lambda stand, out: _equal(out.split(), [stand.servers[-1]], "the newest server")),
    Expectation(
        'aws logs tail "$(pulumi stack output log_group)" --follow\naws ssm',
        _outputs("log_group", "instance_id"),
    ),
    Expectation('aws logs tail "$(pulumi stack output log_group)" --follow', _outputs("log_group")),
    Expectation("describe-instance-refreshes", _outputs("autoscaling_group")),
    Expectation("gh variable set SERVICE_URL", _outputs("url", "ingress_group")),
    Expectation(
        "aws ecr describe-images --repository-name cali-housing-prod --query",
        lambda stand, out: _equal(
            re.findall(r"sha256:[0-9a-f]{64}", out), stand.digests, "digests, oldest first"
        ),
    ),
    Expectation(
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        lambda stand, out: _equal(bool(re.fullmatch(r"ami-[0-9a-f]+", out.strip())), True, "an AMI id"),
    ),
    Expectation(
        "aws ecr describe-images --repository-name cali-housing-prod",
        lambda stand, out: _equal(
            sorted(re.findall(r"sha256:[0-9a-f]{64}", out)), sorted(stand.digests), "digests"
        ),
    ),
    Expectation("aws --version", lambda stand, out: _equal(out.startswith("aws-cli/"), True, "a version")),
    Expectation(
        "aws sts get-caller-identity", lambda stand, out: _equal(ACCOUNT in out, True, "the account")
    ),
    Expectation(
        "sed -n 's/^secretsprovider: //p' Pulumi.prod.yaml",
        lambda stand, out: _equal(
            out.split(),
            ["awskms://alias/cali-housing-pulumi?region=us-east-1", STATE_BUCKET],
            "the stack's secrets provider, then prod's state bucket",
        ),
    ),
    Expectation(
        'eval "$(pulumi stack output curl)"\ncurl', _json_answers("prediction", 2), needs_service=True
    ),
    Expectation('eval "$(pulumi stack output curl)"', _json_answers("prediction", 1), needs_service=True),
    Expectation(
        'curl "$(pulumi stack output url)/ready"', _json_answers("model_version", 1), needs_service=True
    ),
    Expectation(
        "python -m infra.release",
        lambda stand, out: _equal(bool(re.match(r"tag=content-[0-9a-f]+\n", out)), True, "the content tag"),
    ),
    Expectation(
        "python scripts/runner_access.py close",
        lambda stand, out: _equal(
            out.strip(),
            f"runner_access: removed 0 temporary rule(s) from {stand.outputs['ingress_group']}",
            "close",
        ),
    ),
    Expectation(
        "python -m smoke", lambda stand, out: _equal(out.count("smoke: all checks passed"), 2, "smoke"), True
    ),
    *(
        Expectation(f"--alarm-names cali-housing-prod-{key}", _alarm(f"cali-housing-prod-{key}"))
        for key in ("errors", "latency", "drift", "no-healthy-target", "recover")
    ),
]


def _equal(got: object, want: object, what: str) -> None:
    assert got == want, f"{what}: got {got!r}, expected {want!r}"


def expectation_for(block: Block) -> Expectation:
    """The block's expectation: the first (most specific) whose key the block contains.

    Raises:
        AssertionError: None matches: a runnable block without a check would be a test that cannot fail.
    """
    matching = [e for e in EXPECTATIONS if e.key in block.text]
    assert matching, f"{block.doc}: no expectation matches this runnable block; give it one:\n{block.text}"
    return matching[0]


def runnable_blocks() -> list[pytest.param]:
    params = []
    for block in all_blocks():
        if runnable_script(block):
            marks = [pytest.mark.awscli] if any("aws " in line for line in runnable_script(block)) else []
            params.append(pytest.param(block, id=f"{block.doc}:{block.lines[0][:60]}", marks=marks))
    return params


# --- the tests ---------------------------------------------------------------------------------------


def test_the_extraction_finds_the_runbooks_and_the_deploy_commands() -> None:
    texts = [block.text for block in all_blocks()]
    for piece in (
        "aws s3api copy-object",
        "describe-load-balancer-attributes --load-balancer-arn",
        "gh variable set",
    ):
        assert any(piece in text for text in texts), piece


def test_every_docs_command_is_run_or_listed() -> None:
    listing = []
    for block in all_blocks():
        for line in block.lines:
            decision = how(line)
            listing.append(f"{block.doc}: [{decision.kind}] {line}  -- {decision.why}")
        if runnable_script(block):
            expectation_for(block)  # a runnable block without a check is a test that cannot fail
    assert any("[listed]" in row for row in listing)
    assert any("[run]" in row for row in listing)
    print("\n".join(listing))  # shown with -s: the list the issue asked for


def test_the_bootstrap_lines_left_to_their_own_test_are_the_ones_it_runs() -> None:
    theirs = {command for _, command in documented_bootstrap_commands()}
    mine = [
        line
        for block in all_blocks()
        for line in block.lines
        if "-m account.bootstrap" in line and line not in MENTIONS
    ]
    assert mine
    for line in mine:
        assert how(line).kind == "elsewhere", line
        assert line in theirs, line


def test_every_stack_output_the_docs_read_is_one_the_program_exports(registered: dict[str, Any]) -> None:
    asked = {name for block in all_blocks() for name in re.findall(r"pulumi stack output (\w+)", block.text)}
    assert {"instance_id", "url", "state_bucket", "load_balancer"} <= asked
    assert asked <= set(registered["exports"]), asked - set(registered["exports"])


def test_every_aws_command_names_a_real_operation_with_its_required_arguments() -> None:
    # Against botocore's service models, which the AWS CLI (v1 and v2) is generated from: the
    # operation exists, every --option is one of its members or a global option, and every
    # required member is given. This is what catches a missing --load-balancer-arn.
    session = botocore.session.get_session()
    customizations = {("logs", "tail")}  # client-side commands of the CLI, no API operation
    commands = aws_commands()
    assert len(commands) >= 10, commands
    for words in commands:
        line = " ".join(words)
        if words[1].startswith("--"):  # `aws --version`: the CLI's own option, run below
            continue
        service, command = {"s3api": "s3"}.get(words[1], words[1]), words[2]
        if (service, command) in customizations:
            continue
        model = session.get_service_model(service)
        operations = {xform_name(name, "-"): name for name in model.operation_names}
        assert command in operations, f"{line}: no operation {command} in {service}"
        shape = model.operation_model(operations[command]).input_shape
        members = {f"--{xform_name(name, '-')}" for name in (shape.members if shape else {})}
        given = {word for word in words if word.startswith("--")}
        unknown = given - members - AWS_GLOBAL_OPTIONS
        assert not unknown, f"{line}: {unknown} are not arguments of {operations[command]}"
        required = {f"--{xform_name(name, '-')}" for name in (shape.required_members if shape else [])}
        assert not required - given, f"{line}: the required {required - given} are missing"


def test_make_bootstrap_runs_the_documented_bootstrap_line() -> None:
    # `make -n` prints what the target would run, and runs nothing (not even the venv's install)
    done = subprocess.run(
        ["make", "-n", "bootstrap", "GITHUB_REPO=OWNER/REPO"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ".venv/bin/python -m account.bootstrap --github-repo OWNER/REPO" in done.stdout
    assert any(
        command.endswith(".venv/bin/python -m account.bootstrap --github-repo OWNER/REPO")
        for _, command in documented_bootstrap_commands()
    ), "the same module line, run against moto by the bootstrap's test"


@pytest.mark.parametrize("block", runnable_blocks())
def test_each_runnable_docs_block_does_what_it_says(
    block: Block, stand_in: StandIn, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    expectation = expectation_for(block)
    url = request.getfixturevalue("live_server").url if expectation.needs_service else None
    done = run_block(runnable_script(block), stand_in, tmp_path, url)
    assert done.returncode == 0, f"{block.text}\n--- stderr ---\n{done.stderr[-3000:]}"
    expectation.check(stand_in, done.stdout)


def test_the_alarm_names_the_runbooks_use_are_the_ones_the_program_registers(
    registered: dict[str, Any],
) -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(r"cali-housing-prod-[a-z-]+[a-z]", text))
    assert named == {*registered["alarms"], registered["topic"]}
    # each runbook's heading and the email subject it quotes, "ALARM: <name>", as AWS sends it
    headings = re.findall(r"^## Alarm: [^(]*\(`([^`]+)`", text, flags=re.MULTILINE)
    subjects = re.findall(r'"ALARM: ([^"]+)"', text)
    assert sorted(headings) == registered["alarms"]
    assert set(subjects) == set(registered["alarms"])


def test_the_workflow_count_in_ci_cd_is_the_number_of_workflows() -> None:
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    count = len(list((ROOT / ".github" / "workflows").glob("*.yml")))
    text = (ROOT / "docs" / "ci-cd.md").read_text()
    (said,) = re.findall(r"(\w+) workflows in `\.github/workflows/`", text)
    assert said == words[count]


def test_the_cost_figures_live_in_deploy_md_only() -> None:
    stack_file = (ROOT / "Pulumi.prod.yaml").read_text()
    assert "USD" not in stack_file, "Pulumi.prod.yaml repeats a figure: refer to docs/deploy.md instead"
    assert "docs/deploy.md#what-it-costs" in stack_file
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert "## What it costs" in deploy
    costs = deploy.split("## What it costs", 1)[1].split("\n## ", 1)[0]
    (single_total,) = re.findall(r"\| \*\*Total\*\* \| \| \*\*~([\d.]+) USD\*\* \|", costs)
    assert f"About **{single_total} USD a month**" in costs, "the section's headline is its table's total"
    elsewhere = deploy.replace(costs, "")
    assert f"{single_total} USD" not in elsewhere, "a total repeated outside the section drifts from it"


def listing() -> list[str]:
    """Each docs command with its classification and reason, tab-separated (a reading aid)."""
    return [
        f"{block.doc}\t{how(line).kind}\t{line}\t{how(line).why}"
        for block in all_blocks()
        for line in block.lines
    ]


if __name__ == "__main__":  # python -m tests.infra.test_docs_commands prints the list
    print("\n".join(listing()))
