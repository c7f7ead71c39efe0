"""CI's roles, proven against AWS's own authorization rules, offline (issue 24).

The real program runs under the mocks in each way it is deployed (single, fleet, fleet with HTTPS);
`account.calls` writes down every AWS request a deploy of what it registered makes, and
`account.authz` evaluates each against the rendered policies by IAM's logic and the Service
Authorization Reference. Then the other way round: the probes any escalation would need are refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloudsplaining.scan.policy_document import PolicyDocument

from account import calls
from account import permissions as perms
from account.authz import Request, Resource, ServiceAuthorization, evaluate
from account.bootstrap import ci_roles, managed_policies
from infra.tags import PERMISSIONS_BOUNDARY_POLICY, PROGRAM_ROLE_PATH, RUNNER_ACCESS_TAG, boundary_arn
from tests.infra.conftest import ACCOUNT, HOSTED_ZONE_ID, REGION, STATE_BUCKET, Deployment

KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SCOPE = perms.Scope(ACCOUNT, REGION, STATE_BUCKET, KEY_ARN, hosted_zones=(HOSTED_ZONE_ID,))
IAM = f"arn:aws:iam::{ACCOUNT}"
BOUNDARY = boundary_arn(ACCOUNT)
ROLES: dict[str, list[dict[str, Any]]] = {
    # Each CI role's policies as the bootstrap attaches them (account/bootstrap.py ci_roles).
    "deploy": [perms.read_policy(SCOPE), perms.deploy_policy(SCOPE), perms.guard_rails_policy(SCOPE)],
    "preview": [perms.read_policy(SCOPE), perms.guard_rails_policy(SCOPE)],
    "helper": [perms.ci_helper_policy(SCOPE), perms.guard_rails_policy(SCOPE)],
}


def canonical(documents: list[dict[str, Any]]) -> list[str]:
    """Documents as sorted JSON text, for comparing sets of policies."""
    return sorted(json.dumps(d, sort_keys=True) for d in documents)


def test_the_documents_evaluated_here_are_the_ones_the_bootstrap_attaches() -> None:
    managed = {f"{IAM}:policy/{name}": document for name, document, _ in managed_policies(SCOPE)}
    read, guard = (f"{IAM}:policy/{n}" for n in (perms.READ_POLICY, perms.GUARD_RAILS_POLICY))
    specs = {s.name: s for s in ci_roles(ACCOUNT, "octo-org/cali-housing", SCOPE, read, guard)}
    names = {"deploy": perms.DEPLOY_ROLE, "preview": perms.PREVIEW_ROLE, "helper": perms.CI_HELPER_ROLE}
    for short, documents in ROLES.items():
        spec = specs[names[short]]
        attached = [managed[arn] for arn in spec.managed] + ([spec.inline] if spec.inline else [])
        assert canonical(attached) == canonical(documents), short


@pytest.fixture(scope="module", params=["prod", "fleet", "fleet_https"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """Each way the program is deployed."""
    return request.getfixturevalue(request.param)


def steps_of(deployment: Deployment) -> list[calls.Step]:
    """Every request of a deploy of this run, the smoke job's rule on the group it exports."""
    group = str(deployment.exports["ingress_group"]).removesuffix("-id")  # the mocks' id: name + "-id"
    return calls.deploy_calls(deployment.resources, [t for t, _ in deployment.calls], SCOPE, group)


def refused(role: str, steps: list[calls.Step]) -> list[str]:
    """What `role` may not do among `steps`, explained."""
    return [
        f"{s.source} {s.phase}: {d.explain()}"
        for s in steps
        if not (d := evaluate(ROLES[role], s.request)).allowed
    ]


def test_every_type_the_program_registers_has_its_calls_written_down(deployment: Deployment) -> None:
    types = {r.typ for r in deployment.resources if r.custom}
    assert sorted(types - set(calls.RULES) - {calls.DEFAULT_GROUP}) == []
    assert sorted({t for t, _ in deployment.calls} - set(calls.INVOKE_RULES)) == []


def test_every_call_a_deploy_makes_is_allowed_for_the_deploy_role(deployment: Deployment) -> None:
    steps = [s for s in steps_of(deployment) if s.by in ("deploy", "preview")]
    phases = {s.phase for s in steps}
    assert phases == {"create", "update", "delete", "read"}
    assert refused("deploy", steps) == []


def test_every_read_a_preview_makes_is_allowed_for_the_preview_role(deployment: Deployment) -> None:
    assert refused("preview", [s for s in steps_of(deployment) if s.by == "preview"]) == []


def test_no_write_of_a_deploy_is_allowed_for_the_preview_role(deployment: Deployment) -> None:
    # A write by AWS's own access levels (the reference's List/Read are reads; the deploy's reads
    # that only a deploy makes, such as the gate's GetCommandInvocation, the preview may make too).
    sar = ServiceAuthorization.bundled()
    writes = [
        s
        for s in steps_of(deployment)
        if s.by == "deploy" and sar.privilege(s.request.action).access_level not in ("List", "Read")
    ]
    assert writes
    allowed = [
        f"{s.source}: {s.request.action}" for s in writes if evaluate(ROLES["preview"], s.request).allowed
    ]
    assert allowed == []


def test_the_ci_helper_may_add_and_remove_the_runners_rule_on_the_exported_group_only(
    deployment: Deployment,
) -> None:
    helper = [s for s in steps_of(deployment) if s.by == "helper"]
    assert [s.request.action for s in helper if s.phase == "update"] == [
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
    ]
    assert refused("helper", helper) == []
    # Every other group of the stack (the fleet's instances, the endpoints', the default) is refused.
    world = calls.World(SCOPE, [r for r in deployment.resources if r.custom])
    others = [
        g
        for g in deployment.resources
        if g.typ.startswith("aws:ec2/")
        and "ecurityGroup:" in g.typ
        and g.name + "-id" != deployment.exports["ingress_group"]
    ]
    assert others
    for group in others:
        rule = Request(
            "ec2:AuthorizeSecurityGroupIngress",
            (Resource("security-group", world.ec2("security-group", group), tags=calls.tags_of(group)),),
        )
        assert not evaluate(ROLES["helper"], rule).allowed, group.name


def test_the_steps_given_to_an_administrator_are_refused_to_the_deploy_role(prod: Deployment) -> None:
    admin = [s for s in steps_of(prod) if s.by == "administrator"]
    assert [s.request.action for s in admin] == ["ec2:CreateTags"]  # tagging the VPC's default group
    assert len(refused("deploy", admin)) == len(admin)


# --- the tags the program sends are the ones the policy expects -----------------------------------


def launch(deployment: Deployment) -> Request:
    (run,) = [s.request for s in steps_of(deployment) if s.request.action == "ec2:RunInstances"]
    return run


@pytest.mark.parametrize("mode", ["prod", "fleet"])
def test_a_launch_tags_its_instance_and_volume_in_the_request_with_the_stacks_tag(
    mode: str, request: pytest.FixtureRequest
) -> None:
    run = launch(request.getfixturevalue(mode))
    made = {r.kind: r.request_tags for r in run.resources if r.creates}
    assert made["instance"][perms.TAG_KEY] == perms.TAG_VALUE
    assert made["volume"][perms.TAG_KEY] == perms.TAG_VALUE


def test_the_single_server_sends_its_root_volume_tags_in_runinstances_not_after(prod: Deployment) -> None:
    instance = prod.one("aws:ec2/instance:Instance")
    assert instance.inputs["volumeTags"][perms.TAG_KEY] == perms.TAG_VALUE
    assert "tags" not in instance.inputs["rootBlockDevice"]  # a later CreateTags the policy refuses


def test_a_launch_whose_volume_is_untagged_is_refused(prod: Deployment) -> None:
    # The negative control of the test above: what the program sent before issue 24
    # (`root_block_device.tags`, so no volume TagSpecification) is what AWS would refuse.
    run = launch(prod)
    stripped = tuple(
        Resource(r.kind, r.arn, r.tags, r.creates, {} if r.kind == "volume" else r.request_tags)
        for r in run.resources
    )
    decision = evaluate(ROLES["deploy"], Request(run.action, stripped, run.context))
    assert not decision.allowed
    assert "volume/launched" in decision.explain()


def test_a_launch_of_an_ami_not_amazons_is_refused(prod: Deployment) -> None:
    run = launch(prod)
    assert evaluate(ROLES["deploy"], run).allowed
    other = Request(run.action, run.resources, {**run.context, "ec2:Owner": "999999999999"})
    assert not evaluate(ROLES["deploy"], other).allowed


def test_every_program_role_carries_the_boundary_under_the_program_path(deployment: Deployment) -> None:
    roles = deployment.of_type("aws:iam/role:Role")
    assert roles
    assert {(r.inputs["path"], r.inputs["permissionsBoundary"]) for r in roles} == {
        (PROGRAM_ROLE_PATH, BOUNDARY)
    }


def test_the_runner_facing_group_is_the_one_tagged_for_the_helper(deployment: Deployment) -> None:
    tagged = [
        r.name
        for r in deployment.of_type("aws:ec2/securityGroup:SecurityGroup")
        if all(calls.tags_of(r).get(k) == v for k, v in RUNNER_ACCESS_TAG.items())
    ]
    assert [f"{name}-id" for name in tagged] == [deployment.exports["ingress_group"]]


# --- no escalation: the probes ---------------------------------------------------------------------

CI_ROLES = [f"{IAM}:role/{n}" for n in (perms.DEPLOY_ROLE, perms.PREVIEW_ROLE, perms.CI_HELPER_ROLE)]
PROGRAM_ROLE = f"{IAM}:role{PROGRAM_ROLE_PATH}cali-role-1a2b3c4"
OIDC = f"{IAM}:oidc-provider/{perms.GITHUB_OIDC_HOST}"
ALIAS = f"arn:aws:kms:{REGION}:{ACCOUNT}:{perms.KMS_ALIAS}"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
SECRETS_KEY = Resource("key", KEY_ARN, tags={perms.TAG_KEY: perms.TAG_VALUE})  # tagged like the stack's
STATE = Resource("bucket", f"arn:aws:s3:::{STATE_BUCKET}", tags={perms.TAG_KEY: perms.TAG_VALUE})
STATE_OBJECT = Resource("object", f"arn:aws:s3:::{STATE_BUCKET}/{calls.STATE_OBJECT}")


def role(arn: str, tags: dict[str, str] | None = None) -> Resource:
    return Resource("role", arn, tags=tags or {perms.TAG_KEY: perms.TAG_VALUE})


def probes() -> list[tuple[str, Request]]:
    """Every request an escalation or a loss of history would need."""
    found: list[tuple[str, Request]] = []
    for arn in CI_ROLES:
        name = arn.rsplit("/", 1)[1]
        for action in (
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:UpdateAssumeRolePolicy",
            "iam:DeleteRole",
            "iam:DeleteRolePermissionsBoundary",
            "iam:TagRole",
        ):
            found.append((f"{action} on {name}", Request(action, (role(arn),))))
        found += [
            (
                f"AttachRolePolicy AdministratorAccess to {name}",
                Request("iam:AttachRolePolicy", (role(arn),), {"iam:PolicyARN": ADMIN}),
            ),
            (
                f"PutRolePermissionsBoundary on {name}",
                Request(
                    "iam:PutRolePermissionsBoundary", (role(arn),), {"iam:PermissionsBoundary": BOUNDARY}
                ),
            ),
            (
                f"PassRole {name} to EC2",
                Request("iam:PassRole", (role(arn),), {"iam:PassedToService": "ec2.amazonaws.com"}),
            ),
        ]
    new_role = Resource("role", PROGRAM_ROLE, creates=True, request_tags={perms.TAG_KEY: perms.TAG_VALUE})
    found += [
        ("CreateRole without a boundary", Request("iam:CreateRole", (new_role,))),
        (
            "CreateRole with another boundary",
            Request("iam:CreateRole", (new_role,), {"iam:PermissionsBoundary": ADMIN}),
        ),
        (
            "CreateRole at / with the boundary",
            Request(
                "iam:CreateRole",
                (Resource("role", f"{IAM}:role/cali-role-x", creates=True),),
                {"iam:PermissionsBoundary": BOUNDARY},
            ),
        ),
        (
            "PutRolePolicy on a program role without the boundary",
            Request("iam:PutRolePolicy", (role(PROGRAM_ROLE),)),
        ),
        (
            "AttachRolePolicy AdministratorAccess to a program role",
            Request(
                "iam:AttachRolePolicy",
                (role(PROGRAM_ROLE),),
                {"iam:PolicyARN": ADMIN, "iam:PermissionsBoundary": BOUNDARY},
            ),
        ),
        (
            "PutRolePermissionsBoundary: another boundary on a program role",
            Request(
                "iam:PutRolePermissionsBoundary", (role(PROGRAM_ROLE),), {"iam:PermissionsBoundary": ADMIN}
            ),
        ),
        (
            "DeleteRolePermissionsBoundary of a program role",
            Request(
                "iam:DeleteRolePermissionsBoundary",
                (role(PROGRAM_ROLE),),
                {"iam:PermissionsBoundary": BOUNDARY},
            ),
        ),
    ]
    for name in (PERMISSIONS_BOUNDARY_POLICY, perms.READ_POLICY, perms.GUARD_RAILS_POLICY):
        for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"):
            found.append(
                (f"{action} on {name}", Request(action, (Resource("policy", f"{IAM}:policy/{name}"),)))
            )
    for action in (
        "iam:UpdateOpenIDConnectProviderThumbprint",
        "iam:AddClientIDToOpenIDConnectProvider",
        "iam:DeleteOpenIDConnectProvider",
        "iam:TagOpenIDConnectProvider",
    ):
        found.append((f"{action} on GitHub's provider", Request(action, (Resource("oidc-provider", OIDC),))))
    for action in (
        "kms:ScheduleKeyDeletion",
        "kms:DisableKey",
        "kms:PutKeyPolicy",
        "kms:DisableKeyRotation",
        "kms:CreateGrant",
        "kms:UntagResource",
    ):
        found.append((f"{action} on the secrets key", Request(action, (SECRETS_KEY,))))
    program_key = Resource(
        "key", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b1c2d3e-alarms", tags={perms.TAG_KEY: perms.TAG_VALUE}
    )
    found += [
        (
            "UpdateAlias of the secrets alias",
            Request("kms:UpdateAlias", (Resource("alias", ALIAS), program_key)),
        ),
        (
            "DeleteAlias of the secrets alias",
            Request("kms:DeleteAlias", (Resource("alias", ALIAS), SECRETS_KEY)),
        ),
    ]
    for action in perms.STATE_BUCKET_GUARDED:
        if action != "s3:DeleteObjectVersion":
            found.append((f"{action} on the state bucket", Request(action, (STATE,))))
    found.append(
        ("DeleteObjectVersion of a state object", Request("s3:DeleteObjectVersion", (STATE_OBJECT,)))
    )
    found.append(
        (
            "ChangeResourceRecordSets in another zone",
            Request(
                "route53:ChangeResourceRecordSets",
                (Resource("hostedzone", "arn:aws:route53:::hostedzone/ZOTHER"),),
            ),
        )
    )
    return found


PROBES = probes()


@pytest.mark.parametrize("ci_role", sorted(ROLES))
@pytest.mark.parametrize(("probe", "request_"), PROBES, ids=[p[0] for p in PROBES])
def test_no_ci_role_can_escalate_or_erase_history(ci_role: str, probe: str, request_: Request) -> None:
    decision = evaluate(ROLES[ci_role], request_)
    assert not decision.allowed, f"{ci_role} may: {probe}"


def test_ci_identities_are_denied_explicitly_not_only_left_out() -> None:
    # A later widening of an Allow cannot reopen them: the guard rails' Deny wins.
    widened = [
        *ROLES["deploy"],
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    ]
    for probe, request_ in PROBES:
        if any(
            r.arn in [*perms.ci_identities(SCOPE), KEY_ARN, ALIAS, STATE.arn, STATE_OBJECT.arn]
            for r in request_.resources
        ):
            assert "Deny" in {o.decision for o in evaluate(widened, request_).outcomes}, probe


def test_the_boundary_caps_a_program_role_whatever_its_policy_says() -> None:
    admin_like = [
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    ]
    boundary = perms.boundary_policy(SCOPE)
    repository = Resource("repository", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/cali-housing-prod")
    assert evaluate(admin_like, Request("ecr:BatchGetImage", (repository,)), boundary=boundary).allowed
    for request_ in (
        Request("iam:PassRole", (role(CI_ROLES[0]),)),
        Request("s3:GetObject", (STATE_OBJECT,)),
        Request("kms:Decrypt", (SECRETS_KEY,)),
        Request(
            "ec2:RunInstances",
            (Resource("instance", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*", creates=True),),
        ),
    ):
        assert not evaluate(admin_like, request_, boundary=boundary).allowed, request_.action


# --- cloudsplaining on every rendered document ------------------------------------------------------

DOCUMENTS = {
    "deploy": perms.deploy_policy(SCOPE),
    "read": perms.read_policy(SCOPE),
    "ci-helper": perms.ci_helper_policy(SCOPE),
    "guard-rails": perms.guard_rails_policy(SCOPE),
    "boundary": perms.boundary_policy(SCOPE),
}
CHECKS = (
    "allows_privilege_escalation",
    "permissions_management_without_constraints",
    "write_actions_without_constraints",
    "tagging_actions_without_constraints",
    "allows_data_exfiltration_actions",
    "credentials_exposure",
    "service_wildcard",
    "infrastructure_modification",
)
# Every finding cloudsplaining reports that is accepted, with why.
ACCEPTED_CLOUDSPLAINING = {
    # docker login to ECR: AWS defines no resource for GetAuthorizationToken, and the token pulls
    # only what the role's policy allows (the stack's repositories).
    ("read", "credentials_exposure", "ecr:GetAuthorizationToken"): "ECR login has no resource",
    ("boundary", "credentials_exposure", "ecr:GetAuthorizationToken"): "ECR login has no resource",
    # The boundary caps the SSM agent's own calls, which AWS's AmazonSSMManagedInstanceCore grants on
    # "*": a boundary grants nothing by itself, and these update only the instance's own records.
    **{
        ("boundary", check, action): "the SSM agent's own calls, capped not granted"
        for check in ("write_actions_without_constraints", "infrastructure_modification")
        for action in (
            "ssm:PutComplianceItems",
            "ssm:UpdateAssociationStatus",
            "ssm:UpdateInstanceAssociationStatus",
            "ssm:UpdateInstanceInformation",
        )
    },
}


def cloudsplaining_findings(name: str, document: dict[str, Any]) -> set[tuple[str, str, str]]:
    scan = PolicyDocument(document)
    found = set()
    for check in CHECKS:
        for item in getattr(scan, check):
            found.add((name, check, item if isinstance(item, str) else str(item.get("type", item))))
    return found


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_cloudsplaining_finds_nothing_not_listed_with_its_reason(name: str) -> None:
    found = cloudsplaining_findings(name, DOCUMENTS[name])
    assert sorted(found - set(ACCEPTED_CLOUDSPLAINING)) == []


def test_every_accepted_cloudsplaining_finding_is_still_found() -> None:
    # An entry that no longer matches would be a silent allowance for whatever comes next.
    found = set().union(*(cloudsplaining_findings(n, d) for n, d in DOCUMENTS.items()))
    assert sorted(set(ACCEPTED_CLOUDSPLAINING) - found) == []


def test_cloudsplaining_flags_the_escalation_the_guard_rails_close() -> None:
    # The scanner is live: a policy that may write any role's inline policy is reported.
    loose = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["iam:PutRolePolicy", "iam:PassRole", "ec2:RunInstances"],
                "Resource": "*",
            }
        ],
    }
    assert cloudsplaining_findings("loose", loose) & {
        ("loose", "permissions_management_without_constraints", "iam:PutRolePolicy")
    }


# --- the deploy role stays inside the stack -----------------------------------------------------


def outside(steps: list[calls.Step], action: str) -> Request:
    """The request of `action` from the table, with every existing resource's tags taken away: the
    same call aimed at what another team made in the same account."""
    (request_,) = [s.request for s in steps if s.request.action == action and s.phase != "read"][:1]
    resources = tuple(
        r if r.creates or r.kind in ("image", "document") else Resource(r.kind, r.arn)
        for r in request_.resources
    )
    return Request(request_.action, resources, request_.context)


@pytest.mark.parametrize(
    "action",
    [
        "ec2:RunInstances",
        "ec2:CreateSubnet",
        "ec2:CreateSecurityGroup",
        "ec2:CreateFlowLogs",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:TerminateInstances",
        "ssm:SendCommand",
        "ec2:GetConsoleOutput",
    ],
)
def test_the_same_call_on_resources_that_are_not_the_stacks_is_refused(action: str, prod: Deployment) -> None:
    steps = steps_of(prod)
    assert evaluate(ROLES["deploy"], next(s.request for s in steps if s.request.action == action)).allowed
    assert not evaluate(ROLES["deploy"], outside(steps, action)).allowed
