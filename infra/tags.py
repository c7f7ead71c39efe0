"""Tags every taggable resource carries: the stack's own, plus a Name AWS's console shows."""

from __future__ import annotations

from infra.release import PROJECT


def named(tags: dict[str, str], name: str, suffix: str) -> dict[str, str]:
    """The stack's tags plus `Name: <component>-<suffix>`."""
    return {**tags, "Name": f"{name}-{suffix}"}


def stack_tags(stack: str) -> dict[str, str]:
    """Tags for every taggable resource of `stack` (the state bucket has its own).

    Declared here, stdlib only, because the account setup (account/registries.py) tags the
    repositories it makes for a stack with exactly these, and the program then adopts them: a tag
    that differed would be a change on the first `up`.
    """
    return {"project": PROJECT, "stack": stack, "managed-by": "pulumi"}
