"""The account setup's tests share the program's mocks (the permissions table is derived from a run of
the program) and the moto stand-in with tests/infra."""

import pytest

from tests.infra.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    aws_stand_in,
    fake_credentials,
    fleet,
    fleet_https,
    moto_server,
    prod,
)


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated classes as its modules load; not this project's code.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
