"""The change-impact table of docs/deploy.md, computed: what `pulumi up` does for each setting and commit.

For every stack setting in Pulumi.yaml (read from the file, so a new one without a row fails) the
program runs twice under Pulumi's mocks, with the base value and a changed one, in both modes; the
registered inputs of each resource are compared the way the engine's diff does, and each change is
an update or a replacement by the provider's replace-on-change properties (`FORCE_NEW`) and the
program's own `replace_on_changes`, `ignore_changes` and dynamic-provider diffs. A replacement
changes the id every dependent reads, so dependents of a replaced resource change too. The outcome
per mode is one of the table's words, and the test holds the table to it, row by row.

What this cannot see: the provider's real diff (a computed default, a normalisation). `pulumi
preview --diff` against a real stack shows it; the report lists the commands.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra import release
from infra.readiness import GATE_INPUTS
from tests.infra.conftest import (
    IMAGE_TAG,
    ROOT,
    Deployment,
    Registered,
    cli_config,
    project_file,
    run_program,
)

DOC = ROOT / "docs" / "deploy.md"
REPO = release.repository_name("prod")
BASE_DIGEST = "sha256:" + "1a" * 32
OTHER_TAG = "content-" + "2b" * 16
OTHER_DIGEST = "sha256:" + "2b" * 32
# What ECR holds in every run: the base tag and a second build, as CI pushes them before `up`.
ECR = {(REPO, IMAGE_TAG): BASE_DIGEST, (REPO, OTHER_TAG): OTHER_DIGEST}

GATE = "pulumi-python:dynamic:Resource"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
GROUP = "aws:autoscaling/group:Group"
LISTENER = "aws:lb/listener:Listener"

# Replace-on-change inputs of the types a setting reaches: the terraform-provider-aws schema's
# ForceNew attributes (internal/service/<service>/<resource>.go), in Pulumi's input names. Read in
# the source for ecr/repository.go (`name`, `encryption_configuration` ForceNew; `force_delete`,
# `image_tag_mutability`, scanning updatable); the instance's `instance_type` is updatable by
# stop/start per pulumi_aws ec2/instance.py, and a security group's description has "no Update API"
# (pulumi_aws ec2/security_group.py). The rest follow the provider's documented ForceNew attributes;
# `pulumi preview --diff` on a real stack is the check (docs/deploy.md). A type that changes and is
# missing here fails the test, so the table never guesses.
FORCE_NEW: dict[str, frozenset[str]] = {
    INSTANCE: frozenset({"ami", "subnetId", "availabilityZone", "associatePublicIpAddress", "keyName"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "namePrefix", "description", "vpcId"}),
    LAUNCH_TEMPLATE: frozenset({"name", "namePrefix"}),  # every other change is a new version
    GROUP: frozenset({"name", "namePrefix"}),
    TARGET_GROUP: frozenset({"name", "namePrefix", "port", "protocol", "vpcId", "targetType"}),
    LISTENER: frozenset({"loadBalancerArn"}),
    "aws:lb/loadBalancer:LoadBalancer": frozenset({"name", "namePrefix", "internal", "loadBalancerType"}),
    "aws:ec2/subnet:Subnet": frozenset({"vpcId", "cidrBlock", "availabilityZone"}),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": frozenset({"subnetId"}),
    ASSOCIATION: frozenset({"allocationId", "instanceId", "networkInterfaceId", "privateIpAddress"}),
    "aws:cloudwatch/metricAlarm:MetricAlarm": frozenset({"name"}),
    "aws:cloudwatch/logGroup:LogGroup": frozenset({"name", "namePrefix"}),
    "aws:ecr/repository:Repository": frozenset({"name", "encryptionConfigurations"}),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": frozenset({"repository"}),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix"}),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": frozenset({"bucket"}),
    "aws:s3/bucketPolicy:BucketPolicy": frozenset({"bucket"}),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": frozenset({"bucket"}),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": frozenset({"bucket"}),
    "aws:s3/bucketVersioning:BucketVersioning": frozenset({"bucket"}),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": frozenset(
        {"bucket"}
    ),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"name", "role"}),
    "aws:autoscaling/policy:Policy": frozenset({"name", "autoscalingGroupName"}),
    "aws:sns/topicSubscription:TopicSubscription": frozenset({"topic", "protocol", "endpoint"}),
    "aws:ec2/flowLog:FlowLog": frozenset({"vpcId", "logDestination", "trafficType", "iamRoleArn"}),
    "aws:ec2/vpcEndpoint:VpcEndpoint": frozenset({"vpcId", "serviceName", "vpcEndpointType"}),
    "aws:acm/certificate:Certificate": frozenset({"domainName", "validationMethod"}),
    "aws:route53/record:Record": frozenset({"zoneId", "name", "type"}),
}


@dataclass(frozen=True)
class Step:
    """What the engine would do to one resource."""

    op: str  # create, delete, update, replace
    urn: str
    typ: str
    keys: tuple[str, ...] = ()


def _replaced_by(resource: Registered, keys: set[str]) -> bool:
    if resource.typ == GATE:  # infra/readiness.py and infra/rollout.py decide in their own diff()
        return bool(keys & set(GATE_INPUTS)) if "instance_id" in resource.inputs else False
    if resource.typ == INSTANCE and "userData" in keys and resource.inputs.get("userDataReplaceOnChange"):
        return True
    if any(key == path.split(".")[0].split("[")[0] for key in keys for path in resource.replace_on_changes):
        return True
    if resource.typ not in FORCE_NEW:
        raise AssertionError(f"{resource.typ} changes ({sorted(keys)}): add its ForceNew inputs to FORCE_NEW")
    return bool(keys & FORCE_NEW[resource.typ])


def plan(base: Deployment, changed: Deployment) -> list[Step]:
    """The steps from `base` to `changed`, in registration order, replacements propagated to readers."""
    before = {r.urn: r for r in base.resources if r.custom}
    steps: list[Step] = []
    replaced: set[str] = set()
    for resource in (r for r in changed.resources if r.custom):
        old = before.pop(resource.urn, None)
        if old is None:
            steps.append(Step("create", resource.urn, resource.typ))
            replaced.add(resource.urn)  # a new resource is a new id for whatever reads it
            continue
        keys = {
            k
            for k in set(old.inputs) | set(resource.inputs)
            if old.inputs.get(k) != resource.inputs.get(k) and k not in resource.ignore_changes
        }
        keys |= {
            k
            for k, urns in resource.property_dependencies.items()
            if k not in resource.ignore_changes and set(urns) & replaced
        }
        keys.discard("__provider")
        if not keys:
            continue
        if _replaced_by(resource, keys):
            steps.append(Step("replace", resource.urn, resource.typ, tuple(sorted(keys))))
            replaced.add(resource.urn)
        else:
            steps.append(Step("update", resource.urn, resource.typ, tuple(sorted(keys))))
    steps += [Step("delete", urn, r.typ) for urn, r in before.items()]
    return steps


# The outcome words of the table, and the downtime each means.
NOTHING = "nothing"
IN_PLACE = "in place"
STOP_START = "in place, the server stopped and started"
GATED = "new server through the gate"
REFRESH = "fleet refresh"
BLUE_GREEN = "new fleet behind a new target group"
REBUILD = "rebuilt: a new address"
REFUSED = "refused (a protected resource would be replaced)"
DOWNTIME = {
    NOTHING: "none",
    IN_PLACE: "none",
    STOP_START: "minutes",
    GATED: "seconds (the address moves)",
    REFRESH: "none (rolling; alarms roll it back)",
    BLUE_GREEN: "none (the listeners switch once the new instances are healthy)",
    REBUILD: "minutes; clients need the new address",
    REFUSED: "none (nothing is done)",
}
# The instance's inputs whose in-place update stops it (pulumi_aws ec2/instance.py docstrings:
# "Updates to this field will trigger a stop/start of the EC2 instance").
STOPPING = {"instanceType", "userData", "userDataBase64"}


def outcome(steps: list[Step], changed: Deployment) -> str:
    """One word for what `up` does to the service."""
    if not steps:
        return NOTHING
    protected = {r.urn for r in changed.resources if r.protect}
    if any(s.op == "replace" and s.urn in protected for s in steps):
        return REFUSED
    ops = {(s.typ, s.op) for s in steps}
    if (INSTANCE, "delete") in ops or (INSTANCE, "create") in ops:
        return REBUILD
    if (INSTANCE, "replace") in ops:
        # through the gate: the gate and the address association are replaced with it
        assert (GATE, "replace") in ops, steps
        assert (ASSOCIATION, "replace") in ops, steps
        return GATED
    if any(s.typ == INSTANCE and s.op == "update" and STOPPING & set(s.keys) for s in steps):
        return STOP_START
    if (TARGET_GROUP, "replace") in ops:
        # the old instances serve on the old target group until a new Auto Scaling group holds the
        # new one (test_a_fleet_port_change_switches_the_listeners_only_after_the_new_group_exists)
        assert (GROUP, "replace") in ops, steps
        return BLUE_GREEN
    if (LAUNCH_TEMPLATE, "update") in ops:
        return REFRESH
    return IN_PLACE


# A changed value per setting (with what it needs to be valid), in the order of Pulumi.yaml.
CHANGES: dict[str, dict[str, object]] = {
    "stateBucket": {"stateBucket": "cali-housing-state-other"},
    "stateNoncurrentDays": {"stateNoncurrentDays": 30},
    "instanceType": {"instanceType": "t3.medium"},
    "appPort": {"appPort": 8080},
    "allowedCidrs": {"allowedCidrs": ["203.0.113.0/24"]},
    "logRetentionDays": {"logRetentionDays": 90},
    "keepImages": {"keepImages": 20},
    "imageTag": {"imageTag": OTHER_TAG},
    "imageDigest": {"imageDigest": OTHER_DIGEST},
    "ami": {"ami": "ami-0123456789abcdef0"},
    "rootVolumeGb": {"rootVolumeGb": 32},
    "alertEmail": {"alertEmail": "ops@example.com"},
    "mode": {},  # the other mode: see run_pair
    "fleetZones": {"fleetZones": 3},
    "fleetMinSize": {"fleetMinSize": 1},
    "fleetMaxSize": {"fleetMaxSize": 6},
    "fleetDesiredSize": {"fleetDesiredSize": 3},
    "scalingMetric": {"scalingMetric": "requests"},
    "scalingCpuPercent": {"scalingCpuPercent": 70},
    "scalingRequestsPerSecond": {"scalingRequestsPerSecond": 1000},
    "refreshMinHealthyPercent": {"refreshMinHealthyPercent": 90},
    "domain": {"domain": "api.example.com", "hostedZone": "example.com"},
    "hostedZone": {"domain": "api.example.com", "hostedZone": "example.com"},
    "fleetSessionManager": {"fleetSessionManager": True},
    "flowLogs": {"flowLogs": False},
    "fleetAccessLogs": {"fleetAccessLogs": False},
}
MODES = ("single", "fleet")


def settings() -> list[str]:
    """Every stack setting Pulumi.yaml declares."""
    return list(project_file()["config"])


_BASES: dict[str, Deployment] = {}


def base_run(mode: str) -> Deployment:
    if mode not in _BASES:
        _BASES[mode] = run_program(cli_config(mode=mode), ecr_images=ECR)
    return _BASES[mode]


_CHANGED: dict[tuple[str, str], Deployment] = {}


def run_pair(setting: str, mode: str) -> tuple[Deployment, Deployment]:
    """The base run of `mode` and the run with `setting` changed (each made once per session)."""
    if (setting, mode) not in _CHANGED:
        change = (
            CHANGES[setting] if setting != "mode" else {"mode": "fleet" if mode == "single" else "single"}
        )
        _CHANGED[setting, mode] = run_program(cli_config(**{"mode": mode, **change}), ecr_images=ECR)
    return base_run(mode), _CHANGED[setting, mode]


# --- the table in docs/deploy.md -------------------------------------------------------------------


def doc_table() -> dict[str, list[str]]:
    """The change-impact table's rows: first cell's `names` -> the other cells, backticks stripped."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("<!-- change-impact:start -->", 1)[1].split("<!-- change-impact:end -->", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or set(cells[0]) <= {"-", " ", ":"} or cells[0] == "Change":
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            rows[name] = [c.replace("`", "") for c in cells[1:]]
    return rows


def test_every_setting_in_pulumi_yaml_has_a_row_and_a_change() -> None:
    rows = doc_table()
    missing = [s for s in settings() if s not in rows]
    assert missing == [], f"settings without a row in docs/deploy.md's change-impact table: {missing}"
    assert sorted(CHANGES) == sorted(settings()), "a setting without a changed value to test it with"


@pytest.mark.parametrize("setting", settings())
def test_the_table_row_is_what_the_engine_would_do(setting: str) -> None:
    expected = doc_table()[setting]
    computed: list[str] = []
    for mode in MODES:
        base, changed = run_pair(setting, mode)
        word = outcome(plan(base, changed), changed)
        computed += [word, DOWNTIME[word]]
    assert expected == computed, f"{setting}: the doc says {expected}, the program does {computed}"


def test_no_setting_stops_the_server_in_place() -> None:
    # instanceType and rootVolumeGb would, without replace_on_changes (infra/server.py)
    for setting in settings():
        base, changed = run_pair(setting, "single")
        assert outcome(plan(base, changed), changed) != STOP_START, setting


def test_a_port_change_makes_the_new_group_before_the_old_server_loses_its_rule() -> None:
    base, changed = run_pair("appPort", "single")
    steps = {s.urn.rsplit("::", 1)[1]: s for s in plan(base, changed)}
    group = steps["cali-sg"]
    assert group.op == "replace", "a new group, not the old one's rule rewritten"
    sg = changed.named("aws:ec2/securityGroup:SecurityGroup", "cali-sg")
    assert not sg.delete_before_replace, "create-before-delete: the old group stays until the end"
    assert steps["cali-instance"].op == "replace"
    # the engine deletes replaced resources only after the `up`'s creates, dependents first
    # (the old instance, then its group); the address moves after the gate (test_zero_downtime.py)


def _after(deployment: Deployment, urn: str) -> set[str]:
    """Every URN `urn` waits for: its dependencies, theirs, and so on."""
    by_urn = {r.urn: r for r in deployment.resources}
    seen: set[str] = set()
    todo = list(by_urn[urn].dependencies)
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo += by_urn[dep].dependencies if dep in by_urn else []
    return seen


# What a fleet port change updates in place before the new group exists, and why the old instances
# do not need it: each must be named here, so a new one fails the test below until it is judged.
UPDATED_BEFORE_THE_NEW_GROUP = {
    # a new version; the old group pins the version number it runs (launchTemplate.version)
    "cali-lt",
    # only health checks pass through it (infra/load_balancer.py HEALTH_LISTENER_PORT)
    "cali-health",
}


def test_a_fleet_port_change_switches_the_listeners_only_after_the_new_group_exists() -> None:
    base, changed = run_pair("appPort", "fleet")
    steps = plan(base, changed)
    by_name = {s.urn.rsplit("::", 1)[1]: s for s in steps}
    group = changed.named(GROUP, "cali-asg")
    # a new target group and a new Auto Scaling group behind it, each made before the old one goes
    assert by_name["cali-tg"].op == "replace"
    assert by_name["cali-asg"].op == "replace"
    for replaced in (changed.named(TARGET_GROUP, "cali-tg"), group):
        assert not replaced.delete_before_replace, f"{replaced.name}: create-before-delete"
    assert not {"name", "namePrefix"} & set(group.raw), "auto-named: the old and the new coexist"
    assert group.inputs["minElbCapacity"] >= 1, "its create waits for healthy instances in the target group"
    # the serving listener switches after the new group's create (it depends on the group)
    serving = [r for r in changed.of_type(LISTENER) if r.name != "cali-health"]
    assert serving
    assert all(group.urn in _after(changed, r.urn) for r in serving)
    assert by_name["cali-http"].op == "update"
    # and the new group's create waits until the new target group is in use (health-checked)
    assert changed.named(LISTENER, "cali-health").urn in group.dependencies
    # nothing the old instances need is deleted or changed in place before that: no deletes at all
    # (replaced resources go at the end of the `up`, pulumi/pulumi deployment_executor.go
    # performPostSteps), no security group touched, and every other in-place update waits for the group
    assert not [s for s in steps if s.op == "delete"]
    assert not [s for s in steps if s.typ == "aws:ec2/securityGroup:SecurityGroup"], "both ports open"
    early = {
        s.urn.rsplit("::", 1)[1]
        for s in steps
        if s.op == "update" and group.urn not in _after(changed, s.urn) and s.urn != group.urn
    }
    assert early == UPDATED_BEFORE_THE_NEW_GROUP
    assert base.named(GROUP, "cali-asg").inputs["launchTemplate"]["version"].isdigit()


# --- kinds of commit: the content tag decides -------------------------------------------------------

COMMITS = {
    "docs only": "docs/deploy.md",
    "model": "model/train.py",
    "service code": "service/routes.py",
    "Dockerfile": "Dockerfile",
    "infra": "infra/tags.py",
}


def copy_checkout(dest: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True)
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = copy_checkout(tmp_path_factory.mktemp("repo"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("kind", list(COMMITS))
def test_each_kind_of_commit_does_what_the_table_says(kind: str, checkout: Path) -> None:
    before = release.content_tag(checkout)
    path = checkout / COMMITS[kind]
    original = path.read_bytes()
    path.write_bytes(original + b"\n# a commit\n")
    try:
        after = release.content_tag(checkout)
    finally:
        path.write_bytes(original)
    computed: list[str] = []
    for mode in MODES:
        images = {
            (REPO, before): BASE_DIGEST,
            (REPO, after): BASE_DIGEST if after == before else OTHER_DIGEST,
        }
        base = run_program(cli_config(mode=mode, imageTag=before), ecr_images=images)
        changed = run_program(cli_config(mode=mode, imageTag=after), ecr_images=images)
        word = outcome(plan(base, changed), changed)
        computed += [word, DOWNTIME[word]]
    assert doc_table()[kind] == computed


# --- quiet previews: the same tree registers the same inputs ---------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_same_tree_registers_identical_inputs_for_every_resource(mode: str) -> None:
    tag = release.content_tag(ROOT)
    config = cli_config(mode=mode, imageTag="")
    first = run_program(config, ecr_images={(REPO, tag): BASE_DIGEST})
    second = run_program(config, ecr_images={(REPO, tag): BASE_DIGEST})

    def inputs(run: Deployment) -> dict[str, Any]:
        return {r.urn: (r.inputs, r.protect, r.import_id, r.replace_on_changes) for r in run.resources}

    assert inputs(first) == inputs(second)
    assert plan(first, second) == []
    assert any(r.typ == GATE for r in first.resources), "the gate is among them"
