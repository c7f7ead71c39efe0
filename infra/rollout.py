"""Fleet mode: `pulumi up` returns only when the instance refresh it started has finished well.

The AWS provider starts an instance refresh when the launch template's version changes and returns
at once (pulumi_aws/autoscaling/_inputs.py, GroupInstanceRefreshArgs: "This resource does not wait
for the instance refresh to complete"), so without this a smoke test would mostly talk to the old
instances, and a refresh that fails and rolls back would leave the deploy green.

`RolloutWait` is a Pulumi dynamic resource registered after the group. On every change of the
template version it polls `DescribeInstanceRefreshes` (boto3) until the newest refresh is
`Successful`, and fails the deploy on `Failed`, `Cancelled` or any rollback state, or when the
bound (`timeout_s`) passes. The states are botocore's `InstanceRefreshStatus` enum (autoscaling
service model, 2011-01-01).

Pulumi stores a dynamic provider in the state as a dill pickle and runs it from there in its own
process, where this project's packages are not importable. dill pickles a class by value only when
it belongs to `__main__` (otherwise it stores `infra.rollout.RefreshWaiter` by name); the SDK once
rewrote `__module__` to `__main__` for exactly this reason (pulumi/pulumi#7755, issue #7453) and the
installed 3.272 no longer does, so `_pickled_by_value` says so itself. Everything it runs is on the
class or in the standard library and boto3; tests/infra/test_rollout.py unpickles it in a process
without `infra` and runs it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pulumi.dynamic

# A refresh with a warm-up and a 100% healthy minimum replaces instances one batch at a time; half
# an hour bounds two-to-four instances with room to spare. The pipeline's job timeout is longer.
DEFAULT_TIMEOUT_S = 1800
POLL_INTERVAL_S = 15


# What a failed rollout raises: a builtin, so nothing of this module need travel with the provider.
RolloutFailed = RuntimeError


def _pickled_by_value(cls: type) -> type:
    """Mark a class and its functions as `__main__`'s, so dill stores their code, not their name."""
    cls.__module__ = "__main__"
    for value in vars(cls).values():
        if inspect.isfunction(value):
            value.__module__ = "__main__"
    return cls


@_pickled_by_value
class RefreshWaiter(pulumi.dynamic.ResourceProvider):
    """Waits for the group's newest instance refresh; the dynamic provider behind RolloutWait."""

    SUCCESSFUL = frozenset({"Successful"})
    FAILED = frozenset(
        {"Failed", "Cancelled", "Cancelling", "RollbackInProgress", "RollbackFailed", "RollbackSuccessful"}
    )
    WAITING = frozenset({"Pending", "InProgress", "Baking"})
    # A refresh that started this long before the wait began belongs to an earlier deploy. The
    # provider starts the refresh inside the group's update, which Pulumi finishes just before it
    # runs this resource, so a genuine one is seconds old.
    RECENT = timedelta(minutes=30)

    def wait(
        self,
        client: Any,
        group: str,
        *,
        expect_refresh: bool,
        timeout_s: float,
        interval_s: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> str:
        """Poll until the newest recent refresh of `group` is Successful; returns a one-line outcome.

        Args:
            client: A boto3 Auto Scaling client.
            group: The Auto Scaling group's name.
            expect_refresh: True when the template changed, so a refresh must exist; False at the
                group's creation, when its first instances launch without one.
            timeout_s: How long to wait in all.
            interval_s: Seconds between polls.
            clock, sleep, now: Injected for tests.

        Raises:
            RuntimeError: (RolloutFailed) Failed, cancelled, rolled back, missing when expected, or
                out of time.
        """
        deadline = clock() + timeout_s
        started = now()
        while True:
            refreshes = client.describe_instance_refreshes(AutoScalingGroupName=group).get(
                "InstanceRefreshes", []
            )
            recent = [r for r in refreshes if r["StartTime"] >= started - self.RECENT]
            if not recent:
                if expect_refresh:
                    raise RuntimeError(
                        f"{group}: the launch template changed but no instance refresh started; the old "
                        "instances still serve"
                    )
                return f"{group}: no instance refresh to wait for"
            newest = max(recent, key=lambda r: r["StartTime"])
            status, reason = newest["Status"], newest.get("StatusReason", "")
            if status in self.SUCCESSFUL:
                return f"{group}: instance refresh {newest['InstanceRefreshId']} Successful"
            if status in self.FAILED or status not in self.WAITING:
                ended = f"{group}: instance refresh {newest['InstanceRefreshId']} ended {status}"
                raise RuntimeError(f"{ended}: {reason}" if reason else ended)
            left = deadline - clock()
            if left <= 0:
                raise RuntimeError(
                    f"{group}: instance refresh {newest['InstanceRefreshId']} still {status} "
                    f"({newest.get('PercentageComplete', 0)}%) after {timeout_s:g}s"
                )
            sleep(min(interval_s, left))

    def _run(self, props: dict[str, Any], expect_refresh: bool) -> dict[str, Any]:
        import boto3  # in the provider's process, where it runs

        client = boto3.client("autoscaling", region_name=props["region"])
        outcome = self.wait(
            client, props["group"], expect_refresh=expect_refresh, timeout_s=props["timeout_s"]
        )
        return {**props, "outcome": outcome}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        """A new group launches its instances without a refresh; wait only if one is running."""
        return pulumi.dynamic.CreateResult(id_=f"{props['group']}-rollout", outs=self._run(props, False))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """A new template version (a new image or AMI) is a change to wait for; nothing else is."""
        changed = [k for k in ("group", "template_version") if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        """The template changed: a refresh must have started, and must succeed."""
        return pulumi.dynamic.UpdateResult(outs=self._run(news, olds.get("group") == news.get("group")))


@dataclass
class RolloutWaitArgs:
    """Arguments for RolloutWait.

    Attributes:
        group_name: The Auto Scaling group.
        template_version: The launch template version the group runs (a change triggers the wait).
        region: The stack's region.
        timeout_s: The bound on the wait.
    """

    group_name: pulumi.Input[str]
    template_version: pulumi.Input[str]
    region: str
    timeout_s: int = DEFAULT_TIMEOUT_S


class RolloutWait(pulumi.dynamic.Resource):
    """Blocks `pulumi up` until the fleet's instance refresh is Successful (fails it otherwise)."""

    outcome: pulumi.Output[str]

    def __init__(self, name: str, args: RolloutWaitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            RefreshWaiter(),
            name,
            {
                "group": args.group_name,
                "template_version": args.template_version,
                "region": args.region,
                "timeout_s": args.timeout_s,
                "outcome": None,
            },
            opts,
        )
