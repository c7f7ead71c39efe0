"""Tags every taggable resource carries: the stack's own, plus a Name AWS's console shows."""

from __future__ import annotations


def named(tags: dict[str, str], name: str, suffix: str) -> dict[str, str]:
    """The stack's tags plus `Name: <component>-<suffix>`."""
    return {**tags, "Name": f"{name}-{suffix}"}


# The tag on the one security group a CI job may open for its runner (the app's group in single
# mode, the load balancer's in the fleet): the CI helper role may change no other group
# (account/permissions.py ci_helper_policy).
RUNNER_ACCESS_TAG = {"cali-housing:runner-access": "smoke"}
