"""The stack's configuration, read once and checked before any resource exists.

Defaults live in `Pulumi.yaml` (the CLI applies them), so every key is read with `require*` here;
this module adds what Pulumi's types cannot say: which CIDRs, ports, instance types and retention
periods are allowed. A bad value raises `StackConfigError` naming the key and what it accepts.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pulumi

from infra.release import PROJECT, content_tag
from infra.tags import stack_tags

T = TypeVar("T", int, str)

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
# fmt: off
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# fmt: on

# family[generation][attributes].size, e.g. t3.small, m6i.large, c7a.2xlarge.
_INSTANCE_TYPE = re.compile(r"^(?P<family>[a-z]+)(?P<gen>[0-9]+)(?P<attrs>[a-z-]*)\.(?P<size>[a-z0-9]+)$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")
# A lower-case DNS name with at least two labels, e.g. api.example.com (no trailing dot).
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

# An address SNS can mail: something@domain.tld, no spaces (SNS itself checks deliverability).
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,63}$")

MODES = ("single", "fleet")
# The one stack that adopts and manages the state bucket; every other stack (staging) only uses it,
# so destroying staging can never touch the bucket that holds prod's state.
STATE_OWNER_STACK = "prod"
SCALING_METRICS = ("cpu", "requests")


class StackConfigError(ValueError):
    """A config value is invalid; carries the key and what it allows."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"config {PROJECT}:{key} = {value!r} is invalid: {allowed}")


@dataclass(frozen=True)
class FleetSettings:
    """What `mode: fleet` adds; read and checked in every mode, so a typo never waits for the flip."""

    zones: int
    min_size: int
    max_size: int
    desired_size: int
    scaling_metric: str
    cpu_target: int
    requests_per_second_target: int
    min_healthy_percent: int
    domain: str
    hosted_zone: str
    session_manager: bool
    access_logs: bool = True

    @property
    def https(self) -> bool:
        """True when a domain (and so its hosted zone) is configured."""
        return bool(self.domain)


@dataclass(frozen=True)
class StackSettings:
    """Everything that differs between stacks, validated."""

    stack: str
    region: str
    state_bucket: str
    state_noncurrent_days: int
    instance_type: str
    app_port: int
    allowed_cidrs: tuple[str, ...]
    log_retention_days: int
    keep_images: int
    image_tag: str
    revision: str
    image_digest: str
    ami: str
    root_volume_gb: int
    mode: str
    fleet: FleetSettings
    alert_email: str = ""
    flow_logs: bool = True

    @property
    def zone_count(self) -> int:
        """Subnets (one per availability zone): one for the single server, `fleetZones` for a fleet."""
        return self.fleet.zones if self.mode == "fleet" else 1

    @property
    def owns_state_bucket(self) -> bool:
        """True for the one stack (prod) that manages the state bucket."""
        return self.stack == STATE_OWNER_STACK

    @property
    def tags(self) -> dict[str, str]:
        """Tags for every taggable resource of this stack (the state bucket has its own)."""
        return stack_tags(self.stack)


def check_cidrs(key: str, value: object) -> tuple[str, ...]:
    """Each entry must be an IPv4 network in canonical form (host bits zero)."""
    allowed = "a non-empty list of IPv4 networks such as 203.0.113.0/24 or 0.0.0.0/0"
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise StackConfigError(key, value, allowed)
    for cidr in value:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as err:
            raise StackConfigError(key, cidr, f"{allowed} ({err})") from None
        if network.version != 4 or "/" not in cidr:
            raise StackConfigError(key, cidr, allowed)
    return tuple(value)


# The ports appPort may take: every TCP port but 22, since the server has no SSH.
APP_PORT_RANGES = ((1, 21), (23, 65535))


def check_port(key: str, value: int) -> int:
    """A TCP port the public may reach; never 22, since the server has no SSH."""
    if not any(low <= value <= high for low, high in APP_PORT_RANGES):
        raise StackConfigError(
            key, value, "an integer from 1 to 65535, not 22 (use Session Manager, not SSH)"
        )
    return value


def check_instance_type(key: str, value: str) -> str:
    """An EC2 type name on x86_64, since the image is built for linux/amd64."""
    match = _INSTANCE_TYPE.match(value)
    if match is None:
        raise StackConfigError(key, value, "an EC2 instance type name such as t3.small or m6i.large")
    if "g" in match["attrs"] or match["family"] == "a":
        raise StackConfigError(
            key, value, "an x86_64 type (the image is linux/amd64), not Graviton; e.g. t3.small"
        )
    return value


def check_choice(key: str, value: T, choices: tuple[T, ...]) -> T:
    """One of a fixed set of values."""
    if value not in choices:
        raise StackConfigError(key, value, f"one of {', '.join(map(str, choices))}")
    return value


def check_range(key: str, value: int, low: int, high: int) -> int:
    """An integer within [low, high]."""
    if not low <= value <= high:
        raise StackConfigError(key, value, f"an integer from {low} to {high}")
    return value


def check_pattern(key: str, value: str, pattern: re.Pattern[str], allowed: str) -> str:
    """A string matching a pattern (empty strings are handled by the caller)."""
    if not pattern.match(value):
        raise StackConfigError(key, value, allowed)
    return value


def check_fleet_sizes(min_size: int, max_size: int, desired: int) -> tuple[int, int, int]:
    """1 <= min <= desired <= max <= 100; each error names the key a user would change."""
    check_range("fleetMinSize", min_size, 1, 100)
    check_range("fleetMaxSize", max_size, 1, 100)
    if min_size > max_size:
        raise StackConfigError("fleetMinSize", min_size, f"at most fleetMaxSize ({max_size})")
    if not min_size <= desired <= max_size:
        raise StackConfigError(
            "fleetDesiredSize", desired, f"from fleetMinSize ({min_size}) to fleetMaxSize ({max_size})"
        )
    return min_size, max_size, desired


def check_domain(domain: str, zone: str) -> tuple[str, str]:
    """Both empty (plain HTTP), or a DNS name inside the named public hosted zone."""
    zone = zone.removesuffix(".")
    if zone and not _DNS_NAME.match(zone):
        raise StackConfigError("hostedZone", zone, "a Route 53 public hosted zone's name, e.g. example.com")
    if not domain:
        if zone:
            raise StackConfigError(
                "domain", domain, f"a name in {zone} (e.g. api.{zone}) since hostedZone is set"
            )
        return "", ""
    if not _DNS_NAME.match(domain):
        raise StackConfigError("domain", domain, "a lower-case DNS name such as api.example.com")
    if not zone:
        raise StackConfigError("hostedZone", zone, f"the Route 53 public hosted zone {domain} belongs to")
    if domain != zone and not domain.endswith(f".{zone}"):
        raise StackConfigError("domain", domain, f"a name in the hosted zone {zone} (hostedZone)")
    return domain, zone


def git_revision(repo: Path) -> str:
    """The commit of this checkout (with -dirty when it has uncommitted changes), or "unknown" outside git.

    Recorded in an image the program builds (label and `/ready`); never part of the image's tag, so
    a new commit with the same content deploys the image that exists (infra/release.py).
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_ALLOWED = "an S3 bucket name (3-63 of a-z 0-9 . -); `python -m account.bootstrap` prints yours"
_IMAGE_TAG_ALLOWED = (
    "empty (the content tag, infra/release.py) or a Docker tag: letters, digits, _ . -, at most 128"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DIGEST_ALLOWED = "empty (build this checkout) or sha256:<64 hex> of an image in the stack's ECR repository"
_AMI_ALLOWED = "empty (latest Amazon Linux 2023) or an AMI id like ami-0abc12345def67890"


def load(repo: Path) -> StackSettings:
    """Read and validate the stack's configuration.

    Args:
        repo: The repository root (the build context hashed into the content tag when imageTag is
            empty, and the checkout whose commit a build records).

    Returns:
        The validated settings.

    Raises:
        StackConfigError: A value is outside what the key allows.
    """
    try:
        return _load(repo)
    except pulumi.ConfigTypeError as err:  # e.g. appPort: "eighty"; name the key like every other error
        key = err.key.split(":", 1)[-1]
        kind = {"int": "an integer", "bool": "true or false", "JSON object": "a list (YAML sequence)"}.get(
            err.expect_type, err.expect_type
        )
        raise StackConfigError(key, err.value, kind) from None


def _load(repo: Path) -> StackSettings:
    cfg = pulumi.Config()
    image_tag = cfg.require("imageTag")
    ami = cfg.require("ami")
    digest = cfg.require("imageDigest")
    email = cfg.require("alertEmail")
    retention = cfg.require_int("logRetentionDays")
    mode = check_choice("mode", cfg.require("mode"), MODES)
    fleet = _load_fleet(cfg)
    return StackSettings(
        stack=pulumi.get_stack(),
        region=pulumi.Config("aws").require("region"),
        state_bucket=check_pattern("stateBucket", cfg.require("stateBucket"), _BUCKET, _BUCKET_ALLOWED),
        state_noncurrent_days=check_range(
            "stateNoncurrentDays", cfg.require_int("stateNoncurrentDays"), 1, 3650
        ),
        instance_type=check_instance_type("instanceType", cfg.require("instanceType")),
        app_port=check_port("appPort", cfg.require_int("appPort")),
        allowed_cidrs=check_cidrs("allowedCidrs", cfg.require_object("allowedCidrs")),
        log_retention_days=check_choice("logRetentionDays", retention, LOG_RETENTION_DAYS),
        keep_images=check_range("keepImages", cfg.require_int("keepImages"), 1, 1000),
        image_tag=check_pattern("imageTag", image_tag, _IMAGE_TAG, _IMAGE_TAG_ALLOWED)
        if image_tag
        else content_tag(repo),
        revision=git_revision(repo),
        image_digest=check_pattern("imageDigest", digest, _DIGEST, _DIGEST_ALLOWED) if digest else "",
        ami=check_pattern("ami", ami, _AMI, _AMI_ALLOWED) if ami else "",
        root_volume_gb=check_range("rootVolumeGb", cfg.require_int("rootVolumeGb"), 8, 1024),
        mode=mode,
        fleet=fleet,
        alert_email=check_pattern("alertEmail", email, _EMAIL, "empty or an email address for the alarms")
        if email
        else "",
        flow_logs=cfg.require_bool("flowLogs"),
    )


def _load_fleet(cfg: pulumi.Config) -> FleetSettings:
    min_size, max_size, desired = check_fleet_sizes(
        cfg.require_int("fleetMinSize"), cfg.require_int("fleetMaxSize"), cfg.require_int("fleetDesiredSize")
    )
    domain, zone = check_domain(cfg.require("domain"), cfg.require("hostedZone"))
    return FleetSettings(
        # A load balancer needs subnets in two zones at least; the subnet plan has room for three.
        zones=check_range("fleetZones", cfg.require_int("fleetZones"), 2, 3),
        min_size=min_size,
        max_size=max_size,
        desired_size=desired,
        scaling_metric=check_choice("scalingMetric", cfg.require("scalingMetric"), SCALING_METRICS),
        cpu_target=check_range("scalingCpuPercent", cfg.require_int("scalingCpuPercent"), 10, 90),
        requests_per_second_target=check_range(
            "scalingRequestsPerSecond", cfg.require_int("scalingRequestsPerSecond"), 1, 100_000
        ),
        min_healthy_percent=check_range(
            "refreshMinHealthyPercent", cfg.require_int("refreshMinHealthyPercent"), 0, 100
        ),
        domain=domain,
        hosted_zone=zone,
        session_manager=cfg.require_bool("fleetSessionManager"),
        access_logs=cfg.require_bool("fleetAccessLogs"),
    )
