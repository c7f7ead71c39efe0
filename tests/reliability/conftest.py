"""Fixtures for the reliability tests: the fuzzing budget (`--deep`), and the image fixtures reused.

CI runs a fixed number of fuzz cases from a fixed seed, so a run is repeatable; `--deep` (given with
the folder: `pytest tests/reliability --deep`) runs ten times as many from a fresh seed, for a longer
local hunt. A failure prints the seed and the shrunk case either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

# The image and its containers come from the Docker tests' fixtures, so one image serves both groups.
from tests.docker.conftest import image, start_container  # noqa: F401

DEEP_FACTOR = 10


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--deep",
        action="store_true",
        default=False,
        help=f"fuzz {DEEP_FACTOR}x as many cases from a random seed (tests/reliability only)",
    )


@dataclass(frozen=True)
class FuzzBudget:
    """How many cases each fuzz test draws, and whether from the fixed seed."""

    deep: bool

    def settings(self, cases: int) -> settings:
        """Hypothesis settings for a test that must run `cases` cases in CI (more with --deep)."""
        return settings(
            max_examples=cases * DEEP_FACTOR if self.deep else cases,
            derandomize=not self.deep,  # CI: the same cases every run
            database=None,  # nothing written into the checkout; a failure prints its own reproduction
            deadline=None,  # a loaded CI machine must not turn slowness into a flaky failure
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            print_blob=True,
        )


@pytest.fixture(scope="session")
def fuzz(request: pytest.FixtureRequest) -> FuzzBudget:
    """The fuzzing budget of this run: fixed-seed CI cases, or --deep."""
    deep = bool(request.config.getoption("--deep", default=False))
    return FuzzBudget(deep=deep)


class FuzzCounter:
    """Counts the cases each fuzz test sent, for the run's summary line."""

    def __init__(self) -> None:
        self.cases: dict[str, int] = {}

    def count(self, name: str) -> None:
        """One more case sent by the fuzzer called name."""
        self.cases[name] = self.cases.get(name, 0) + 1


_COUNTER = FuzzCounter()


@pytest.fixture(scope="session")
def fuzz_counter() -> FuzzCounter:
    """The session's case counter."""
    return _COUNTER


def pytest_terminal_summary(terminalreporter) -> None:
    if _COUNTER.cases:
        total = sum(_COUNTER.cases.values())
        parts = ", ".join(f"{name} {n}" for name, n in _COUNTER.cases.items())
        terminalreporter.write_line(f"fuzz: {total} cases against the real app ({parts})")
