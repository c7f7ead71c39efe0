"""Fixtures for the infrastructure tests: the Pulumi program under mocks, and a moto S3 server.

The program is the real `__main__.py`, run by Pulumi's unit-test runtime (`pulumi.runtime.set_mocks`)
with the config the CLI would pass for the prod stack. Nothing here needs the Pulumi CLI, its
plugins, AWS or the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import pytest
import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor

from infra.registry import MissingRepositoryError
from testkit.ports import free_port
from testkit.processes import stop

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "__main__.py"
PROJECT = "cali-housing"
ACCOUNT = "123456789012"
REGION = "us-east-1"
AMI = "ami-0a1b2c3d4e5f67890"
DIGEST = "sha256:" + "ab" * 32
PUBLIC_IP = "203.0.113.10"
STATE_BUCKET = f"cali-housing-state-{ACCOUNT}-{REGION}"
IMAGE_TAG = "0123456789ab"
ALB_DNS = "cali-alb-1234567890.us-east-1.elb.amazonaws.com"
ALB_ZONE_ID = "Z35SXDOTRQ7X7K"  # the zone AWS serves us-east-1 load balancers' names from
HOSTED_ZONE_ID = "Z0123456789EXAMPLE"
# The marker Pulumi's wire format puts on a secret value.
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - a marker, not a password


def venv_tool(name: str) -> str:
    """A console script installed next to this Python (the venv's bin), else one on PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (make dev installs it)")
    return found


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated classes as its modules load; not this project's code.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")


def _encode(value: Any) -> str:
    # The CLI hands every config value to the program as a string; objects and arrays as JSON.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def project_file() -> dict[str, Any]:
    """Pulumi.yaml, parsed."""
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def stack_file(stack: str = "prod") -> dict[str, Any]:
    """Pulumi.<stack>.yaml, parsed."""
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def full_key(key: str) -> str:
    """A project config key with its namespace, as the program sees it."""
    return key if ":" in key else f"{PROJECT}:{key}"


def cli_config(stack: str = "prod", **overrides: Any) -> dict[str, str]:
    """The config the Pulumi CLI would pass: Pulumi.yaml defaults, then the stack file, then `overrides`.

    Keys in `overrides` are project keys without namespace (e.g. appPort=8081). The account-specific
    stateBucket and a fixed imageTag are added as `pulumi config set` would.
    """
    config = {
        full_key(key): _encode(decl["default"])
        for key, decl in project_file()["config"].items()
        if "default" in decl
    }
    config.update({key: _encode(value) for key, value in stack_file(stack)["config"].items()})
    config[full_key("stateBucket")] = STATE_BUCKET
    config[full_key("imageTag")] = IMAGE_TAG
    config.update({full_key(key): _encode(value) for key, value in overrides.items()})
    return config


@dataclass
class Registered:
    """One resource the program registered: what a provider would have received."""

    typ: str
    name: str
    urn: str
    inputs: dict[str, Any]
    raw: dict[str, Any]  # the wire form of the inputs, where secrets are still marked
    protect: bool
    retain_on_delete: bool
    import_id: str
    ignore_changes: list[str]
    delete_before_replace: bool
    custom: bool
    replace_on_changes: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)  # input -> URNs it reads
    dependencies: list[str] = field(default_factory=list)  # URNs named by depends_on or by inputs


@dataclass
class Deployment:
    """What a run of the program registered, invoked and exported."""

    resources: list[Registered] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    config_reads: set[str] = field(default_factory=set)
    lookups: list[tuple[str, str, str]] = field(default_factory=list)  # find_image(repository, tag, region)
    required_repositories: list[str] = field(default_factory=list)  # require_repositories(names, ...)

    def of_type(self, typ: str) -> list[Registered]:
        """Every resource of one Pulumi type token."""
        return [r for r in self.resources if r.typ == typ]

    def named(self, typ: str, name: str) -> Registered:
        """The resource of a type with a given name (fails when there is none)."""
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, (
            f"expected one {typ} named {name}, found {[r.name for r in self.of_type(typ)]}"
        )
        return found[0]

    def one(self, typ: str) -> Registered:
        """The single resource of a type (fails when there are none or several)."""
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Stand-in provider: echoes inputs and adds the outputs AWS and Docker would compute."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        name, typ = args.name, args.typ
        arn = f"arn:aws:{typ.split(':')[1].split('/')[0]}:{REGION}:{ACCOUNT}:{name}"
        if typ == "aws:ecr/repository:Repository":
            repo = args.inputs.get("name", name)
            outputs |= {
                "name": repo,
                "registryId": ACCOUNT,
                "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repo}",
                "arn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo}",
            }
        elif typ == BUILD_TYPE:
            # what the provider reports after a push: the manifest digest and tag@digest
            outputs |= {"digest": DIGEST, "ref": f"{args.inputs['tags'][0]}@{DIGEST}"}
        elif typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            outputs |= {"name": args.inputs.get("name") or f"{name}-a1b2c3d", "arn": arn}  # auto-named
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            outputs |= {"name": name, "arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"}
        elif typ == "aws:ec2/eip:Eip":
            outputs |= {"publicIp": PUBLIC_IP, "allocationId": "eipalloc-0123456789abcdef0"}
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            outputs |= {"name": name, "arn": f"arn:aws:iam::{ACCOUNT}:{typ.split(':')[-1].lower()}/{name}"}
        elif typ == "aws:s3/bucket:Bucket":
            bucket = args.inputs.get("bucket") or f"{name}-a1b2c3d"  # auto-named, as Pulumi does
            outputs |= {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        elif typ in FLEET_TYPES:
            outputs |= _fleet_outputs(typ, name, args.inputs)
            outputs.setdefault("arn", arn)
        else:
            outputs.setdefault("arn", arn)
        return (args.resource_id or f"{name}-id", outputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        function = args.token  # the invoke, e.g. aws:ssm/getParameter:getParameter
        self.deployment.calls.append((function, dict(args.args)))
        if function == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": AMI, "type": "String", "arn": "", "version": 1}
        if function == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": "ecr-password",
                "authorizationToken": "QVdTOmVjci1wYXNzd29yZA==",
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z",
            }
        if function == "aws:ecr/getImage:getImage":
            return {
                "repositoryName": args.args["repositoryName"],
                "imageDigest": args.args["imageDigest"],
                "id": "x",
            }
        if function == "aws:route53/getZone:getZone":
            return {"name": args.args["name"], "zoneId": HOSTED_ZONE_ID, "id": HOSTED_ZONE_ID}
        if function == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "userId": "AIDA",
                "id": ACCOUNT,
            }
        if function == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{REGION}{z}" for z in "abc"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(3)], "id": REGION}
        raise AssertionError(f"the program invoked {function}, which these tests do not mock")


FLEET_TYPES = (
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup",
    "aws:acm/certificate:Certificate",
    "aws:route53/record:Record",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:autoscaling/group:Group",
)


def _fleet_outputs(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What AWS computes for the fleet's resources (names, ARN suffixes, validation records)."""
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        return {"dnsName": ALB_DNS, "zoneId": ALB_ZONE_ID, "arnSuffix": f"app/{name}/50dc6c495c0c9188"}
    if typ == "aws:lb/targetGroup:TargetGroup":
        return {"arnSuffix": f"targetgroup/{name}/73e2d6bc24d8a067"}
    if typ == "aws:acm/certificate:Certificate":
        record = f"_3f9c.{inputs['domainName']}."
        return {
            "domainValidationOptions": [
                {
                    "domainName": inputs["domainName"],
                    "resourceRecordName": record,
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_7d1e.acm-validations.aws.",
                }
            ]
        }
    if typ == "aws:route53/record:Record":
        return {"fqdn": inputs["name"].rstrip(".")}
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        # A new version whenever the template's content changes, as EC2 numbers them.
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        return {"latestVersion": int(digest[:6], 16)}
    return {"name": name}  # the Auto Scaling group, named by Pulumi


class RecordingMonitor(MockMonitor):
    """The mock engine, also noting the resource options a provider never sees (protect, import, ...)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.deployment = mocks.deployment

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.deployment.resources.append(
                Registered(
                    typ=request.type,
                    name=request.name,
                    urn=response.urn,
                    inputs=self.resources[response.urn].state if request.custom else {},
                    raw=json_format.MessageToDict(request.object),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    import_id=request.importId,
                    ignore_changes=list(request.ignoreChanges),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    custom=bool(request.custom),
                    replace_on_changes=list(request.replaceOnChanges),
                    property_dependencies={
                        key: list(deps.urns) for key, deps in request.propertyDependencies.items()
                    },
                    dependencies=list(request.dependencies),
                )
            )
        return response


BUILD_TYPE = "docker-build:index:Image"


def run_program(
    config: dict[str, str],
    deployment: Deployment | None = None,
    *,
    ecr_images: dict[tuple[str, str], str] | None = None,
    ecr_repositories: set[str] | None = None,
) -> Deployment:
    """Run `__main__.py` under Pulumi's mocks with `config`, wait for every output, and return what it did.

    Args:
        config: The config as the CLI passes it (see cli_config).
        deployment: Where to record; pass one to inspect a run that raised.
        ecr_images: What ECR holds, {(repository, tag): digest}, as `infra.registry.find_image`
            answers it (that function itself is proven against moto in test_image.py). Default: nothing.
        ecr_repositories: The repositories the account holds, as `infra.registry.require_repositories`
            answers it (proven against moto in test_registry.py). Default: every one asked for.

    Raises:
        Whatever the program raises (e.g. infra.config.StackConfigError).
    """
    deployment = Deployment() if deployment is None else deployment
    mocks = RecordingMocks(deployment)
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack="prod", preview=False, monitor=RecordingMonitor(mocks)
    )
    pulumi.runtime.set_all_config(config)
    exported: dict[str, Any] = {}
    real_get_config = pulumi.config.get_config
    images = dict(ecr_images or {})
    deployment.lookups = []
    deployment.required_repositories = []

    def find_image(repository: str, tag: str, region: str, stack: str) -> str | None:
        deployment.lookups.append((repository, tag, region))
        return images.get((repository, tag))

    def require_repositories(names: list[str], stack: str, region: str) -> None:
        deployment.required_repositories.extend(names)
        missing = [n for n in names if ecr_repositories is not None and n not in ecr_repositories]
        if missing:
            raise MissingRepositoryError(missing, stack, region)

    def recording_get_config(key: str) -> Any:
        deployment.config_reads.add(key)
        return real_get_config(key)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        with (
            mock.patch.object(pulumi, "export", exported.__setitem__),
            mock.patch.object(pulumi.config, "get_config", recording_get_config),
            mock.patch("infra.registry.find_image", find_image),
            mock.patch("infra.registry.require_repositories", require_repositories),
        ):
            runpy.run_path(str(MAIN), run_name="__main__")
        return pulumi.Output.all(**exported).apply(deployment.exports.update)

    program()
    return deployment


@pytest.fixture(scope="module")
def prod() -> Deployment:
    """The prod stack as `pulumi up` would register it."""
    return run_program(cli_config("prod"))


DOMAIN = "api.example.com"
HOSTED_ZONE = "example.com"


@pytest.fixture(scope="module")
def fleet() -> Deployment:
    """The prod stack after `pulumi config set mode fleet`, the one change a user makes."""
    return run_program(cli_config("prod", mode="fleet"))


@pytest.fixture(scope="module")
def fleet_https() -> Deployment:
    """The fleet with a domain in a Route 53 hosted zone."""
    return run_program(cli_config("prod", mode="fleet", domain=DOMAIN, hostedZone=HOSTED_ZONE))


@dataclass(frozen=True)
class MotoServer:
    """A running moto server and its URL."""

    url: str

    def reset(self) -> None:
        """Forget every resource: a fresh account."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto_server on a free loopback port (real HTTP), up within 30 s, stopped after the session."""
    port = free_port()
    server = MotoServer(f"http://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.reset()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer on {server.url}")
                time.sleep(0.1)
        yield server
    finally:
        stop(proc, grace_s=10)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for the stand-in, and no real AWS profile, config or region leaking in."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def aws_stand_in(moto_server: MotoServer, fake_credentials: None) -> MotoServer:
    """A fresh, empty account on the moto server."""
    moto_server.reset()
    return moto_server
