"""CI's role policies are derived from the program: every type it registers is in the table, and the
documents the table renders are least-privilege by the rules of issue 18 and by parliament's lint."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import parliament
import pytest

from account import permissions as perms
from infra.tags import PROGRAM_ROLE_PATH, boundary_arn
from tests.infra.conftest import ACCOUNT, REGION, STATE_BUCKET, Deployment, Registered

SCOPE = perms.Scope(
    account=ACCOUNT,
    region=REGION,
    bucket=STATE_BUCKET,
    key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
)
# IAM's limit on a role's inline policies, counted without whitespace (IAM quotas page).
INLINE_POLICY_LIMIT = 10_240
MANAGED_POLICY_LIMIT = 6_144
# Types another issue's branch adds with a package this branch does not install yet (issue 13).
# parliament's findings that are known and accepted, each with why.
ACCEPTED_FINDINGS = [
    # The program writes the state bucket's policy (and issue 14's log bucket's): a role that may
    # put a bucket policy could widen it. Both policies are the program's, reviewed in pull requests.
    ("RESOURCE_POLICY_PRIVILEGE_ESCALATION", "s3:PutBucketPolicy"),
    ("RESOURCE_POLICY_PRIVILEGE_ESCALATION", "s3:PutLifecycleConfiguration"),
    # AWS's own pattern: the document in one statement, the instances (tag-conditioned) in
    # another; parliament wants both resources in each.
    ("RESOURCE_MISMATCH", "ssm:SendCommand"),
    # Same for an alias: the alias by name, the key by tag, in two statements.
    ("RESOURCE_MISMATCH", "kms:CreateAlias"),
    # SNS defines no resource for these; the statement is pinned to the region instead.
    ("RESOURCE_MISMATCH", "sns:GetSubscriptionAttributes"),
    # AWS's own split of RunInstances (EC2 User Guide, "Tag instances and volumes on creation"): one
    # statement per kind of resource of the launch, each with its own condition.
    ("RESOURCE_MISMATCH", "ec2:RunInstances"),
    # The boundary caps the SSM agent's own calls, which AWS's AmazonSSMManagedInstanceCore grants on
    # "*" (the agent names no resource); a boundary grants nothing by itself.
    ("RESOURCE_STAR", "ssm:UpdateInstanceAssociationStatus"),
]


@pytest.fixture(scope="module", params=["prod", "fleet", "fleet_https"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """Each way the program is deployed: single mode, fleet, fleet with HTTPS."""
    return request.getfixturevalue(request.param)


def registered_types(deployment: Deployment) -> set[str]:
    """The provider-backed types a run registered (components need no permission)."""
    return {r.typ for r in deployment.resources if r.custom}


def test_every_type_the_program_registers_has_its_permissions_in_the_table(deployment: Deployment) -> None:
    missing = sorted(registered_types(deployment) - set(perms.RESOURCE_TYPES))
    assert missing == [], f"add these types to account/permissions.py RESOURCE_TYPES: {missing}"


def test_every_data_source_the_program_calls_has_its_permissions_in_the_table(deployment: Deployment) -> None:
    missing = sorted({token for token, _ in deployment.calls} - set(perms.INVOKES))
    assert missing == [], f"add these invokes to account/permissions.py INVOKES: {missing}"


def _sdk_source(package: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None, f"{package} is not installed"
    assert spec.submodule_search_locations, f"{package} is not a package"
    root = Path(next(iter(spec.submodule_search_locations)))
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*.py"))


def test_every_type_in_the_table_is_one_an_installed_sdk_defines() -> None:
    # A typo in a token would be a table entry that covers nothing; the SDKs spell every token they
    # register in their source (pulumi_aws: `super().__init__('aws:ec2/vpc:Vpc', ...)`).
    packages = {"aws": "pulumi_aws", "docker-build": "pulumi_docker_build"}
    sources = {prefix: _sdk_source(package) for prefix, package in packages.items()}
    unknown = []
    for token in [*perms.RESOURCE_TYPES, *perms.INVOKES]:
        prefix = token.split(":")[0]
        if prefix == "pulumi-python":
            # pulumi/dynamic/dynamic.py: f"pulumi-python:dynamic{/module}:{name}", name "Resource" unless
            # the subclass passes module= and name=.
            if not re.fullmatch(r"pulumi-python:dynamic(/[A-Za-z0-9_-]+)?:[A-Za-z][A-Za-z0-9]*", token):
                unknown.append(token)
            continue
        source = sources[prefix]
        if f"'{token}'" not in source and f'"{token}"' not in source:
            unknown.append(token)
    assert unknown == []


def test_every_name_the_program_gives_starts_with_the_prefix_the_arns_are_scoped_to(
    deployment: Deployment,
) -> None:
    # Pulumi derives each physical name from the logical one (plus a random suffix), so the ARN
    # patterns `...:<kind>/cali-*` cover every resource only while every logical name starts so.
    outside = [
        r.name for r in deployment.resources if r.custom and not r.name.startswith(f"{perms.NAME_PREFIX}-")
    ]
    assert outside == []


TAG_SCOPED = sorted(
    typ
    for typ, grants in perms.RESOURCE_TYPES.items()
    if any(g.condition == perms.CREATED_TAGGED for g in grants)
)


def tags_of(resource: Registered) -> dict[str, str]:
    """A resource's tags, as a map (an Auto Scaling group lists them as key/value records)."""
    tags = resource.inputs.get("tags") or {}
    return {t["key"]: t["value"] for t in tags} if isinstance(tags, list) else tags


def test_every_tag_scoped_resource_is_created_with_the_tag_the_policy_requires(
    deployment: Deployment,
) -> None:
    untagged = [
        r.name
        for r in deployment.resources
        if r.typ in TAG_SCOPED and tags_of(r).get(perms.TAG_KEY) != perms.TAG_VALUE
    ]
    assert untagged == []


def test_the_deploy_role_may_pass_only_the_servers_role_to_ec2(prod: Deployment) -> None:
    (profile,) = prod.of_type("aws:iam/instanceProfile:InstanceProfile")
    (role,) = [r for r in prod.of_type("aws:iam/role:Role") if r.inputs["name"] == profile.inputs["role"]]
    assert fnmatch.fnmatch(f"{role.name}-1a2b3c4", perms.SERVER_ROLE_PATTERN)  # as Pulumi auto-names it
    passes = [s for s in perms.deploy_policy(SCOPE)["Statement"] if "iam:PassRole" in s["Action"]]
    to_ec2 = [
        s
        for s in passes
        if s["Condition"].get("StringEqualsIfExists", {}).get("iam:PassedToService") == "ec2.amazonaws.com"
    ]
    server = f"arn:aws:iam::{ACCOUNT}:role{PROGRAM_ROLE_PATH}{perms.SERVER_ROLE_PATTERN}"
    assert [s["Resource"] for s in to_ec2] == [[server]]
    assert all(s["Action"] == ["iam:PassRole"] for s in passes)  # nothing else rides on those statements


READS = {"List", "Read"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("deploy", perms.deploy_policy(SCOPE)),
        ("read", perms.read_policy(SCOPE)),
        ("ci-helper", perms.ci_helper_policy(SCOPE)),
        ("guard-rails", perms.guard_rails_policy(SCOPE)),
        ("boundary", perms.boundary_policy(SCOPE)),
    ]


def access_levels(action: str) -> set[str]:
    """AWS's access level of an action (List, Read, Write, Tagging, Permissions management).

    A set: some prefixes name two services (elasticloadbalancing: the classic and v2 APIs).
    """
    service, name = action.split(":")
    levels = {
        p["access_level"]
        for d in parliament.iam_definition
        if d["prefix"] == service
        for p in d["privileges"]
        if p["privilege"] == name
    }
    assert levels, f"{action}: unknown to parliament's IAM definitions"
    return levels


@pytest.mark.parametrize(("role", "document"), documents(), ids=[d[0] for d in documents()])
def test_no_statement_allows_every_action_of_a_service(role: str, document: dict[str, Any]) -> None:
    # A Deny may name a whole service (guard_rails_policy: no IAM action on CI's identities).
    actions = [a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]]
    assert [a for a in actions if "*" in a] == []


def grants() -> list[tuple[str, dict[str, Any]]]:
    """The documents that grant (the boundary only caps: it allows the SSM agent's calls on "*")."""
    return [d for d in documents() if d[0] != "boundary"]


@pytest.mark.parametrize(("role", "document"), grants(), ids=[d[0] for d in grants()])
def test_no_write_on_every_resource_without_a_condition(role: str, document: dict[str, Any]) -> None:
    loose = [
        (s.get("Sid"), a)
        for s in document["Statement"]
        if s["Effect"] == "Allow" and "*" in s["Resource"] and "Condition" not in s
        for a in s["Action"]
        if not access_levels(a) <= READS
    ]
    assert loose == []


def test_the_read_policy_the_preview_role_has_may_read_and_list_only() -> None:
    actions = {a for s in perms.read_policy(SCOPE)["Statement"] for a in s["Action"]}
    # AWS files kms:Decrypt under Write; it changes nothing, and only the one key is allowed
    # (test_the_read_policy_reads_state_objects_and_decrypts_but_reads_no_other_object).
    assert {a: access_levels(a) for a in actions if not access_levels(a) <= READS} == {
        "kms:Decrypt": {"Write"}
    }


def test_the_read_policy_reads_state_objects_and_decrypts_but_reads_no_other_object() -> None:
    statements = perms.read_policy(SCOPE)["Statement"]
    objects = [r for s in statements if "s3:GetObject" in s["Action"] for r in s["Resource"]]
    assert objects == [f"arn:aws:s3:::{STATE_BUCKET}/.pulumi/*"]
    decrypt = [r for s in statements if "kms:Decrypt" in s["Action"] for r in s["Resource"]]
    assert decrypt == [SCOPE.key_arn]


def test_the_deploy_role_writes_state_objects_only_under_the_pulumi_prefix() -> None:
    statements = perms.deploy_policy(SCOPE)["Statement"]
    puts = [r for s in statements if "s3:PutObject" in s["Action"] for r in s["Resource"]]
    assert puts == [f"arn:aws:s3:::{STATE_BUCKET}/.pulumi/*"]


def test_the_deploy_role_can_never_delete_the_state_bucket() -> None:
    (deny,) = [
        s for s in perms.guard_rails_policy(SCOPE)["Statement"] if "s3:DeleteBucket" in s.get("Action", [])
    ]
    assert deny["Effect"] == "Deny"
    assert {"s3:DeleteBucket", "s3:DeleteObjectVersion", "s3:PutBucketVersioning"} <= set(deny["Action"])
    assert deny["Resource"] == [f"arn:aws:s3:::{STATE_BUCKET}", f"arn:aws:s3:::{STATE_BUCKET}/*"]


def test_the_deploy_role_attaches_no_managed_policy_but_the_servers_own() -> None:
    (attach,) = [s for s in perms.deploy_policy(SCOPE)["Statement"] if "iam:AttachRolePolicy" in s["Action"]]
    assert attach["Condition"] == {
        "ArnEquals": {
            "iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"],
            "iam:PermissionsBoundary": boundary_arn(ACCOUNT),
        }
    }


@pytest.mark.parametrize(("role", "document"), documents(), ids=[d[0] for d in documents()])
def test_parliament_finds_nothing_wrong(role: str, document: dict[str, Any]) -> None:
    policy = parliament.analyze_policy_string(json.dumps(document))
    findings = [
        (f.issue, f.detail)
        for f in policy.findings
        if not any(f.issue == issue and text in str(f.detail) for issue, text in ACCEPTED_FINDINGS)
    ]
    assert findings == []


def test_the_deploy_roles_inline_policy_fits_iams_quota() -> None:
    assert len(json.dumps(perms.deploy_policy(SCOPE), separators=(",", ":"))) <= INLINE_POLICY_LIMIT


def test_the_read_policy_fits_a_managed_policys_quota() -> None:
    assert len(json.dumps(perms.read_policy(SCOPE), separators=(",", ":"))) <= MANAGED_POLICY_LIMIT
