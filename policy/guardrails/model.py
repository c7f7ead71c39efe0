"""What a rule is, independent of pulumi_policy: a name, a level, a check over plain resource data.

The Pulumi CLI hands the pack each resource's type and properties (and, for a stack rule, every
resource with the URNs it depends on); `policy/__main__.py` turns those into the `Resource` below
and each rule here into a `pulumi_policy` policy. Keeping the checks free of pulumi_policy lets the
project's own tests (tests/policy) call them in the project's venv, where pulumi-policy cannot be
installed (it pins protobuf 5, the program's SDK runs on protobuf 6).

Properties are read with `get`/iteration only: during a preview the CLI's proxy raises on an
unknown value when it is read, so a rule reads just the values it judges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MANDATORY = "mandatory"  # breaking it is a defect: the CLI fails the preview or up
ADVISORY = "advisory"  # a choice a stack may make: the CLI warns and goes on
# The settings' key holding the stack's config, which the language host hands a Python pack as
# PULUMI_CONFIG (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go, RunPlugin).
STACK_CONFIG = "stackConfig"


@dataclass(frozen=True)
class Resource:
    """One resource of the stack as a stack rule sees it.

    Attributes:
        typ: The Pulumi type token, e.g. aws:ec2/instance:Instance.
        name: The resource's logical name.
        urn: Its URN.
        props: Its properties (inputs for a resource rule, outputs for a stack rule).
        dependencies: URNs of the resources it depends on (depends_on and every input's source).
    """

    typ: str
    name: str
    urn: str
    props: Mapping[str, Any]
    dependencies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Violation:
    """A stack rule's finding: what is wrong, and on which resource (None: the stack as a whole)."""

    message: str
    urn: str | None = None


ResourceCheck = Callable[[str, Mapping[str, Any], Mapping[str, Any]], Iterable[str]]
StackCheck = Callable[[Sequence[Resource], Mapping[str, Any]], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    """What every policy has: the fields `pulumi_policy.Policy` takes, and its config schema.

    Attributes:
        name: The policy's id (what a config file or a waiver names).
        description: One sentence a user understands: the invariant.
        remediation: What to change when it is broken.
        level: MANDATORY or ADVISORY (the default; a policy config file may change it).
        config: JSON-schema properties of the policy's settings, each with a default.
    """

    name: str
    description: str
    remediation: str
    level: str
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings(
        self, given: Mapping[str, Any] | None, stack: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The schema's defaults overlaid with the configured values (the engine does the same), and
        under STACK_CONFIG the stack's own config ("project:key" -> value) where the CLI passes it."""
        values = {key: schema["default"] for key, schema in self.config.items() if "default" in schema}
        values.update({k: v for k, v in (given or {}).items() if k != "enforcementLevel"})
        values[STACK_CONFIG] = dict(stack or {})
        return values


@dataclass(frozen=True)
class ResourceRule(Rule):
    """A rule judging one resource at a time, for the types it names."""

    types: tuple[str, ...] = ()
    check: ResourceCheck | None = None

    def validate(
        self,
        typ: str,
        props: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        stack: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The violation messages for one resource ([] when it complies or is not one of `types`)."""
        if typ not in self.types or self.check is None:
            return []
        return list(self.check(typ, props, self.settings(config, stack)))


@dataclass(frozen=True)
class StackRule(Rule):
    """A rule judging the stack as a whole: relations between resources (dependencies)."""

    types: tuple[str, ...] = ()  # the types it judges, for the pack's classification of every type
    check: StackCheck | None = None

    def validate(
        self, resources: Sequence[Resource], config: Mapping[str, Any] | None = None
    ) -> list[Violation]:
        """The violations found in the stack ([] when it complies)."""
        if self.check is None:
            return []
        return list(self.check(resources, self.settings(config)))


def truthy(value: Any) -> bool:
    """A boolean property as either form the AWS provider uses (launch templates send "true")."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def falsy(value: Any) -> bool:
    """Explicitly false (False or "false"); None, meaning "not said", is not false."""
    return value is False or (isinstance(value, str) and value.lower() == "false")


def number(value: Any) -> float | None:
    """A numeric property (the engine's numbers are floats; some arrive as strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def items(value: Any) -> list[Any]:
    """A list property, with None (not set) as []."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def mapping(value: Any) -> Mapping[str, Any]:
    """An object property, with None (not set) as {}."""
    return value if isinstance(value, Mapping) else {}


def has_key(props: Mapping[str, Any], key: str) -> bool:
    """Whether a property is present, without reading its value (which may be unknown in a preview)."""
    return any(k == key for k in props)


def of_type(resources: Sequence[Resource], *types: str) -> Iterator[Resource]:
    """The resources of the given types."""
    return (r for r in resources if r.typ in types)


def depends_on(resource: Resource, other: Resource) -> bool:
    """Whether `resource` depends on `other` directly."""
    return other.urn in resource.dependencies
