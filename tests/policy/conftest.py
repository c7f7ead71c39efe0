"""The policy pack's rules, fed with what the program registers under mocks (tests/infra/conftest.py).

`guardrails` is imported as the Pulumi CLI imports it, with policy/ first on sys.path (the CLI runs
the pack's __main__.py with its directory as the script path), so these tests need no pulumi-policy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policy"
if str(PACK) not in sys.path:
    sys.path.insert(0, str(PACK))

import guardrails  # noqa: E402 - found through the pack's directory, as the CLI finds it

from tests.infra.conftest import Deployment, Registered, fleet, fleet_https, prod  # noqa: E402, F401

MODES = ("prod", "fleet", "fleet_https")


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated classes as its modules load; not this project's code.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")


def resources(deployment: Deployment) -> list[guardrails.Resource]:
    """The deployment as a stack rule sees it: type, name, URN, properties and dependencies."""
    return [view(r) for r in deployment.resources]


def view(registered: Registered, **props: Any) -> guardrails.Resource:
    """One registered resource as a rule sees it (props replaced by `props` when given)."""
    return guardrails.Resource(
        typ=registered.typ,
        name=registered.name,
        urn=registered.urn,
        props=props or registered.inputs,
        dependencies=tuple(registered.dependencies),
    )


def mutated(
    deployment: Deployment, typ: str, name: str, change: Callable[[dict[str, Any]], None]
) -> tuple[list[guardrails.Resource], guardrails.Resource]:
    """The stack with one resource's properties changed by `change` (a deep copy; the run is shared)."""
    target = deployment.named(typ, name)
    props = deepcopy(target.inputs)
    change(props)
    changed = guardrails.Resource(target.typ, target.name, target.urn, props, tuple(target.dependencies))
    return [changed if r.urn == target.urn else view(r) for r in deployment.resources], changed


def without(deployment: Deployment, typ: str, name: str) -> Iterator[guardrails.Resource]:
    """The stack without one resource (as if the program no longer declared it)."""
    urn = deployment.named(typ, name).urn
    return (view(r) for r in deployment.resources if r.urn != urn)
