"""The GitHub workflows, read as data: the rules of the pipeline that actionlint cannot know.

GitHub is out of reach here, so these tests pin what a run there would do: the order of the jobs,
which events reach which job, who may deploy and how, and that nothing holds a long-lived key.
`make lint` runs actionlint on the same files for syntax, expressions and shell.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from account import bootstrap, permissions

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
SETUP_ACTION = "./.github/actions/pulumi-setup"
PROD_GROUP = "prod-stack"
STAGING_GROUP = "staging-stack"
MAIN_PUSH = ("github.event_name == 'push'", "github.ref == 'refs/heads/main'")


@cache
def workflow(name: str) -> dict[str, Any]:
    """A workflow file parsed; YAML 1.1 reads the key `on` as True, so it is put back."""
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


@cache
def setup_action() -> dict[str, Any]:
    return yaml.safe_load((GITHUB / "actions" / "pulumi-setup" / "action.yml").read_text())


def job(name: str, job_id: str) -> dict[str, Any]:
    return workflow(name)["jobs"][job_id]


def steps_using(job_def: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The job's steps that use `action` (owner/repo, without the ref), the setup action included."""
    found = []
    for step in job_def.get("steps", []):
        uses = step.get("uses", "")
        if uses == SETUP_ACTION:
            found += [
                s for s in setup_action()["runs"]["steps"] if s.get("uses", "").startswith(action + "@")
            ]
        elif uses.startswith(action + "@"):
            found.append(step)
    return found


def pulumi_commands(job_def: dict[str, Any]) -> set[str]:
    """The Pulumi commands a job runs, through pulumi/actions or the CLI."""
    commands = {
        s["with"]["command"] for s in steps_using(job_def, "pulumi/actions") if "command" in s.get("with", {})
    }
    for step in job_def.get("steps", []):
        commands |= set(re.findall(r"^\s*pulumi (up|preview|destroy|refresh)\b", step.get("run", ""), re.M))
    return commands


def all_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (p.name, jid, j)
        for p in sorted(WORKFLOWS.glob("*.yml"))
        for jid, j in workflow(p.name)["jobs"].items()
    ]


def github_files() -> list[Path]:
    return sorted(p for p in GITHUB.rglob("*") if p.suffix in (".yml", ".yaml"))


# --- the shape of the pipeline ------------------------------------------------------------------


def test_the_pipeline_runs_on_pull_requests_and_on_pushes_to_main() -> None:
    on = workflow("pipeline.yml")["on"]
    assert set(on) == {"pull_request", "push", "workflow_dispatch"}  # dispatch: the gate's override
    assert on["push"]["branches"] == ["main"]


def test_the_test_job_lints_and_runs_every_group_but_docker_on_every_event() -> None:
    test = job("pipeline.yml", "test")
    assert "if" not in test, "tests run for pull requests and pushes alike"
    runs = [s.get("run", "") for s in test["steps"]]
    assert "make lint" in runs, "ruff, shellcheck, hadolint and actionlint"
    assert '.venv/bin/python -m pytest -m "not docker"' in runs
    assert test["env"]["CALI_REQUIRE_ALL_GROUPS"] == "1", "a group that cannot run fails the job"


def test_the_image_job_builds_once_and_runs_the_docker_group_on_that_image() -> None:
    image = job("pipeline.yml", "image")
    assert "if" not in image, "pull requests test the image too"
    steps = image["steps"]
    runs = [s.get("run", "") for s in steps]
    (build,) = [s for s in steps if "docker build" in s.get("run", "")]
    assert "python -m infra.release" in "".join(runs), "the tag comes from the program's own function"
    (tests,) = [s for s in steps if "pytest -m docker" in s.get("run", "")]
    assert tests["env"] == {"CALI_TEST_IMAGE": "${{ env.RELEASE_IMAGE }}", "CALI_TEST_IMAGE_BUILT": "1"}
    assert steps.index(build) < steps.index(tests)
    assert '--tag "${RELEASE_IMAGE}"' in build["run"]
    assert image["env"]["CALI_REQUIRE_ALL_GROUPS"] == "1"
    assert image["outputs"]["image_id"] == "${{ steps.build.outputs.image_id }}"
    assert "GITHUB_STEP_SUMMARY" in runs[-1], "the tested identity is in the job summary"


@pytest.mark.parametrize("job_id", ["deploy-staging", "deploy"])
def test_a_deploy_loads_the_tested_image_checks_its_id_then_pushes_and_ups(job_id: str) -> None:
    deploy = job("pipeline.yml", job_id)
    assert {"test", "image"} <= set(deploy["needs"])
    steps = deploy["steps"]
    order = [s["name"] for s in steps]
    (load,) = [s for s in steps if s.get("run") == "bash scripts/load-tested-image.sh"]
    assert load["env"]["TESTED_ID"] == "${{ needs.image.outputs.image_id }}"
    (publish,) = [s for s in steps if s.get("run") == "bash scripts/publish-image.sh"]
    assert publish["env"]["TAG"] == "${{ needs.image.outputs.tag }}"
    (up,) = [s for s in steps_using(deploy, "pulumi/actions") if s.get("with", {}).get("command") == "up"]
    assert order.index(load["name"]) < order.index(publish["name"]) < order.index(up["name"])
    assert not [s for s in steps if "docker build" in s.get("run", "")], "a deploy never builds"


def test_staging_runs_only_when_its_stack_file_exists_and_prod_waits_for_its_smoke_test() -> None:
    staging, prod = job("pipeline.yml", "deploy-staging"), job("pipeline.yml", "deploy")
    assert "needs.stacks.outputs.staging == 'true'" in " ".join(staging["if"].split())
    assert job("pipeline.yml", "smoke-staging")["needs"] == ["image", "deploy-staging"]
    assert "smoke-staging" in prod["needs"]
    condition = " ".join(prod["if"].split())
    assert "(needs.smoke-staging.result == 'success' || needs.smoke-staging.result == 'skipped')" in condition
    assert "!cancelled()" in condition, "a skipped staging does not skip prod; a failed one stops it"
    listing = " ".join(s.get("run", "") for s in job("pipeline.yml", "stacks")["steps"])
    assert "Pulumi.*.yaml" in listing


def test_preview_covers_every_stack_that_exists() -> None:
    preview = job("pipeline.yml", "preview")
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.list) }}"


@pytest.mark.parametrize(
    ("smoke_id", "deploy_id"), [("smoke-staging", "deploy-staging"), ("smoke", "deploy")]
)
def test_every_smoke_test_after_a_deploy_expects_the_deployed_identity_on_many_samples(
    smoke_id: str, deploy_id: str
) -> None:
    (run,) = [s for s in job("pipeline.yml", smoke_id)["steps"] if "python -m smoke" in s.get("run", "")]
    assert run["env"]["MODEL_VERSION"] == f"${{{{ needs.{deploy_id}.outputs.model_version }}}}"
    assert run["env"]["REVISION"] == f"${{{{ needs.{deploy_id}.outputs.revision }}}}"
    for flag in ('--expect-model-version "$MODEL_VERSION"', '--expect-revision "$REVISION"', "--samples"):
        assert flag in run["run"]
    assert int(workflow("pipeline.yml")["env"]["SMOKE_SAMPLES"]) >= 10


def test_the_deploy_summary_prints_the_tested_and_the_deployed_identity() -> None:
    (summary,) = [s for s in job("pipeline.yml", "deploy")["steps"] if "Record both identities" in s["name"]]
    assert summary["env"]["TESTED_VERSION"] == "${{ needs.image.outputs.model_version }}"
    assert summary["env"]["DEPLOYED_VERSION"] == "${{ steps.publish.outputs.model_version }}"
    assert "GITHUB_STEP_SUMMARY" in summary["run"]


@pytest.mark.parametrize("job_id", ["preview", "fork-notice"])
def test_nothing_touches_the_stack_before_the_tests_pass(job_id: str) -> None:
    needs = job("pipeline.yml", job_id)["needs"]
    assert "test" in (needs if isinstance(needs, list) else [needs])


def test_preview_runs_only_on_pull_requests_from_this_repository() -> None:
    preview = job("pipeline.yml", "preview")
    condition = " ".join(preview["if"].split())
    assert "github.event_name == 'pull_request'" in condition
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert pulumi_commands(preview) == {"preview"}


def test_preview_posts_its_result_on_the_pull_request_for_each_stack() -> None:
    (step,) = [
        s for s in steps_using(job("pipeline.yml", "preview"), "pulumi/actions") if "command" in s["with"]
    ]
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"


def test_preview_has_only_the_permissions_a_comment_and_oidc_need() -> None:
    assert job("pipeline.yml", "preview")["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }


def test_fork_pull_requests_get_a_clear_notice_instead_of_a_preview() -> None:
    notice = job("pipeline.yml", "fork-notice")
    condition = " ".join(notice["if"].split())
    assert "github.event.pull_request.head.repo.full_name != github.repository" in condition
    script = "\n".join(s.get("run", "") for s in notice["steps"])
    assert "::notice" in script
    assert "GITHUB_STEP_SUMMARY" in script
    assert "permissions" not in notice, "the notice needs nothing beyond the read-only default"


@pytest.mark.parametrize("job_id", ["deploy-staging", "deploy"])
def test_up_runs_only_on_pushes_to_main(job_id: str) -> None:
    deploy = job("pipeline.yml", job_id)
    condition = " ".join(deploy["if"].split())
    for clause in MAIN_PUSH:
        assert clause in condition
    assert pulumi_commands(deploy) == {"up"}


def test_no_job_triggered_by_a_pull_request_can_change_the_stack() -> None:
    for job_id, job_def in workflow("pipeline.yml")["jobs"].items():
        if pulumi_commands(job_def) & {"up", "destroy", "refresh"}:
            assert "refs/heads/main" in job_def.get("if", ""), job_id


@pytest.mark.parametrize(("name", "job_id"), [("pipeline.yml", "deploy"), ("rollback.yml", "rollback")])
def test_changes_to_prod_run_in_the_production_environment(name: str, job_id: str) -> None:
    assert job(name, job_id)["environment"]["name"] == "production"


def test_only_jobs_in_an_environment_publish_images() -> None:
    # scripts/publish-image.sh runs a targeted `pulumi up` and pushes to ECR: after an approval only
    for name, job_id, job_def in all_jobs():
        if any("publish-image.sh" in s.get("run", "") for s in job_def.get("steps", [])):
            assert job_def["environment"]["name"] in ("staging", "production"), (name, job_id)


def test_destroy_runs_in_the_production_environment() -> None:
    assert job("destroy.yml", "destroy")["environment"] == "production"


def test_destroy_leaves_the_protected_state_bucket_through_pulumi_actions_own_input() -> None:
    (step,) = steps_using(job("destroy.yml", "destroy"), "pulumi/actions")[1:]  # [0]: the CLI install
    assert step["with"]["command"] == "destroy"
    assert step["with"]["exclude-protected"] is True


def test_every_job_that_changes_the_stack_shares_one_concurrency_group_never_cancelled() -> None:
    changers = [(n, jid, j) for n, jid, j in all_jobs() if pulumi_commands(j) & {"up", "destroy"}]
    assert {(n, jid) for n, jid, _ in changers} == {
        ("pipeline.yml", "deploy-staging"),
        ("pipeline.yml", "deploy"),
        ("rollback.yml", "rollback"),
        ("destroy.yml", "destroy"),
    }
    for name, job_id, job_def in changers:
        group = STAGING_GROUP if job_id == "deploy-staging" else PROD_GROUP
        assert job_def["concurrency"] == {"group": group, "cancel-in-progress": False}, (name, job_id)


def test_the_smoke_job_runs_after_deploy_against_the_stacks_url_output() -> None:
    deploy, smoke = job("pipeline.yml", "deploy"), job("pipeline.yml", "smoke")
    assert smoke["needs"] == "deploy"
    (up,) = [s for s in steps_using(deploy, "pulumi/actions") if s.get("with", {}).get("command") == "up"]
    assert deploy["outputs"]["url"] == f"${{{{ steps.{up['id']}.outputs.url }}}}"
    (run,) = [s for s in smoke["steps"] if "python -m smoke" in s.get("run", "")]
    assert {**smoke.get("env", {}), **run.get("env", {})}["URL"] == "${{ needs.deploy.outputs.url }}"
    assert run["run"].startswith('python -m smoke "$URL"')


@pytest.mark.parametrize("job_id", ["smoke", "smoke-staging"])
def test_the_smoke_job_installs_nothing_the_standard_library_lacks(job_id: str) -> None:
    # The smoke client is standard library only; the one install is boto3, pinned by constraints.txt,
    # for the runner's temporary ingress rule (scripts/runner_access.py).
    runs = [s.get("run", "") for s in job("pipeline.yml", job_id)["steps"]]
    installs = [line.strip() for run in runs for line in run.splitlines() if "pip install" in line]
    assert installs == ["python -m pip install -q -c constraints.txt boto3"]
    assert not any("make " in run for run in runs)


# --- manual operations ----------------------------------------------------------------------------


def test_rollback_is_manual_takes_a_digest_and_smoke_tests_after() -> None:
    rollback = workflow("rollback.yml")
    assert set(rollback["on"]) == {"workflow_dispatch"}
    assert rollback["on"]["workflow_dispatch"]["inputs"]["digest"]["required"] is True
    steps = job("rollback.yml", "rollback")["steps"]
    assert "^sha256:[0-9a-f]{64}$" in steps[0]["run"], "the digest is checked before anything else"
    assert any("config set" in s.get("run", "") and "imageDigest" in s.get("run", "") for s in steps)
    smoke = job("rollback.yml", "smoke")
    assert smoke["needs"] == "rollback"
    assert "smoke" in " ".join(s.get("run", "") for s in smoke["steps"])


def test_destroy_is_manual_and_asks_for_the_stack_name_typed_out() -> None:
    destroy = workflow("destroy.yml")
    assert set(destroy["on"]) == {"workflow_dispatch"}
    assert job("destroy.yml", "destroy")["if"] == "inputs.confirm == 'prod'"
    assert job("destroy.yml", "refused")["if"] == "inputs.confirm != 'prod'"


# --- credentials ----------------------------------------------------------------------------------

LONG_LIVED = re.compile(
    r"aws-access-key-id|aws-secret-access-key|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AKIA"
)


@pytest.mark.parametrize("path", github_files(), ids=lambda p: str(p.relative_to(GITHUB)))
def test_no_long_lived_aws_keys_anywhere(path: Path) -> None:
    assert not LONG_LIVED.search(path.read_text())


def test_aws_credentials_come_only_from_oidc_with_a_role_from_a_variable() -> None:
    (step,) = [s for s in setup_action()["runs"]["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    assert set(step["with"]) == {"role-to-assume", "aws-region", "role-session-name"}
    for name, job_id, job_def in all_jobs():
        uses_aws = any(s.get("uses") == SETUP_ACTION for s in job_def.get("steps", []))
        if not uses_aws:
            continue
        assert job_def["permissions"]["id-token"] == "write", (name, job_id)
        (setup,) = [s for s in job_def["steps"] if s.get("uses") == SETUP_ACTION]
        assert re.fullmatch(
            r"\$\{\{ vars\.AWS_(PREVIEW|DEPLOY)_ROLE_ARN \}\}", setup["with"]["role-to-assume"]
        )


def test_pull_requests_assume_the_preview_role_and_production_the_deploy_role() -> None:
    for name, job_id, job_def in all_jobs():
        for step in job_def.get("steps", []):
            if step.get("uses") != SETUP_ACTION:
                continue
            role = step["with"]["role-to-assume"]
            expected = "PREVIEW" if job_id == "preview" else "DEPLOY"
            assert f"AWS_{expected}_ROLE_ARN" in role, (name, job_id)


def test_the_state_backend_comes_from_a_variable_and_no_job_gets_a_passphrase() -> None:
    # Secrets are decrypted with the KMS key the role may use (Pulumi.prod.yaml's secretsprovider).
    for name, job_id, job_def in all_jobs():
        if not pulumi_commands(job_def):
            continue
        assert job_def["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}", (name, job_id)
        assert "PULUMI_CONFIG_PASSPHRASE" not in job_def["env"], (name, job_id)


@pytest.mark.parametrize("name", [p.name for p in sorted(WORKFLOWS.glob("*.yml"))])
def test_every_workflow_defaults_to_read_only_permissions(name: str) -> None:
    assert workflow(name)["permissions"] == {"contents": "read"}


# --- hygiene --------------------------------------------------------------------------------------

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)

# Actions that run on Node 24 at these majors (each one's action.yml says `using: node24` at the
# pinned tag; read from the repositories' tags with git, not guessed).
NODE24_MAJORS = {
    "actions/checkout": 7,
    "actions/setup-python": 7,
    "aws-actions/configure-aws-credentials": 6,
    "pulumi/actions": 7,
    "actions/upload-artifact": 7,
    "actions/download-artifact": 8,
}


@pytest.mark.parametrize("path", github_files(), ids=lambda p: str(p.relative_to(GITHUB)))
def test_every_action_is_at_a_node_24_major(path: Path) -> None:
    for ref, rest in USES.findall(path.read_text()):
        if ref.startswith("./"):
            continue
        action = ref.split("@")[0]
        assert action in NODE24_MAJORS, f"{action}: which major runs on Node 24?"
        major = int(re.search(r"# v(\d+)\.", rest).group(1))
        assert major >= NODE24_MAJORS[action], f"{action} v{major} predates its Node 24 major"


@pytest.mark.parametrize("path", github_files(), ids=lambda p: str(p.relative_to(GITHUB)))
def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version(path: Path) -> None:
    for ref, rest in USES.findall(path.read_text()):
        if ref.startswith("./"):
            continue  # this repository's own action, pinned by the checkout itself
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", rest), f"{ref}: the version belongs in a comment"


def test_each_action_is_pinned_to_the_same_sha_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in github_files():
        for ref, _ in USES.findall(path.read_text()):
            if "@" in ref:
                action, sha = ref.split("@")
                pins.setdefault(action, set()).add(sha)
    assert {a: s for a, s in pins.items() if len(s) > 1} == {}


def test_every_step_and_job_is_named() -> None:
    for name, job_id, job_def in all_jobs():
        assert job_def.get("name"), (name, job_id)
        for i, step in enumerate(job_def.get("steps", [])):
            assert step.get("name"), (name, job_id, i)
    for i, step in enumerate(setup_action()["runs"]["steps"]):
        assert step.get("name"), ("pulumi-setup", i)


def test_every_job_has_a_timeout() -> None:
    for name, job_id, job_def in all_jobs():
        assert isinstance(job_def.get("timeout-minutes"), int), (name, job_id)


def test_every_secret_and_variable_is_documented_on_the_ci_cd_page() -> None:
    page = (ROOT / "docs" / "ci-cd.md").read_text()
    heading = "## One-time setup"
    section = page.split(heading, 1)[1].split("\n## ", 1)[0] if heading in page else ""
    used: set[str] = set()
    for path in github_files():
        used |= set(re.findall(r"\b(?:secrets|vars)\.([A-Z_][A-Z0-9_]*)", path.read_text()))
    used.discard("GITHUB_TOKEN")  # GitHub provides it to every run
    assert used, "the workflows read their settings from variables and secrets"
    assert sorted(u for u in used if f"`{u}`" not in section) == []


# --- CI identities (issue 18): what the roles' trust policies accept is what the jobs present -----


@pytest.mark.parametrize("path", github_files(), ids=lambda p: str(p.relative_to(GITHUB)))
def test_no_passphrase_secret_is_read_anywhere(path: Path) -> None:
    assert "PASSPHRASE" not in path.read_text()


def test_deploy_role_jobs_run_in_the_environment_its_trust_policy_names() -> None:
    # GitHub's token says `sub: repo:OWNER/REPO:environment:<name>` for a job with an environment;
    # the deploy role trusts exactly that subject, so a job elsewhere cannot assume it.
    environment = permissions.DEPLOY_SUBJECT.removeprefix("environment:")
    for name, job_id, job_def in all_jobs():
        setups = [s for s in job_def.get("steps", []) if s.get("uses") == SETUP_ACTION]
        if any("AWS_DEPLOY_ROLE_ARN" in s["with"]["role-to-assume"] for s in setups):
            env = job_def.get("environment")
            assert (env["name"] if isinstance(env, dict) else env) == environment, (name, job_id)


def test_preview_role_jobs_run_on_pull_requests_without_an_environment() -> None:
    # With an environment the token's `sub` names it instead of `pull_request`, and the preview
    # role's trust (repo:OWNER/REPO:pull_request) would refuse the job.
    assert permissions.PREVIEW_SUBJECT == "pull_request"
    for name, job_id, job_def in all_jobs():
        setups = [s for s in job_def.get("steps", []) if s.get("uses") == SETUP_ACTION]
        if any("AWS_PREVIEW_ROLE_ARN" in s["with"]["role-to-assume"] for s in setups):
            assert "environment" not in job_def, (name, job_id)
            assert "github.event_name == 'pull_request'" in job_def["if"], (name, job_id)


def test_ci_helper_role_jobs_run_from_main_without_an_environment() -> None:
    # The helper role trusts `repo:OWNER/REPO:ref:refs/heads/main` only: a job with an environment
    # (whose token names the environment) or on a pull request would be refused.
    assert permissions.CI_HELPER_SUBJECT == "ref:refs/heads/main"
    users = []
    for name, job_id, job_def in all_jobs():
        for step in job_def.get("steps", []):
            if "AWS_CI_HELPER_ROLE_ARN" in str(step.get("with", {}).get("role-to-assume", "")):
                users.append((name, job_id))
                assert "environment" not in job_def, (name, job_id)
                condition = str(job_def.get("if", "")).replace("!= 'pull_request'", "")
                assert "pull_request" not in condition, (name, job_id)
    assert users, "the smoke job and ami-update use the helper role"


def test_the_stack_decrypts_its_secrets_with_the_bootstrap_kms_key() -> None:
    settings = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    region = settings["config"]["aws:region"]
    assert settings["secretsprovider"] == bootstrap.secrets_provider(region)
    assert "encryptionsalt" not in settings  # the passphrase provider's mark


# --- model operations (issue 15): the promotion gate and the weekly drift report ----------------


def test_the_promotion_gate_runs_before_up_and_a_maintainer_can_override_it() -> None:
    deploy = job("pipeline.yml", "deploy")
    names = [s.get("id") or s["name"] for s in deploy["steps"]]
    (gate,) = [s for s in deploy["steps"] if "model.gate" in s.get("run", "")]
    (up,) = [s for s in steps_using(deploy, "pulumi/actions") if s.get("with", {}).get("command") == "up"]
    assert names.index(gate["name"]) < names.index(up["id"]), "the gate decides before anything deploys"
    assert '--summary "$GITHUB_STEP_SUMMARY"' in gate["run"], "both models' metrics go to the job summary"
    assert "--candidate artifacts/metadata.json" in gate["run"]
    override = workflow("pipeline.yml")["on"]["workflow_dispatch"]["inputs"]["override_gate"]
    assert (override["type"], override["default"]) == ("boolean", False)
    assert gate["env"]["OVERRIDE"] == "${{ inputs.override_gate || false }}"
    assert "workflow_dispatch" in deploy["if"]
    assert "refs/heads/main" in deploy["if"]


def test_the_weekly_drift_report_reads_the_live_service_and_fails_on_drift() -> None:
    report = workflow("drift-report.yml")
    assert [c["cron"] for c in report["on"]["schedule"]] == ["17 6 * * 1"]  # weekly
    assert report["permissions"] == {"contents": "read"}
    (drift,) = report["jobs"].values()
    (step,) = [s for s in drift["steps"] if "drift_report" in s.get("run", "")]
    assert step["run"] == 'python -m smoke.drift_report "$URL" --summary "$GITHUB_STEP_SUMMARY"'
    assert step["env"]["URL"] == "${{ vars.SERVICE_URL }}"
    assert "pip install" not in step["run"]
    assert "make " not in step["run"]
    assert pulumi_commands(drift) == set(), "a report never changes the stack"


# --- ami-update.yml: OS patches arrive by pull request (issue 14) ----------------------------------


def test_ami_update_runs_on_a_schedule_and_by_hand() -> None:
    on = workflow("ami-update.yml")["on"]
    assert on["schedule"]
    assert all(entry["cron"] for entry in on["schedule"])
    assert "workflow_dispatch" in on
    assert "push" not in on
    assert "pull_request" not in on


def test_ami_update_reads_the_parameter_the_program_reads() -> None:
    from infra.server import AL2023_PARAMETER

    assert workflow("ami-update.yml")["env"]["AMI_PARAMETER"] == AL2023_PARAMETER
    assert workflow("ami-update.yml")["env"]["STACK_FILE"] == "Pulumi.prod.yaml"


def test_ami_update_proposes_a_change_and_never_deploys() -> None:
    propose = job("ami-update.yml", "propose")
    assert pulumi_commands(propose) == set()  # the PR goes through preview and deploy like any other
    assert workflow("ami-update.yml")["permissions"] == {"contents": "read"}
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write", "id-token": "write"}
    (creds,) = steps_using(propose, "aws-actions/configure-aws-credentials")
    # the small main-branch role, never the deploy role (which only the production environment gets)
    assert creds["with"]["role-to-assume"] == "${{ vars.AWS_CI_HELPER_ROLE_ARN }}"
    runs = "\n".join(step.get("run", "") for step in propose["steps"])
    assert "scripts/pin_ami.py" in runs
    assert "gh pr create" in runs


def test_pin_ami_replaces_or_adds_the_pinned_ami() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pin_ami", ROOT / "scripts" / "pin_ami.py")
    pin_ami = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin_ami)
    stack = (ROOT / "Pulumi.prod.yaml").read_text()
    added = pin_ami.pin(stack, "ami-0123456789abcdef0")
    assert yaml.safe_load(added)["config"]["cali-housing:ami"] == "ami-0123456789abcdef0"
    replaced = pin_ami.pin(added, "ami-0fedcba9876543210")
    assert yaml.safe_load(replaced)["config"]["cali-housing:ami"] == "ami-0fedcba9876543210"
    assert replaced.count("cali-housing:ami") == 1
    assert pin_ami.pin(replaced, "ami-0fedcba9876543210") == replaced  # nothing newer: no change
    with pytest.raises(ValueError, match="not an AMI id"):
        pin_ami.pin(stack, "ami-; rm -rf /")


# --- the smoke test behind a narrowed allowedCidrs (issue 14) ---------------------------------------


def test_smoke_admits_the_runner_before_and_always_withdraws_it_after() -> None:
    steps = job("pipeline.yml", "smoke")["steps"]
    runs = [step.get("run", "") for step in steps]
    opened = next(i for i, run in enumerate(runs) if "runner_access.py open" in run)
    smoked = next(i for i, run in enumerate(runs) if "python -m smoke" in run)
    closed = next(i for i, run in enumerate(runs) if "runner_access.py close" in run)
    assert opened < smoked < closed
    assert steps[closed]["if"] == "always()"  # a failed smoke test leaves no rule behind
    assert job("pipeline.yml", "smoke")["env"]["INGRESS_GROUP"] == "${{ needs.deploy.outputs.ingress_group }}"
    assert (
        job("pipeline.yml", "deploy")["outputs"]["ingress_group"] == "${{ steps.up.outputs.ingress_group }}"
    )


@pytest.mark.parametrize("job_id", ["deploy", "deploy-staging"])
def test_the_readiness_gate_is_told_the_tested_build_before_up(job_id: str) -> None:
    deploy = job("pipeline.yml", job_id)
    names = [s["name"] for s in deploy["steps"]]
    (tell,) = [s for s in deploy["steps"] if "expectModelVersion" in s.get("run", "")]
    (up,) = [s for s in steps_using(deploy, "pulumi/actions") if s.get("with", {}).get("command") == "up"]
    assert names.index(tell["name"]) < names.index(up["name"])
    assert "expectRevision" in tell["run"]
    assert tell["env"] == {
        "MODEL_VERSION": "${{ steps.publish.outputs.model_version }}",
        "REVISION": "${{ steps.publish.outputs.revision }}",
    }
