"""Tags every taggable resource carries: the stack's own, plus a Name AWS's console shows."""

from __future__ import annotations


def named(tags: dict[str, str], name: str, suffix: str) -> dict[str, str]:
    """The stack's tags plus `Name: <component>-<suffix>`."""
    return {**tags, "Name": f"{name}-{suffix}"}
