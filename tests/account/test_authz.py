"""The offline evaluator follows IAM's documented rules: each case a rule of the IAM User Guide's
"Policy evaluation logic" and "Condition operators" pages, with a policy that passes only if the rule
is applied as written."""

from __future__ import annotations

from typing import Any

import pytest

from account.authz import (
    ModelError,
    Request,
    Resource,
    ServiceAuthorization,
    arn_like,
    condition_holds,
    contexts,
    evaluate,
)

VPC = "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-0abc"
SUBNET = "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-0abc"


def allow(actions: Any, resources: Any = "*", condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def describe() -> Request:
    return Request("ec2:DescribeVpcs", (Resource("", "*"),))


def test_nothing_allowed_is_an_implicit_deny() -> None:
    decision = evaluate([policy(allow("ec2:DescribeSubnets"))], describe())
    assert not decision.allowed
    assert decision.outcomes[0].decision == "ImplicitDeny"


def test_an_explicit_deny_wins_over_any_allow() -> None:
    documents = [
        policy(allow("ec2:*")),
        policy({"Effect": "Deny", "Action": "ec2:Describe*", "Resource": "*"}),
    ]
    decision = evaluate(documents, describe())
    assert decision.outcomes[0].decision == "Deny"


def test_actions_match_with_wildcards_and_without_case() -> None:
    assert evaluate([policy(allow("EC2:describe*"))], describe()).allowed
    assert not evaluate([policy(allow("ec2:Describe?"))], describe()).allowed


def test_not_action_allows_everything_but_the_named() -> None:
    statement = {"Effect": "Allow", "NotAction": "ec2:DescribeVpcs", "Resource": "*"}
    assert not evaluate([policy(statement)], describe()).allowed
    assert evaluate([policy(statement)], Request("ec2:DescribeSubnets", (Resource("", "*"),))).allowed


def test_arn_wildcards_match_within_the_resource_segment_but_not_across_others() -> None:
    assert arn_like("arn:aws:ec2:us-east-1:123456789012:*", VPC)
    assert arn_like("arn:aws:s3:::bucket/.pulumi/*", "arn:aws:s3:::bucket/.pulumi/stacks/p/s.json")
    assert not arn_like("arn:aws:ec2:*:123456789012:vpc/*", "arn:aws:ec2:us-east-1:999999999999:vpc/vpc-1")
    assert not arn_like("arn:aws:iam::123456789012:role/cali-*", "arn:aws:iam::123456789012:role/x/cali-a")
    assert arn_like("arn:aws:iam::123456789012:role/*", "arn:aws:iam::123456789012:role/path/cali-a")


def test_every_resource_of_a_request_must_be_allowed() -> None:
    # CreateSubnet names the new subnet and the VPC it is made in: allowing one is not enough.
    request = Request(
        "ec2:CreateSubnet",
        (Resource("subnet", SUBNET, creates=True), Resource("vpc", VPC, tags={"project": "p"})),
    )
    only_subnets = policy(allow("ec2:CreateSubnet", "arn:aws:ec2:*:*:subnet/*"))
    decision = evaluate([only_subnets], request)
    assert [o.decision for o in decision.outcomes] == ["Allow", "ImplicitDeny"]
    assert "vpc-0abc" in decision.explain()


@pytest.mark.parametrize(
    ("operator", "wanted", "holds"),
    [
        ("StringEquals", "x", False),  # a positive operator fails on an absent key
        ("StringNotEquals", "x", True),  # a negated one is satisfied
        ("StringLike", "*", False),
        ("StringNotLike", "x*", True),
        ("ArnNotEquals", "arn:aws:iam::1:policy/b", True),
        ("StringEqualsIfExists", "x", True),  # ...IfExists: absent is a match
        ("ForAllValues:StringEquals", "x", True),  # no values: all of them match
        ("ForAnyValue:StringEquals", "x", False),  # no values: none matches
        ("Null", "true", True),
        ("Null", "false", False),
    ],
)
def test_an_absent_key_as_iam_documents_it(operator: str, wanted: str, holds: bool) -> None:
    assert condition_holds(operator, "aws:RequestTag/project", wanted, {}) is holds


def test_present_keys_compare_each_value_as_an_or_and_negated_ones_as_a_nor() -> None:
    context = {"iam:PassedToService": "ec2.amazonaws.com"}
    assert condition_holds(
        "StringEquals", "iam:passedtoservice", ["s3.amazonaws.com", "ec2.amazonaws.com"], context
    )
    assert not condition_holds("StringNotEquals", "iam:PassedToService", ["x", "ec2.amazonaws.com"], context)
    assert condition_holds("StringEqualsIfExists", "iam:PassedToService", "ec2.amazonaws.com", context)
    assert not condition_holds("StringEqualsIfExists", "iam:PassedToService", "s3.amazonaws.com", context)


def test_set_operators_on_a_multivalued_key() -> None:
    context = {"aws:TagKeys": ["project", "Name"]}
    assert condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["project", "Name", "stack"], context)
    assert not condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["project"], context)
    assert condition_holds("ForAnyValue:StringEquals", "aws:TagKeys", ["project"], context)
    with pytest.raises(ModelError, match="multivalued"):
        condition_holds("StringEquals", "aws:TagKeys", "project", context)


def test_every_operator_and_every_key_of_a_statement_must_hold() -> None:
    statement = allow(
        "iam:PassRole",
        condition={
            "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"},
            "ArnLike": {"iam:AssociatedResourceArn": "arn:aws:ec2:*:123456789012:instance/*"},
        },
    )
    role = Resource("role", "arn:aws:iam::123456789012:role/r")
    only_service = Request("iam:PassRole", (role,), {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not evaluate([policy(statement)], only_service).allowed
    both = Request(
        "iam:PassRole",
        (role,),
        {
            "iam:PassedToService": "ec2.amazonaws.com",
            "iam:AssociatedResourceArn": "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
        },
    )
    assert evaluate([policy(statement)], both).allowed


def test_a_created_resource_has_request_tags_and_no_resource_tags() -> None:
    request = Request("ec2:CreateVpc", (Resource("vpc", VPC, creates=True, request_tags={"project": "p"}),))
    (context,) = contexts(request, request.resources[0], ServiceAuthorization.bundled())
    assert context["aws:RequestTag/project"] == "p"
    assert context["aws:TagKeys"] == ["project"]
    assert not any("ResourceTag" in k for k in context)


def test_an_existing_resource_is_judged_with_and_without_the_requests_tags() -> None:
    # Whether RunInstances' request tags are in an existing subnet's context the reference does not
    # settle; a policy must allow both readings.
    launch = Request(
        "ec2:RunInstances",
        (
            Resource(
                "instance",
                "arn:aws:ec2:us-east-1:123456789012:instance/*",
                creates=True,
                request_tags={"project": "p"},
            ),
            Resource("subnet", SUBNET, tags={"project": "p"}),
        ),
    )
    readings = contexts(launch, launch.resources[1], ServiceAuthorization.bundled())
    assert [("aws:RequestTag/project" in c) for c in readings] == [False, True]
    assert all(c["ec2:ResourceTag/project"] == "p" for c in readings)
    needs_request_tag = policy(
        allow("ec2:RunInstances", condition={"StringEquals": {"aws:RequestTag/project": "p"}})
    )
    decision = evaluate([needs_request_tag], launch)
    assert [o.decision for o in decision.outcomes] == ["Allow", "ImplicitDeny", "Allow"]


def test_a_key_the_reference_does_not_list_for_the_action_is_a_table_error() -> None:
    with pytest.raises(ModelError, match="iam:PassedToService"):
        evaluate(
            [policy(allow("*"))],
            Request("ec2:DescribeVpcs", (Resource("", "*"),), {"iam:PassedToService": "x"}),
        )


def test_a_resource_type_the_action_does_not_authorize_is_a_table_error() -> None:
    with pytest.raises(ModelError, match="authorizes no resource type 'vpc'"):
        evaluate([policy(allow("*"))], Request("ec2:DescribeVpcs", (Resource("vpc", VPC),)))


def test_an_action_the_reference_does_not_know_is_a_table_error() -> None:
    with pytest.raises(ModelError, match="not in the Service Authorization Reference"):
        evaluate([policy(allow("*"))], Request("ec2:LaunchEverything", (Resource("", "*"),)))


def test_a_permissions_boundary_caps_what_an_identity_policy_allows() -> None:
    admin = policy(allow("*"))
    boundary = policy(allow(["ecr:BatchGetImage"], "arn:aws:ecr:us-east-1:123456789012:repository/cali-*"))
    pull = Request(
        "ecr:BatchGetImage", (Resource("repository", "arn:aws:ecr:us-east-1:123456789012:repository/cali-x"),)
    )
    passing = Request("iam:PassRole", (Resource("role", "arn:aws:iam::123456789012:role/admin"),))
    assert evaluate([admin], pull, boundary=boundary).allowed
    assert not evaluate([admin], passing, boundary=boundary).allowed
