"""Every preview and up the workflows run passes the policy pack, with the pack's venv made first.

Read from the workflow files as data, so the rule holds however the jobs are arranged (reusable
workflows, composite actions): any pulumi/actions step whose command is preview or up, and any
`pulumi preview`/`pulumi up` in a run line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.policy.conftest import ROOT

GITHUB = ROOT / ".github"
PACK_VENV = "policy/requirements.txt"  # what the step that makes the pack's venv installs from
RUN_LINE = re.compile(r"^\s*pulumi\s+(preview|up|update)\b", re.MULTILINE)  # a command, not a message


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _local_action_steps(uses: str) -> list[dict[str, Any]]:
    """The steps of a composite action in this repository (uses: ./.github/actions/NAME)."""
    if not uses.startswith("./"):
        return []
    return _yaml(ROOT / uses / "action.yml").get("runs", {}).get("steps", [])


def _expanded(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The steps in order, a local composite action's steps in its place."""
    for step in steps:
        yield from _expanded(_local_action_steps(step.get("uses", "")))
        yield step


def _jobs() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for path in sorted((GITHUB / "workflows").glob("*.y*ml")):
        for name, job in _yaml(path).get("jobs", {}).items():
            yield f"{path.name}:{name}", list(_expanded(job.get("steps", [])))


def _pulumi_operations(steps: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, step in enumerate(steps):
        command = (step.get("with") or {}).get("command")
        action = step.get("uses", "").startswith("pulumi/actions@") and command in ("preview", "up", "update")
        if action or RUN_LINE.search(step.get("run", "")):
            yield i, step


OPERATIONS = [(job, i, step) for job, steps in _jobs() for i, step in _pulumi_operations(steps)]


def test_the_workflows_run_previews_and_ups_at_all() -> None:
    # the parametrized test below would pass on no operation at all
    assert len(OPERATIONS) >= 3


@pytest.mark.parametrize(
    ("job", "index", "step"), OPERATIONS, ids=[f"{j}:{s.get('name')}" for j, _, s in OPERATIONS]
)
def test_every_preview_and_up_passes_the_policy_pack(job: str, index: int, step: dict[str, Any]) -> None:
    # pulumi/actions' input is policyPacks (action.yml; src/config.ts parses it into --policy-pack)
    if "run" in step:
        assert "--policy-pack policy" in step["run"], f"{job}: {step['run']}"
    else:
        assert (step.get("with") or {}).get("policyPacks") == "policy", job


@pytest.mark.parametrize(
    ("job", "index", "step"), OPERATIONS, ids=[f"{j}:{s.get('name')}" for j, _, s in OPERATIONS]
)
def test_the_pack_venv_is_made_before_the_preview_or_up_that_loads_it(
    job: str, index: int, step: dict[str, Any]
) -> None:
    steps = dict(_jobs())[job]
    assert any(PACK_VENV in s.get("run", "") for s in steps[:index]), job
