"""Create what Pulumi and CI need before Pulumi can run: `python -m account.bootstrap --github-repo O/R`.

A stack cannot keep its state in a bucket it has not created yet, so this makes the bucket with
boto3, hardened exactly as `infra.state_bucket.StateBucket` declares it (both read
`infra.state_hardening`); the program then imports it. Beside it: the KMS key Pulumi encrypts the
stack's secrets with (rotated, under an alias; no passphrase), and with --github-repo GitHub's OIDC
provider, CI's three roles, whose policies `account.permissions` derives from the program, the
guard rails every CI role has, and the permissions boundary of the program's own roles.

Every setting is read, compared and only written when it differs, so a second run changes nothing and
says so, a run that died half-way is repaired, and a policy widened by hand is printed as a
difference and put back.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from account import permissions as perms
from account import registries
from infra import state_hardening as hardening
from infra import tags


class BootstrapError(Exception):
    """Something cannot be made ours (a bucket name of another account, a key pending deletion)."""


def _absent_on(*codes: str) -> Callable[[Callable[[], Any]], Any]:
    """Call a getter; a ClientError with one of `codes` means "not configured" and gives None."""

    def call(getter: Callable[[], Any]) -> Any:
        try:
            return getter()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in codes:
                return None
            raise

    return call


@dataclass(frozen=True)
class _Setting:
    """One bucket setting: how to read it (normalised), the wanted value, and how to write it."""

    name: str
    current: Callable[[], Any]
    wanted: Any
    apply: Callable[[], Any]


def _settings(s3: Any, bucket: str, noncurrent_days: int) -> list[_Setting]:
    lifecycle_rule = {
        "ID": hardening.LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": hardening.ABORT_MULTIPART_DAYS},
    }

    def lifecycle() -> Any:
        got = _absent_on("NoSuchLifecycleConfiguration")(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        )
        if got is None:
            return None
        return [
            {
                "ID": r.get("ID"),
                "Status": r.get("Status"),
                "Filter": {"Prefix": r.get("Filter", {}).get("Prefix", "")},
                "NoncurrentVersionExpiration": {
                    "NoncurrentDays": r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
                },
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": r.get("AbortIncompleteMultipartUpload", {}).get(
                        "DaysAfterInitiation"
                    )
                },
            }
            for r in got
        ]

    def encryption() -> Any:
        got = _absent_on("ServerSideEncryptionConfigurationNotFoundError")(
            lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        )
        return None if got is None else [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in got]

    def policy() -> Any:
        got = _absent_on("NoSuchBucketPolicy")(lambda: s3.get_bucket_policy(Bucket=bucket)["Policy"])
        return None if got is None else json.loads(got)

    def tags() -> Any:
        got = _absent_on("NoSuchTagSet", "NoSuchTagSetError")(
            lambda: s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
        )
        return None if got is None else {t["Key"]: t["Value"] for t in got}

    return [
        _Setting(
            "object ownership: bucket owner enforced",
            lambda: _absent_on("OwnershipControlsNotFoundError")(
                lambda: [
                    r["ObjectOwnership"]
                    for r in s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
                ]
            ),
            [hardening.OBJECT_OWNERSHIP],
            lambda: s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": hardening.OBJECT_OWNERSHIP}]}
            ),
        ),
        _Setting(
            "public access: all blocked",
            lambda: _absent_on("NoSuchPublicAccessBlockConfiguration")(
                lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            ),
            hardening.PUBLIC_ACCESS_BLOCK,
            lambda: s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=hardening.PUBLIC_ACCESS_BLOCK
            ),
        ),
        _Setting(
            "versioning: enabled",
            lambda: s3.get_bucket_versioning(Bucket=bucket).get("Status"),
            "Enabled",
            lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
        ),
        _Setting(
            f"encryption: {hardening.SSE_ALGORITHM}",
            encryption,
            [hardening.SSE_ALGORITHM],
            lambda: s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": hardening.SSE_ALGORITHM}}
                    ]
                },
            ),
        ),
        _Setting(
            f"lifecycle: noncurrent versions expire after {noncurrent_days} days",
            lifecycle,
            [lifecycle_rule],
            lambda: s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [lifecycle_rule]}
            ),
        ),
        _Setting(
            "policy: deny non-TLS access",
            policy,
            hardening.tls_only_policy(bucket),
            lambda: s3.put_bucket_policy(Bucket=bucket, Policy=hardening.tls_only_policy_json(bucket)),
        ),
        _Setting(
            "tags: as the Pulumi program declares them",
            tags,
            hardening.STATE_BUCKET_TAGS,
            lambda: s3.put_bucket_tagging(
                Bucket=bucket,
                Tagging={
                    "TagSet": [{"Key": k, "Value": v} for k, v in sorted(hardening.STATE_BUCKET_TAGS.items())]
                },
            ),
        ),
    ]


def ensure_state_bucket(s3: Any, bucket: str, region: str, noncurrent_days: int = 90) -> list[str]:
    """Create the state bucket if absent and bring every hardening setting to what it should be.

    Args:
        s3: A boto3 S3 client for `region`.
        bucket: The bucket name.
        region: The region to create it in.
        noncurrent_days: Days old state versions are kept (the program's stateNoncurrentDays).

    Returns:
        What was changed, one line each; empty when everything already was as it should be.

    Raises:
        BootstrapError: The bucket exists but is not this account's.
    """
    changed: list[str] = []
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied", "Forbidden"):
            raise BootstrapError(
                f"bucket {bucket} exists and is not yours (or you may not read it); "
                "pass --bucket with another name"
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        create: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": hardening.OBJECT_OWNERSHIP}
        if region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint for itself
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        changed.append(f"created bucket {bucket} in {region}")
    for setting in _settings(s3, bucket, noncurrent_days):
        if setting.current() != setting.wanted:
            setting.apply()
            changed.append(f"set {setting.name}")
    return changed


def default_bucket_name(account_id: str, region: str) -> str:
    """A name unique to the account and region: bucket names are global across all of AWS."""
    return f"cali-housing-state-{account_id}-{region}"


def resolve_region(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """The region to use: --region, then AWS_REGION, then AWS_DEFAULT_REGION; None means the profile's.

    AWS_REGION comes first because the AWS CLI and GitHub's credentials action set it, while boto3
    itself reads only AWS_DEFAULT_REGION (botocore's config provider).
    """
    return flag or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None


def _decoded(document: Any) -> Any:
    """A policy document as a dict: IAM returns them URL-encoded (boto3 decodes; a stand-in may not)."""
    return json.loads(urllib.parse.unquote(document)) if isinstance(document, str) else document


def _canonical(document: Any) -> Any:
    """A policy document in a form that compares equal whatever order IAM hands its lists back in."""
    if isinstance(document, dict):
        return {k: _canonical(v) for k, v in sorted(document.items())}
    if isinstance(document, list):
        items = [_canonical(v) for v in document]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return document


def _listify(document: Any) -> Any:
    # Action/Resource as a one-element list and as a string mean the same; compare them as lists.
    if isinstance(document, dict):
        return {
            k: [v] if k in ("Action", "Resource") and isinstance(v, str) else _listify(v)
            for k, v in document.items()
        }
    if isinstance(document, list):
        return [_listify(v) for v in document]
    return document


def same_policy(current: Any, wanted: Any) -> bool:
    """True when two policy documents say the same thing."""
    return _canonical(_listify(_decoded(current))) == _canonical(_listify(wanted))


def policy_diff(label: str, current: Any, wanted: Any) -> str:
    """A unified diff of two policy documents, for the user to see what is being put back."""

    def lines(doc: Any) -> list[str]:
        return json.dumps(_canonical(_listify(_decoded(doc))), indent=2, sort_keys=True).splitlines()

    return "\n".join(
        difflib.unified_diff(
            lines(current), lines(wanted), f"{label} (in AWS)", f"{label} (wanted)", lineterm=""
        )
    )


def ensure_oidc_provider(iam: Any, account: str) -> tuple[str, list[str]]:
    """GitHub's OIDC provider, created when the account lacks it, with the audience CI asks for.

    Returns:
        The provider's ARN, and what was changed.
    """
    arn = f"arn:aws:iam::{account}:oidc-provider/{perms.GITHUB_OIDC_HOST}"
    existing = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    if arn not in existing:
        # No thumbprint: "This parameter is optional. If it is not included, IAM will retrieve and
        # use the top intermediate certificate authority (CA) thumbprint" (botocore's IAM model,
        # CreateOpenIDConnectProvider.ThumbprintList), so none goes stale here.
        iam.create_open_id_connect_provider(
            Url=f"https://{perms.GITHUB_OIDC_HOST}",
            ClientIDList=[perms.OIDC_AUDIENCE],
            Tags=[{"Key": perms.TAG_KEY, "Value": perms.TAG_VALUE}],
        )
        return arn, [f"created OIDC provider {perms.GITHUB_OIDC_HOST}"]
    audiences = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn).get("ClientIDList", [])
    if perms.OIDC_AUDIENCE not in audiences:
        iam.add_client_id_to_open_id_connect_provider(
            OpenIDConnectProviderArn=arn, ClientID=perms.OIDC_AUDIENCE
        )
        return arn, [f"added audience {perms.OIDC_AUDIENCE} to the OIDC provider"]
    return arn, []


def ensure_kms_key(kms: Any) -> tuple[str, list[str]]:
    """The key Pulumi encrypts the stack's secrets with: enabled, rotated yearly, under KMS_ALIAS.

    Returns:
        The key's ARN, and what was changed.

    Raises:
        BootstrapError: The alias names a key that is pending deletion.
    """
    changed: list[str] = []
    metadata = _absent_on("NotFoundException")(lambda: kms.describe_key(KeyId=perms.KMS_ALIAS)["KeyMetadata"])
    if metadata is None:
        metadata = kms.create_key(
            Description="Pulumi secrets provider of the cali-housing stacks (python -m account.bootstrap)",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[{"TagKey": perms.TAG_KEY, "TagValue": perms.TAG_VALUE}],
        )["KeyMetadata"]
        kms.create_alias(AliasName=perms.KMS_ALIAS, TargetKeyId=metadata["KeyId"])
        changed.append(f"created KMS key {metadata['KeyId']} as {perms.KMS_ALIAS}")
    state = metadata.get("KeyState", "Enabled")
    if state == "PendingDeletion":
        raise BootstrapError(
            f"{perms.KMS_ALIAS} names key {metadata['KeyId']}, which is pending deletion: "
            "cancel it (aws kms cancel-key-deletion) or delete the alias"
        )
    if state == "Disabled":
        kms.enable_key(KeyId=metadata["KeyId"])
        changed.append(f"enabled KMS key {metadata['KeyId']}")
    if not kms.get_key_rotation_status(KeyId=metadata["KeyId"])["KeyRotationEnabled"]:
        kms.enable_key_rotation(KeyId=metadata["KeyId"])
        changed.append("turned on yearly rotation of the KMS key")
    return metadata["Arn"], changed


def ensure_managed_policy(
    iam: Any,
    account: str,
    name: str,
    document: dict[str, Any],
    description: str = "cali-housing CI: reads of what the stack holds (python -m account.bootstrap)",
) -> tuple[str, list[str]]:
    """A customer-managed policy whose default version says `document`; a hand-made version is replaced.

    Returns:
        The policy's ARN, and what was changed.
    """
    arn = f"arn:aws:iam::{account}:policy/{name}"
    body = json.dumps(document, separators=(",", ":"))
    policy = _absent_on("NoSuchEntity")(lambda: iam.get_policy(PolicyArn=arn)["Policy"])
    if policy is None:
        iam.create_policy(
            PolicyName=name,
            PolicyDocument=body,
            Description=description,
            Tags=[{"Key": perms.TAG_KEY, "Value": perms.TAG_VALUE}],
        )
        return arn, [f"created policy {name}"]
    current = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    if same_policy(current["Document"], document):
        return arn, []
    # IAM keeps at most five versions: make room by dropping the oldest non-default one.
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
    if len(versions) >= 5:
        iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=body, SetAsDefault=True)
    return arn, [policy_diff(f"{name} policy", current["Document"], document), f"set policy {name}"]


@dataclass(frozen=True)
class RoleSpec:
    """One CI role: its name, who may assume it, its inline policy (if any) and its managed policies."""

    name: str
    description: str
    trust: dict[str, Any]
    inline: dict[str, Any] | None
    managed: tuple[str, ...]


def ensure_role(iam: Any, spec: RoleSpec) -> tuple[str, list[str]]:
    """Create the role, or bring its trust, inline policy and attachments back to `spec`.

    Anything else on the role (another inline policy, an attached managed policy such as
    AdministratorAccess) was added by hand and is removed: the role may do what the program needs.

    Returns:
        The role's ARN, and what was changed (differences as unified diffs).
    """
    changed: list[str] = []
    role = _absent_on("NoSuchEntity")(lambda: iam.get_role(RoleName=spec.name)["Role"])
    if role is None:
        role = iam.create_role(
            RoleName=spec.name,
            AssumeRolePolicyDocument=json.dumps(spec.trust),
            Description=spec.description,
            MaxSessionDuration=3600,
            Tags=[{"Key": perms.TAG_KEY, "Value": perms.TAG_VALUE}],
        )["Role"]
        changed.append(f"created role {spec.name}")
    else:
        if not same_policy(role["AssumeRolePolicyDocument"], spec.trust):
            changed.append(policy_diff(f"{spec.name} trust", role["AssumeRolePolicyDocument"], spec.trust))
            iam.update_assume_role_policy(RoleName=spec.name, PolicyDocument=json.dumps(spec.trust))
            changed.append(f"set {spec.name}'s trust policy")
    attached = {
        p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=spec.name)["AttachedPolicies"]
    }
    for arn in sorted(attached - set(spec.managed)):
        iam.detach_role_policy(RoleName=spec.name, PolicyArn=arn)
        changed.append(f"detached {arn} from {spec.name} (added by hand)")
    for arn in sorted(set(spec.managed) - attached):
        iam.attach_role_policy(RoleName=spec.name, PolicyArn=arn)
        changed.append(f"attached {arn} to {spec.name}")
    names = iam.list_role_policies(RoleName=spec.name)["PolicyNames"]
    wanted_names = [perms.ROLE_POLICY_NAME] if spec.inline is not None else []
    for name in names:
        if name not in wanted_names:
            iam.delete_role_policy(RoleName=spec.name, PolicyName=name)
            changed.append(f"deleted inline policy {name} from {spec.name} (added by hand)")
    if spec.inline is not None:
        current = (
            iam.get_role_policy(RoleName=spec.name, PolicyName=perms.ROLE_POLICY_NAME)["PolicyDocument"]
            if perms.ROLE_POLICY_NAME in names
            else None
        )
        if current is None or not same_policy(current, spec.inline):
            if current is not None:
                changed.append(policy_diff(f"{spec.name} policy", current, spec.inline))
            iam.put_role_policy(
                RoleName=spec.name,
                PolicyName=perms.ROLE_POLICY_NAME,
                PolicyDocument=json.dumps(spec.inline, separators=(",", ":")),
            )
            changed.append(f"set {spec.name}'s policy {perms.ROLE_POLICY_NAME}")
    return role["Arn"], changed


# The managed policies the bootstrap keeps, besides the roles' own: (name, document, description).
def managed_policies(scope: perms.Scope) -> list[tuple[str, dict[str, Any], str]]:
    """The read policy, the guard rails every CI role has, and the program roles' boundary."""
    return [
        (perms.READ_POLICY, perms.read_policy(scope), "cali-housing CI: reads of what the stack holds"),
        (
            perms.GUARD_RAILS_POLICY,
            perms.guard_rails_policy(scope),
            "cali-housing CI: what no CI role may ever do (explicit denies)",
        ),
        (
            tags.PERMISSIONS_BOUNDARY_POLICY,
            perms.boundary_policy(scope),
            "cali-housing program roles' permissions boundary: the most a server or flow-log role may do",
        ),
    ]


def stack_hosted_zones(root: Path) -> list[str]:
    """The Route 53 zone names the checkout's stacks are configured with (`hostedZone`)."""
    import yaml  # the dev install's; only the bootstrap reads stack files

    names = set()
    for path in sorted(root.glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        zone = config.get("cali-housing:hostedZone")
        if isinstance(zone, str) and zone:
            names.add(zone.rstrip(".").lower())
    return sorted(names)


def hosted_zone_ids(route53: Any, names: Sequence[str]) -> tuple[str, ...]:
    """The ids of the public hosted zones with these names.

    Raises:
        BootstrapError: A configured zone does not exist in the account.
    """
    ids = []
    for name in names:
        # Zones come back in name order from DNSName on; a private zone may share the name.
        found = route53.list_hosted_zones_by_name(DNSName=name, MaxItems="10")["HostedZones"]
        match = [
            z
            for z in found
            if z["Name"].rstrip(".").lower() == name and not z.get("Config", {}).get("PrivateZone", False)
        ]
        if not match:
            raise BootstrapError(f"hostedZone {name} (a stack's config) is not a hosted zone of this account")
        ids.append(match[0]["Id"].removeprefix("/hostedzone/"))
    return tuple(ids)


def ci_roles(
    account: str, github_repo: str, scope: perms.Scope, read_arn: str, guard_arn: str
) -> list[RoleSpec]:
    """The deploy and preview roles for one repository (both have the read policy `read_arn`), and
    the small CI helper role of its main-branch jobs outside the production environment; every one
    has the guard rails `guard_arn`."""
    return [
        RoleSpec(
            perms.DEPLOY_ROLE,
            f"pulumi up/destroy from {github_repo}'s production environment",
            perms.trust_policy(account, github_repo, perms.DEPLOY_SUBJECT),
            perms.deploy_policy(scope),
            (read_arn, guard_arn),
        ),
        RoleSpec(
            perms.PREVIEW_ROLE,
            f"pulumi preview from {github_repo}'s pull requests: reads only",
            perms.trust_policy(account, github_repo, perms.PREVIEW_SUBJECT),
            None,
            (read_arn, guard_arn),
        ),
        RoleSpec(
            perms.CI_HELPER_ROLE,
            f"{github_repo}'s main-branch smoke ingress rule and AMI look-up",
            perms.trust_policy(account, github_repo, perms.CI_HELPER_SUBJECT),
            perms.ci_helper_policy(scope),
            (guard_arn,),
        ),
    ]


def secrets_provider(region: str) -> str:
    """The stacks' Pulumi secrets provider URL (Pulumi.prod.yaml's `secretsprovider`)."""
    return f"awskms://{perms.KMS_ALIAS}?region={region}"


def backend_url(bucket: str, region: str) -> str:
    """What `pulumi login` takes for the state bucket."""
    return f"s3://{bucket}?region={region}"


def next_steps(bucket: str, region: str) -> str:
    """The commands to run after the bootstrap, in order."""
    return "\n".join(
        [
            "Next, from the repository root:",
            f"  pulumi login '{backend_url(bucket, region)}'",
            f"  pulumi stack init prod --secrets-provider '{secrets_provider(region)}'",
            f"  #  (a stack made earlier: pulumi stack change-secrets-provider '{secrets_provider(region)}')",
            f"  pulumi config set stateBucket {bucket}",
            "  pulumi preview",
            "  pulumi up",
        ]
    )


def github_variables(roles: Mapping[str, str], bucket: str, region: str) -> str:
    """The repository variables CI reads, as `gh` commands (none of them is a secret)."""
    return "\n".join(
        [
            "Set these GitHub variables (Settings > Secrets and variables > Actions > Variables):",
            f"  gh variable set AWS_DEPLOY_ROLE_ARN --body '{roles[perms.DEPLOY_ROLE]}'",
            f"  gh variable set AWS_PREVIEW_ROLE_ARN --body '{roles[perms.PREVIEW_ROLE]}'",
            f"  gh variable set AWS_CI_HELPER_ROLE_ARN --body '{roles[perms.CI_HELPER_ROLE]}'",
            f"  gh variable set AWS_REGION --body '{region}'",
            f"  gh variable set PULUMI_BACKEND_URL --body '{backend_url(bucket, region)}'",
            f"Secrets provider (committed in Pulumi.prod.yaml, no passphrase): {secrets_provider(region)}",
            "No GitHub secret is needed: PULUMI_CONFIG_PASSPHRASE can be deleted.",
        ]
    )


_GITHUB_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of `python -m account.bootstrap`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m account.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, your profile's)"
    )
    parser.add_argument("--bucket", help="bucket name (default: cali-housing-state-<account>-<region>)")
    parser.add_argument("--noncurrent-days", type=int, default=90, help="days old state versions are kept")
    parser.add_argument(
        "--github-repo",
        metavar="OWNER/REPO",
        help="also create GitHub's OIDC provider and CI's deploy and preview roles for this repository",
    )
    parser.add_argument(
        "--stacks",
        nargs="+",
        metavar="STACK",
        help="stacks whose ECR repositories to make (default: every Pulumi.<stack>.yaml beside the program)",
    )
    parser.add_argument("--endpoint-url", help="AWS endpoint, for testing against a local stand-in")
    parser.add_argument(
        "--stacks-dir",
        default=".",
        help="where the Pulumi.<stack>.yaml files are (their hostedZone: the zones CI may change records in)",
    )
    args = parser.parse_args(argv)
    if args.github_repo is not None and not _GITHUB_REPO.match(args.github_repo):
        parser.error(f"--github-repo {args.github_repo!r} is not OWNER/REPO (e.g. octo-org/cali-housing)")

    region = resolve_region(args.region, os.environ if environ is None else environ)
    session = boto3.session.Session(region_name=region)
    region = session.region_name
    if not region:
        parser.error("no region: pass --region or set AWS_REGION")
    sts = session.client("sts", endpoint_url=args.endpoint_url)
    account = sts.get_caller_identity()["Account"]
    bucket = args.bucket or default_bucket_name(account, region)
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    kms = session.client("kms", endpoint_url=args.endpoint_url)
    changes: list[str] = []
    try:
        changes += ensure_state_bucket(s3, bucket, region, args.noncurrent_days)
        key_arn, changed = ensure_kms_key(kms)
        changes += changed
        stacks, elsewhere = (args.stacks, []) if args.stacks else registries.default_stacks(region)
        for stack in elsewhere:
            print(f"note: stack {stack} is in another region; run this with its --region", file=sys.stderr)
        ecr = session.client("ecr", endpoint_url=args.endpoint_url)
        changes += registries.ensure_repositories(ecr, stacks, region)
        roles: dict[str, str] = {}
        if args.github_repo:
            iam = session.client("iam", endpoint_url=args.endpoint_url)
            _, changed = ensure_oidc_provider(iam, account)
            changes += changed
            route53 = session.client("route53", endpoint_url=args.endpoint_url)
            zones = hosted_zone_ids(route53, stack_hosted_zones(Path(args.stacks_dir)))
            scope = perms.Scope(
                account=account, region=region, bucket=bucket, key_arn=key_arn, hosted_zones=zones
            )
            policies: dict[str, str] = {}
            for name, document, description in managed_policies(scope):
                policies[name], changed = ensure_managed_policy(iam, account, name, document, description)
                changes += changed
            read_arn, guard_arn = policies[perms.READ_POLICY], policies[perms.GUARD_RAILS_POLICY]
            for spec in ci_roles(account, args.github_repo, scope, read_arn, guard_arn):
                roles[spec.name], changed = ensure_role(iam, spec)
                changes += changed
    except (BootstrapError, registries.RepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for line in changes:
        print(line)
    if not changes:
        print(
            f"state bucket {bucket}, KMS key, ECR repositories{' and CI roles' if roles else ''} "
            "already in place; nothing changed"
        )
    print(next_steps(bucket, region))
    if roles:
        print(github_variables(roles, bucket, region))
    else:
        print("CI roles not made: pass --github-repo OWNER/REPO to create them (docs/ci-cd.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
