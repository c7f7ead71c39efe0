"""The alarms the deploy guardrail reads (smoke/guardrail.py) are the ones the program registers.

The guardrail finds the alarms' physical names in the stack's state by their logical names
(GUARDRAIL_ALARMS); a rename in infra/monitoring.py would leave it unable to judge any deploy, so
this pins the agreement under Pulumi's mocks, in both modes.
"""

from __future__ import annotations

import pytest

from infra.monitoring import ERROR_RATE_PERCENT, LATENCY_P99_MS
from smoke.guardrail import ALARM_TYPE, GUARDRAIL_ALARMS
from tests.infra.conftest import Deployment


@pytest.mark.parametrize("mode", ["single", "fleet"])
def test_the_guardrail_alarms_are_the_5xx_rate_and_p99_alarms_the_program_makes(
    mode: str, prod: Deployment, fleet: Deployment
) -> None:
    deployment = prod if mode == "single" else fleet
    errors, latency = (deployment.named(ALARM_TYPE, name) for name in GUARDRAIL_ALARMS)
    assert errors.inputs["threshold"] == ERROR_RATE_PERCENT
    assert latency.inputs["threshold"] == LATENCY_P99_MS
