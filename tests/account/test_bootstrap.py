"""`python -m account.bootstrap` against a moto server over real HTTP: fresh, again, and half-done."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.parse
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from account import permissions
from account.bootstrap import ensure_kms_key, ensure_oidc_provider, ensure_state_bucket, main, resolve_region
from infra import state_hardening, tags
from tests.infra.conftest import ROOT, MotoServer

REGION = "eu-west-1"
BUCKET = "cali-housing-state-123456789012-eu-west-1"  # moto's account id


def s3_client(server: MotoServer, region: str = REGION) -> Any:
    """An S3 client for the stand-in (boto3 clients are typed at runtime only)."""
    return boto3.client("s3", region_name=region, endpoint_url=server.url)


def assert_hardened(s3: Any, bucket: str, noncurrent_days: int = 90) -> None:
    """Every setting the Pulumi component declares is in place."""
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == state_hardening.PUBLIC_ACCESS_BLOCK
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == state_hardening.tls_only_policy(
        bucket
    )
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == noncurrent_days
    assert lifecycle["Status"] == "Enabled"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == state_hardening.STATE_BUCKET_TAGS


def test_fresh_account_gets_a_hardened_bucket_and_the_next_commands(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--region", REGION, "--endpoint-url", aws_stand_in.url]) == 0
    out = capsys.readouterr().out
    assert f"created bucket {BUCKET} in {REGION}" in out
    assert f"pulumi login 's3://{BUCKET}?region={REGION}'" in out
    assert "pulumi stack init prod" in out
    assert f"pulumi config set stateBucket {BUCKET}" in out
    assert_hardened(s3_client(aws_stand_in), BUCKET)


def test_second_run_changes_nothing(aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = s3_client(aws_stand_in)
    assert ensure_state_bucket(s3, BUCKET, REGION) != []
    assert ensure_state_bucket(s3, BUCKET, REGION) == []
    assert main(["--region", REGION, "--bucket", BUCKET, "--endpoint-url", aws_stand_in.url]) == 0
    assert "created KMS key" in capsys.readouterr().out  # the bucket was there; the key was not
    assert main(["--region", REGION, "--bucket", BUCKET, "--endpoint-url", aws_stand_in.url]) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_half_configured_bucket_is_repaired(aws_stand_in: MotoServer) -> None:
    # An earlier run that died after creating the bucket and turning on versioning, with a
    # lifecycle rule someone then edited by hand.
    s3 = s3_client(aws_stand_in)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "hand-made",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                }
            ]
        },
    )
    changed = ensure_state_bucket(s3, BUCKET, REGION)
    assert not any(line.startswith("created") for line in changed)
    assert "set versioning: enabled" not in changed
    assert "set lifecycle: noncurrent versions expire after 90 days" in changed
    assert "set public access: all blocked" in changed
    assert_hardened(s3, BUCKET)
    assert ensure_state_bucket(s3, BUCKET, REGION) == []


def test_us_east_1_bucket_is_created_without_a_location_constraint(aws_stand_in: MotoServer) -> None:
    s3 = s3_client(aws_stand_in, "us-east-1")
    ensure_state_bucket(s3, "cali-state-use1", "us-east-1", noncurrent_days=30)
    assert_hardened(s3, "cali-state-use1", noncurrent_days=30)


def test_state_bucket_keeps_earlier_state_versions(aws_stand_in: MotoServer) -> None:
    s3 = s3_client(aws_stand_in)
    ensure_state_bucket(s3, BUCKET, REGION)
    # moto ignores policy conditions, so it reads the TLS-only Deny as "deny everything"; set the
    # policy aside to write state (test_program.py pins the policy's condition itself).
    s3.delete_bucket_policy(Bucket=BUCKET)
    key = ".pulumi/stacks/cali-housing/prod.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"version": 1}')
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"version": 2}')
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    (earlier,) = [v for v in versions if not v["IsLatest"]]
    body = s3.get_object(Bucket=BUCKET, Key=key, VersionId=earlier["VersionId"])["Body"].read()
    assert body == b'{"version": 1}'
    assert ensure_state_bucket(s3, BUCKET, REGION) == ["set policy: deny non-TLS access"]


# --- CI identities and the secrets key (issue 18) ------------------------------------------------

GITHUB_REPO = "octo-org/cali-housing"
ACCOUNT = "123456789012"  # moto's account id
OIDC_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{permissions.GITHUB_OIDC_HOST}"
# What AdministratorAccess says (moto's server does not load AWS's managed policies by default).
ADMIN_LIKE = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
READ_ARN = f"arn:aws:iam::{ACCOUNT}:policy/{permissions.READ_POLICY}"
GUARD_ARN = f"arn:aws:iam::{ACCOUNT}:policy/{permissions.GUARD_RAILS_POLICY}"
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/{tags.PERMISSIONS_BOUNDARY_POLICY}"


def bootstrap(server: MotoServer, *extra: str) -> int:
    """One run of `python -m account.bootstrap --github-repo ...` against the stand-in."""
    return main(["--region", REGION, "--endpoint-url", server.url, "--github-repo", GITHUB_REPO, *extra])


def iam_client(server: MotoServer) -> Any:
    return boto3.client("iam", region_name=REGION, endpoint_url=server.url)


def document(value: Any) -> dict[str, Any]:
    """A policy document as IAM hands it back (a dict from boto3, or URL-encoded JSON)."""
    return value if isinstance(value, dict) else json.loads(urllib.parse.unquote(value))


def read_policy(iam: Any) -> dict[str, Any]:
    """The default version of the managed read policy both roles have."""
    version = iam.get_policy(PolicyArn=READ_ARN)["Policy"]["DefaultVersionId"]
    return document(
        iam.get_policy_version(PolicyArn=READ_ARN, VersionId=version)["PolicyVersion"]["Document"]
    )


def deploy_policy(iam: Any, name: str = permissions.DEPLOY_ROLE) -> dict[str, Any]:
    """The deploy role's inline policy (or another role's, by name)."""
    return document(
        iam.get_role_policy(RoleName=name, PolicyName=permissions.ROLE_POLICY_NAME)["PolicyDocument"]
    )


def test_one_run_creates_the_oidc_provider_both_roles_and_a_rotated_key(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bootstrap(aws_stand_in) == 0
    out = capsys.readouterr().out
    iam = iam_client(aws_stand_in)
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=OIDC_ARN)
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]

    subjects = {
        permissions.DEPLOY_ROLE: f"repo:{GITHUB_REPO}:environment:production",
        permissions.PREVIEW_ROLE: f"repo:{GITHUB_REPO}:pull_request",
        permissions.CI_HELPER_ROLE: f"repo:{GITHUB_REPO}:ref:refs/heads/main",
    }
    for name, subject in subjects.items():
        role = iam.get_role(RoleName=name)["Role"]
        (trust,) = document(role["AssumeRolePolicyDocument"])["Statement"]
        assert trust["Principal"] == {"Federated": OIDC_ARN}
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        # StringEquals, not StringLike: no wildcard lets another branch, repository or event in.
        assert trust["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": subject,
            }
        }
        # The managed policies made here only (reads, guard rails): no AWS-managed (admin-like) one.
        attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        helper = name == permissions.CI_HELPER_ROLE  # no reads of the stack: its own two grants only
        assert sorted(p["PolicyArn"] for p in attached) == sorted(
            [GUARD_ARN] if helper else [READ_ARN, GUARD_ARN]
        )
        inline = [] if name == permissions.PREVIEW_ROLE else [permissions.ROLE_POLICY_NAME]
        assert iam.list_role_policies(RoleName=name)["PolicyNames"] == inline
        variable = name.removeprefix("cali-housing-").replace("-", "_").upper()
        assert f"gh variable set AWS_{variable}_ROLE_ARN --body '{role['Arn']}'" in out

    documents = [read_policy(iam), deploy_policy(iam), deploy_policy(iam, permissions.CI_HELPER_ROLE)]
    for policy in documents:
        assert [a for s in policy["Statement"] for a in s["Action"] if "*" in a] == []
        # No write on every resource unless a condition narrows it (reads: Describe*/List*/Get*).
        for s in policy["Statement"]:
            if s["Resource"] == ["*"] and "Condition" not in s:
                assert all(a.split(":")[1].startswith(("Describe", "List", "Get")) for a in s["Action"]), s
    assert not any(
        a.split(":")[1].startswith(("Put", "Create", "Delete", "Update", "Attach"))
        for s in documents[0]["Statement"]
        for a in s["Action"]
    )

    kms = boto3.client("kms", region_name=REGION, endpoint_url=aws_stand_in.url)
    key = kms.describe_key(KeyId=permissions.KMS_ALIAS)["KeyMetadata"]
    assert key["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    read = read_policy(iam)
    assert any(key["Arn"] in s["Resource"] and "kms:Decrypt" in s["Action"] for s in read["Statement"])
    assert f"gh variable set PULUMI_BACKEND_URL --body 's3://{BUCKET}?region={REGION}'" in out
    assert f"awskms://alias/cali-housing-pulumi?region={REGION}" in out
    assert "PULUMI_CONFIG_PASSPHRASE can be deleted" in out


def test_second_run_changes_nothing_and_says_so(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bootstrap(aws_stand_in) == 0
    capsys.readouterr()
    iam = iam_client(aws_stand_in)
    before = iam.get_role(RoleName=permissions.DEPLOY_ROLE)["Role"]
    assert bootstrap(aws_stand_in) == 0
    out = capsys.readouterr().out
    # Every line before the next steps is a change; a second run has only the one saying none.
    (report,) = out.split("Next, from the repository root:")[0].strip().splitlines()
    assert report.endswith("already in place; nothing changed")
    assert iam.get_role(RoleName=permissions.DEPLOY_ROLE)["Role"]["RoleId"] == before["RoleId"]


def test_a_hand_widened_role_is_printed_as_a_difference_and_put_back(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bootstrap(aws_stand_in) == 0
    capsys.readouterr()
    iam = iam_client(aws_stand_in)
    wanted_read, wanted_deploy = read_policy(iam), deploy_policy(iam)
    widened = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    )
    deploy, preview = permissions.DEPLOY_ROLE, permissions.PREVIEW_ROLE
    iam.put_role_policy(RoleName=deploy, PolicyName=permissions.ROLE_POLICY_NAME, PolicyDocument=widened)
    iam.create_policy_version(PolicyArn=READ_ARN, PolicyDocument=widened, SetAsDefault=True)
    iam.put_role_policy(RoleName=preview, PolicyName="quick-fix", PolicyDocument=widened)
    admin = iam.create_policy(PolicyName="hand-made-admin", PolicyDocument=ADMIN_LIKE)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=preview, PolicyArn=admin)
    loose_trust = permissions.trust_policy(ACCOUNT, "octo-org/*", "*")
    iam.update_assume_role_policy(RoleName=preview, PolicyDocument=json.dumps(loose_trust))

    assert bootstrap(aws_stand_in) == 0
    out = capsys.readouterr().out
    removed_wildcard = '\n-        "s3:*"\n'  # a line of the diff: the widened action goes
    assert f"--- {deploy} policy (in AWS)" in out
    assert f"--- {permissions.READ_POLICY} policy (in AWS)" in out
    assert out.count(removed_wildcard) == 2
    assert f"--- {preview} trust (in AWS)" in out
    assert f'+          "token.actions.githubusercontent.com:sub": "repo:{GITHUB_REPO}:pull_request"' in out
    assert f"detached {admin} from {preview} (added by hand)" in out
    assert f"deleted inline policy quick-fix from {preview} (added by hand)" in out

    assert read_policy(iam) == wanted_read
    assert deploy_policy(iam) == wanted_deploy
    assert iam.list_role_policies(RoleName=preview)["PolicyNames"] == []
    attached = iam.list_attached_role_policies(RoleName=preview)["AttachedPolicies"]
    assert sorted(p["PolicyArn"] for p in attached) == sorted([READ_ARN, GUARD_ARN])
    assert bootstrap(aws_stand_in) == 0
    assert "nothing changed" in capsys.readouterr().out


def managed_document(iam: Any, arn: str) -> dict[str, Any]:
    """The default version of a managed policy."""
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])


def test_a_rerun_over_an_account_of_the_previous_version_puts_the_new_policies_in_place(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The account as the previous bootstrap left it: no boundary, no guard rails, a deploy policy
    # whose IAM grants reached every role/cali-* and that could run instances on any resource.
    assert bootstrap(aws_stand_in) == 0
    capsys.readouterr()
    iam = iam_client(aws_stand_in)
    wanted_deploy = deploy_policy(iam)
    wanted_boundary = managed_document(iam, BOUNDARY_ARN)
    wanted_guard = managed_document(iam, GUARD_ARN)
    for role in (permissions.DEPLOY_ROLE, permissions.PREVIEW_ROLE, permissions.CI_HELPER_ROLE):
        iam.detach_role_policy(RoleName=role, PolicyArn=GUARD_ARN)
    for arn in (GUARD_ARN, BOUNDARY_ARN):
        iam.delete_policy(PolicyArn=arn)
    previous = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["iam:PutRolePolicy"],
                "Resource": [f"arn:aws:iam::{ACCOUNT}:role/cali-*"],
            },
            {"Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": ["*"]},
        ],
    }
    iam.put_role_policy(
        RoleName=permissions.DEPLOY_ROLE,
        PolicyName=permissions.ROLE_POLICY_NAME,
        PolicyDocument=json.dumps(previous),
    )

    assert bootstrap(aws_stand_in) == 0
    out = capsys.readouterr().out
    assert f"created policy {permissions.GUARD_RAILS_POLICY}" in out
    assert f"created policy {tags.PERMISSIONS_BOUNDARY_POLICY}" in out
    for role in (permissions.DEPLOY_ROLE, permissions.PREVIEW_ROLE, permissions.CI_HELPER_ROLE):
        assert f"attached {GUARD_ARN} to {role}" in out
    assert f"--- {permissions.DEPLOY_ROLE} policy (in AWS)" in out
    assert deploy_policy(iam) == wanted_deploy
    assert managed_document(iam, BOUNDARY_ARN) == wanted_boundary
    assert managed_document(iam, GUARD_ARN) == wanted_guard
    assert bootstrap(aws_stand_in) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_the_configured_hosted_zone_is_the_only_one_the_deploy_role_may_change(
    aws_stand_in: MotoServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    route53 = boto3.client("route53", region_name=REGION, endpoint_url=aws_stand_in.url)
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="i24")["HostedZone"]["Id"]
    route53.create_hosted_zone(Name="other.example.org", CallerReference="i24-other")
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  cali-housing:hostedZone: example.com\n")
    assert bootstrap(aws_stand_in, "--stacks-dir", str(tmp_path)) == 0
    changes = [
        s["Resource"]
        for s in deploy_policy(iam_client(aws_stand_in))["Statement"]
        if "route53:ChangeResourceRecordSets" in s["Action"]
    ]
    assert changes == [[f"arn:aws:route53:::hostedzone/{zone.removeprefix('/hostedzone/')}"]]


def test_a_configured_hosted_zone_the_account_lacks_is_an_error(
    aws_stand_in: MotoServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  cali-housing:hostedZone: missing.example\n")
    assert bootstrap(aws_stand_in, "--stacks-dir", str(tmp_path)) == 1
    assert "hostedZone missing.example" in capsys.readouterr().err
    assert iam_client(aws_stand_in).list_roles()["Roles"] == []  # nothing made before the check


def test_a_key_without_rotation_gets_it_back(aws_stand_in: MotoServer) -> None:
    kms = boto3.client("kms", region_name=REGION, endpoint_url=aws_stand_in.url)
    _, created = ensure_kms_key(kms)
    assert created[0].startswith("created KMS key")
    key_id = kms.describe_key(KeyId=permissions.KMS_ALIAS)["KeyMetadata"]["KeyId"]
    kms.disable_key_rotation(KeyId=key_id)
    assert ensure_kms_key(kms)[1] == ["turned on yearly rotation of the KMS key"]
    assert ensure_kms_key(kms)[1] == []


def test_an_existing_oidc_provider_is_kept(aws_stand_in: MotoServer) -> None:
    iam = iam_client(aws_stand_in)
    iam.create_open_id_connect_provider(
        Url=f"https://{permissions.GITHUB_OIDC_HOST}",
        ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=["a" * 40],
    )
    assert ensure_oidc_provider(iam, ACCOUNT) == (OIDC_ARN, [])


def test_an_existing_oidc_provider_without_the_audience_gets_it() -> None:
    # moto answers AddClientIDToOpenIDConnectProvider with a 500, so botocore's Stubber stands in:
    # it checks each call's parameters against the IAM API model.
    iam = boto3.client("iam", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")  # noqa: S106 - a stub
    with Stubber(iam) as stub:
        stub.add_response(
            "list_open_id_connect_providers", {"OpenIDConnectProviderList": [{"Arn": OIDC_ARN}]}
        )
        stub.add_response(
            "get_open_id_connect_provider",
            {"ClientIDList": ["other"]},
            {"OpenIDConnectProviderArn": OIDC_ARN},
        )
        stub.add_response(
            "add_client_id_to_open_id_connect_provider",
            {},
            {"OpenIDConnectProviderArn": OIDC_ARN, "ClientID": "sts.amazonaws.com"},
        )
        assert ensure_oidc_provider(iam, ACCOUNT) == (
            OIDC_ARN,
            ["added audience sts.amazonaws.com to the OIDC provider"],
        )
        stub.assert_no_pending_responses()


@pytest.mark.parametrize("repo", ["cali-housing", "octo-org/", "octo org/cali", "https://github.com/o/r"])
def test_a_malformed_repository_is_refused_naming_the_flag(
    repo: str, aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--region", REGION, "--endpoint-url", aws_stand_in.url, "--github-repo", repo])
    assert exit_info.value.code == 2
    assert "is not OWNER/REPO" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({"AWS_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "eu-north-1"}, "eu-north-1"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-north-1"}, "eu-west-1"),
    ],
)
def test_the_region_comes_from_aws_region_first_then_aws_default_region(
    environ: dict[str, str], region: str
) -> None:
    assert resolve_region(None, environ) == region
    assert resolve_region("ap-south-1", environ) == "ap-south-1"


# --- the documented command lines, run as written ------------------------------------------------

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = ("```sh", "```bash", "```console")


def shell_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced shell block of a Markdown text (other fences are skipped whole)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            if inside:
                if current is not None:
                    blocks.append(current)
                current, inside = None, False
            else:
                inside = True
                current = [] if line.strip() in SHELL_FENCES else None
        elif current is not None:
            current.append(line)
    return blocks


def documented_bootstrap_commands() -> list[tuple[str, str]]:
    """Every shell line in the docs that runs the bootstrap, with the file it is in."""
    found = []
    for path in DOC_FILES:
        for block in shell_blocks(path.read_text()):
            for line in block:
                command = line.split("  #", 1)[0].strip()
                if "-m account.bootstrap" in command:
                    found.append((path.name, command))
    return found


def test_the_docs_show_the_bootstrap_command() -> None:
    assert any("--github-repo" in command for _, command in documented_bootstrap_commands())


@pytest.mark.parametrize(("doc", "command"), documented_bootstrap_commands())
def test_each_documented_bootstrap_command_runs_as_written(
    doc: str, command: str, aws_stand_in: MotoServer
) -> None:
    # The line as a user pastes it: leading VAR=value words are its environment, `.venv/bin/python`
    # is this interpreter; the stand-in is reached through AWS_ENDPOINT_URL, which boto3 honours.
    words = shlex.split(command)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": aws_stand_in.url,
    }
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0].endswith("python"), command
    result = subprocess.run(
        [sys.executable, *words[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pulumi login 's3://cali-housing-state-" in result.stdout
