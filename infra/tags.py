"""Tags every taggable resource carries: the stack's own, plus a Name AWS's console shows."""

from __future__ import annotations

from infra.release import PROJECT


def named(tags: dict[str, str], name: str, suffix: str) -> dict[str, str]:
    """The stack's tags plus `Name: <component>-<suffix>`."""
    return {**tags, "Name": f"{name}-{suffix}"}


# The tag on the one security group a CI job may open for its runner (the app's group in single
# mode, the load balancer's in the fleet): the CI helper role may change no other group
# (account/permissions.py ci_helper_policy).
RUNNER_ACCESS_TAG = {"cali-housing:runner-access": "smoke"}

# Every role the program makes lives under this IAM path and carries this permissions boundary
# (made by `python -m account.bootstrap`): the deploy role may create and change roles only there and
# only with that boundary, so it can neither reach CI's own roles (at "/") nor make a role that does
# more than the boundary allows (account/permissions.py boundary_policy).
PROGRAM_ROLE_PATH = "/cali-housing-program/"
PERMISSIONS_BOUNDARY_POLICY = "cali-housing-program-boundary"


def boundary_arn(account: str) -> str:
    """The ARN of the permissions boundary every program role carries."""
    return f"arn:aws:iam::{account}:policy/{PERMISSIONS_BOUNDARY_POLICY}"


def stack_tags(stack: str) -> dict[str, str]:
    """Tags for every taggable resource of `stack` (the state bucket has its own).

    Declared here, stdlib only, because the account setup (account/registries.py) tags the
    repositories it makes for a stack with exactly these, and the program then adopts them: a tag
    that differed would be a change on the first `up`.
    """
    return {"project": PROJECT, "stack": stack, "managed-by": "pulumi"}
