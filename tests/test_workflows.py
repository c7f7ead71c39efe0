"""The GitHub workflows, read as data: the rules of the pipeline that actionlint cannot know.

GitHub is out of reach here, so these tests pin what a run there would do: the order of the jobs,
which events reach which job, who may deploy and how, and that nothing holds a long-lived key.
`make lint` runs actionlint on the same files for syntax, expressions and shell.
"""

from __future__ import annotations

import os
import re
import subprocess
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
DEPLOY_WORKFLOW = "./.github/workflows/deploy.yml"
PROD_GROUP = "prod-stack"
STAGING_GROUP = "staging-stack"
MAIN_PUSH = ("github.event_name == 'push'", "github.ref == 'refs/heads/main'")
# The callers of the one deploy definition in pipeline.yml, and the stack each passes.
DEPLOY_CALLERS = {"deploy-staging": "staging", "deploy": "prod"}


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


def called(job_def: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs of the reusable workflow a job calls (`uses: ./.github/workflows/X.yml`), else []."""
    uses = job_def.get("uses", "")
    if not uses.startswith("./.github/workflows/"):
        return []
    return list(workflow(uses.removeprefix("./.github/workflows/"))["jobs"].values())


def deploy_job() -> dict[str, Any]:
    """The one deploy job staging and prod both run (deploy.yml)."""
    return job("deploy.yml", "deploy")


def step(job_def: dict[str, Any], step_id: str) -> dict[str, Any]:
    (found,) = [s for s in job_def["steps"] if s.get("id") == step_id]
    return found


def ups(job_def: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's `pulumi up` steps (pulumi/actions), in order."""
    return [s for s in steps_using(job_def, "pulumi/actions") if s.get("with", {}).get("command") == "up"]


def position(job_def: dict[str, Any], found: dict[str, Any]) -> int:
    return [s["name"] for s in job_def["steps"]].index(found["name"])


def pulumi_commands(job_def: dict[str, Any]) -> set[str]:
    """The Pulumi commands a job runs, through pulumi/actions, the CLI or a reusable workflow it calls."""
    commands = set().union(*(pulumi_commands(j) for j in called(job_def)))
    commands |= {
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


def test_staging_and_prod_run_one_deploy_definition_so_they_cannot_drift() -> None:
    deploy = workflow("deploy.yml")
    assert set(deploy["on"]) == {"workflow_call"}, "only ever called, never run on its own"
    assert set(deploy["jobs"]) == {"deploy"}
    for job_id, stack in DEPLOY_CALLERS.items():
        caller = job("pipeline.yml", job_id)
        assert caller["uses"] == DEPLOY_WORKFLOW, job_id
        assert caller["with"]["stack"] == stack
        assert "steps" not in caller, "no step of a deploy lives outside deploy.yml"
    prod, staging = (job("pipeline.yml", j)["with"] for j in ("deploy", "deploy-staging"))
    assert {k: v for k, v in prod.items() if k != "stack"} == {
        k: v for k, v in staging.items() if k != "stack"
    }
    required = {name for name, spec in deploy["on"]["workflow_call"]["inputs"].items() if spec["required"]}
    assert required <= set(prod), "every required input is passed"


@pytest.mark.parametrize("job_id", sorted(DEPLOY_CALLERS))
def test_a_deploy_is_handed_the_tested_image_the_image_job_built(job_id: str) -> None:
    caller = job("pipeline.yml", job_id)
    assert {"test", "image"} <= set(caller["needs"])
    image = job("pipeline.yml", "image")
    passed = caller["with"]
    assert passed["image-id"] == "${{ needs.image.outputs.image_id }}"
    assert passed["image-tag"] == "${{ needs.image.outputs.tag }}"
    assert passed["tested-model-version"] == "${{ needs.image.outputs.model_version }}"
    assert passed["release-image"] == "${{ needs.image.outputs.release_image }}"
    assert passed["release-artifact"] == "${{ needs.image.outputs.release_artifact }}"
    assert image["outputs"]["release_artifact"] == "${{ env.RELEASE_ARTIFACT }}"
    (upload,) = steps_using(image, "actions/upload-artifact")
    assert upload["with"]["name"] == "${{ env.RELEASE_ARTIFACT }}", "the artifact the deploy downloads"


def test_a_deploy_loads_the_tested_image_checks_its_id_then_pushes_and_ups() -> None:
    deploy = deploy_job()
    (download,) = steps_using(deploy, "actions/download-artifact")
    assert download["with"]["name"] == "${{ inputs.release-artifact }}"
    (load,) = [s for s in deploy["steps"] if s.get("run") == "bash scripts/load-tested-image.sh"]
    assert load["env"]["TESTED_ID"] == "${{ inputs.image-id }}"
    publish = step(deploy, "publish")
    assert publish["run"] == "bash scripts/publish-image.sh"
    assert publish["env"]["TAG"] == "${{ inputs.image-tag }}"
    first_up = ups(deploy)[0]
    assert first_up["id"] == "up"
    assert position(deploy, load) < position(deploy, publish) < position(deploy, first_up)
    assert not [s for s in deploy["steps"] if "docker build" in s.get("run", "")], "a deploy never builds"


def test_staging_runs_only_when_its_stack_file_exists_and_prod_waits_for_it() -> None:
    staging, prod = job("pipeline.yml", "deploy-staging"), job("pipeline.yml", "deploy")
    assert "needs.stacks.outputs.staging == 'true'" in " ".join(staging["if"].split())
    assert "deploy-staging" in prod["needs"]
    condition = " ".join(prod["if"].split())
    assert (
        "(needs.deploy-staging.result == 'success' || needs.deploy-staging.result == 'skipped')" in condition
    )
    assert "!cancelled()" in condition, "a skipped staging does not skip prod; a failed one stops it"
    listing = " ".join(s.get("run", "") for s in job("pipeline.yml", "stacks")["steps"])
    assert "Pulumi.*.yaml" in listing


def test_preview_covers_every_stack_that_exists() -> None:
    preview = job("pipeline.yml", "preview")
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.list) }}"


def test_the_guardrail_expects_the_deployed_identity_on_many_samples_after_up() -> None:
    deploy = deploy_job()
    guard = step(deploy, "guard")
    assert guard["env"]["MODEL_VERSION"] == "${{ steps.publish.outputs.model_version }}"
    assert guard["env"]["REVISION"] == "${{ steps.publish.outputs.revision }}"
    assert guard["env"]["URL"] == "${{ steps.up.outputs.url }}"
    for flag in (
        '--expect-model-version "$MODEL_VERSION"',
        '--expect-revision "$REVISION"',
        '--samples "$SMOKE_SAMPLES"',
        '--window "$GUARDRAIL_WINDOW"',
        '--state "$RUNNER_TEMP/state.json"',
        '--summary "$GITHUB_STEP_SUMMARY"',
    ):
        assert flag in guard["run"]
    assert 'pulumi stack export --stack "$STACK" --file "$RUNNER_TEMP/state.json"' in guard["run"], (
        "the alarms' names"
    )
    assert position(deploy, step(deploy, "up")) < position(deploy, guard)
    # the admission is inside the guarded step: a runner that cannot be admitted fails the guardrail,
    # and so rolls back, instead of leaving an unchecked build serving
    assert guard["run"].startswith('.venv/bin/python scripts/runner_access.py open --group "$INGRESS_GROUP"')
    assert guard["env"]["INGRESS_GROUP"] == "${{ steps.up.outputs.ingress_group }}"
    assert int(workflow("deploy.yml")["env"]["SMOKE_SAMPLES"]) >= 10
    assert int(workflow("deploy.yml")["env"]["GUARDRAIL_WINDOW"]) >= 60, "an alarm window, not a glance"


def test_a_failed_guardrail_redeploys_the_previous_digest_through_the_same_gate_and_says_so() -> None:
    deploy = deploy_job()
    guard = step(deploy, "guard")
    assert guard["continue-on-error"] is True, "its failure must reach the rollback steps"
    failed = "steps.guard.outcome == 'failure'"
    (pin,) = [s for s in deploy["steps"] if "imageDigest" in s.get("run", "")]
    assert pin["if"] == f"{failed} && steps.live.outputs.image != ''"
    assert pin["env"]["PREVIOUS"] == "${{ steps.live.outputs.image }}", "what served before this deploy"
    assert 'pulumi config set --stack "${STACK}" imageDigest "${digest}"' in pin["run"]
    assert "^sha256:[0-9a-f]{64}$" in pin["run"]
    first_up, rollback = ups(deploy)
    assert rollback["id"] == "rollback"
    assert rollback["if"] == pin["if"]
    assert rollback["with"]["stack-name"] == first_up["with"]["stack-name"], "the same stack, the same gate"
    assert position(deploy, guard) < position(deploy, pin) < position(deploy, rollback)
    (resmoke,) = [s for s in deploy["steps"] if s.get("if") == "steps.rollback.outcome == 'success'"]
    assert 'python -m smoke "$URL"' in resmoke["run"]
    assert resmoke["env"]["URL"] == "${{ steps.rollback.outputs.url }}"
    last = deploy["steps"][-1]
    assert last["if"] == f"always() && {failed}"
    assert "GITHUB_STEP_SUMMARY" in last["run"]
    assert "rolled back automatically" in last["run"]
    assert last["run"].rstrip().endswith("exit 1"), "a deploy the guardrail undid is a failed run"
    assert deploy["outputs"]["image"] == "${{ steps.rollback.outputs.image || steps.up.outputs.image }}"


def test_the_deploy_summary_prints_the_tested_and_the_deployed_identity() -> None:
    (summary,) = [s for s in deploy_job()["steps"] if "Record both identities" in s["name"]]
    assert summary["env"]["TESTED_VERSION"] == "${{ inputs.tested-model-version }}"
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


@pytest.mark.parametrize("job_id", sorted(DEPLOY_CALLERS))
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


@pytest.mark.parametrize(("name", "job_id"), [("deploy.yml", "deploy"), ("rollback.yml", "rollback")])
def test_changes_to_prod_run_in_the_production_environment(name: str, job_id: str) -> None:
    assert job(name, job_id)["environment"]["name"] == "production"


def test_only_jobs_in_an_environment_publish_images() -> None:
    # scripts/publish-image.sh pushes to ECR: after an approval only
    for name, job_id, job_def in all_jobs():
        if any("publish-image.sh" in s.get("run", "") for s in job_def.get("steps", [])):
            assert job_def["environment"]["name"] in ("staging", "production"), (name, job_id)


def test_destroy_runs_in_the_production_environment() -> None:
    assert job("destroy.yml", "destroy")["environment"] == "production"


def test_destroy_leaves_the_protected_state_bucket_through_pulumi_actions_own_input() -> None:
    (step,) = steps_using(job("destroy.yml", "destroy"), "pulumi/actions")[1:]  # [0]: the CLI install
    assert step["with"]["command"] == "destroy"
    assert step["with"]["exclude-protected"] is True


def test_every_job_that_changes_the_stack_shares_one_concurrency_group_that_never_drops_a_job() -> None:
    # GitHub keeps one pending job per group and cancels it when another joins, unless `queue: max`
    # (docs.github.com, "Control the concurrency of workflows and jobs"): a rollback queued behind a
    # deploy would be dropped silently by the next push to main.
    changers = [(n, jid, j) for n, jid, j in all_jobs() if pulumi_commands(j) & {"up", "destroy"}]
    assert {(n, jid) for n, jid, _ in changers} == {
        ("pipeline.yml", "deploy-staging"),  # calls deploy.yml
        ("pipeline.yml", "deploy"),  # calls deploy.yml
        ("deploy.yml", "deploy"),
        ("rollback.yml", "rollback"),
        ("destroy.yml", "destroy"),
    }
    never_dropped = {"cancel-in-progress": False, "queue": "max"}
    for name, job_id, job_def in changers:
        if "uses" in job_def:
            assert "concurrency" not in job_def, "the called job holds the group"
            continue
        group = "${{ inputs.stack }}-stack" if name == "deploy.yml" else PROD_GROUP
        assert job_def["concurrency"] == {"group": group, **never_dropped}, (name, job_id)
    # the deploy job's group, evaluated for each caller: prod's is the group rollback and destroy use
    evaluated = {
        stack: deploy_job()["concurrency"]["group"].replace("${{ inputs.stack }}", stack)
        for stack in DEPLOY_CALLERS.values()
    }
    assert evaluated == {"prod": PROD_GROUP, "staging": STAGING_GROUP}


SCRIPTS = sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())


@pytest.mark.parametrize("path", [*github_files(), *SCRIPTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_workflow_or_script_runs_a_targeted_pulumi_operation(path: Path) -> None:
    # A targeted `up` fails on a stack whose state lacks the target's parent ("untargeted create"):
    # the first deploy of a new stack. The account setup makes the repositories instead.
    # comments may say why there is none; commands may not have one
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"pulumi\b[^\n]*\s--target\b", text), path
    assert not re.search(r"^\s*target:", text, re.M), f"{path}: pulumi/actions' target input"


@pytest.mark.parametrize("path", [*github_files(), *SCRIPTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_job_writes_gate_inputs_only_the_runner_would_see(path: Path) -> None:
    # A key set on the runner's copy of the stack file alone makes every other preview differ.
    text = path.read_text()
    assert "expectModelVersion" not in text, path
    assert "expectRevision" not in text, path


def test_a_deploy_reads_the_live_stack_fail_closed_before_the_gate() -> None:
    deploy = deploy_job()
    live = step(deploy, "live")
    assert live["run"] == "bash scripts/stack-outputs.sh"  # tests/test_deploy_scripts.py runs it
    (gate,) = [s for s in deploy["steps"] if "model.gate" in s.get("run", "")]
    assert position(deploy, live) < position(deploy, gate)
    for name, job_id, job_def in all_jobs():
        for s in job_def.get("steps", []):
            run = s.get("run", "")
            if "stack output" in run:
                assert "|| true" not in run, (name, job_id, s["name"])
                assert "2>/dev/null" not in run, (name, job_id, s["name"])


@pytest.mark.parametrize(("name", "job_id"), [("rollback.yml", "smoke"), ("drift-report.yml", "drift")])
def test_the_smoke_job_installs_nothing_the_standard_library_lacks(name: str, job_id: str) -> None:
    # The smoke client is standard library only; the one install is boto3, pinned by constraints.txt,
    # for the runner's temporary ingress rule (scripts/runner_access.py).
    runs = [s.get("run", "") for s in job(name, job_id)["steps"]]
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
        if not pulumi_commands(job_def) or "uses" in job_def:
            continue  # a caller of deploy.yml: the called job is checked itself
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
        if "uses" in job_def:
            # GitHub allows no timeout on a job that calls a workflow: the called jobs carry theirs
            assert all(isinstance(j.get("timeout-minutes"), int) for j in called(job_def)), (name, job_id)
            continue
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
    assert users, "rollback's smoke job, the drift report and ami-update use the helper role"


def test_the_stack_decrypts_its_secrets_with_the_bootstrap_kms_key() -> None:
    settings = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    region = settings["config"]["aws:region"]
    assert settings["secretsprovider"] == bootstrap.secrets_provider(region)
    assert "encryptionsalt" not in settings  # the passphrase provider's mark


# --- model operations (issue 15): the promotion gate and the weekly drift report ----------------


def test_the_promotion_gate_runs_before_up_and_a_maintainer_can_override_it() -> None:
    deploy = deploy_job()
    (gate,) = [s for s in deploy["steps"] if "model.gate" in s.get("run", "")]
    assert position(deploy, gate) < position(deploy, step(deploy, "up")), "the gate decides first"
    assert '--summary "$GITHUB_STEP_SUMMARY"' in gate["run"], "both models' metrics go to the job summary"
    assert "--candidate artifacts/metadata.json" in gate["run"]
    override = workflow("pipeline.yml")["on"]["workflow_dispatch"]["inputs"]["override_gate"]
    assert (override["type"], override["default"]) == ("boolean", False)
    for job_id in DEPLOY_CALLERS:
        caller = job("pipeline.yml", job_id)
        assert caller["with"]["override-gate"] == "${{ inputs.override_gate || false }}"
        assert "workflow_dispatch" in caller["if"]
        assert "refs/heads/main" in caller["if"]
    assert gate["env"]["OVERRIDE"] == "${{ inputs.override-gate }}"
    spec = workflow("deploy.yml")["on"]["workflow_call"]["inputs"]["override-gate"]
    assert (spec["type"], spec["default"]) == ("boolean", False)


def test_the_gate_passes_first_deploy_only_when_the_stack_has_no_url_output() -> None:
    # model/gate.py fails closed (exit 2) when the live service is unreachable, unless told that
    # this is a first deploy; scripts/stack-outputs.sh says so only for a stack without `url`.
    deploy = deploy_job()
    (gate,) = [s for s in deploy["steps"] if "model.gate" in s.get("run", "")]
    assert gate["env"]["FIRST_DEPLOY"] == "${{ steps.live.outputs.first_deploy }}"
    assert gate["env"]["LIVE_URL"] == "${{ steps.live.outputs.url }}"
    assert 'if [[ "${FIRST_DEPLOY}" == "true" ]]; then first=(--first-deploy); fi' in gate["run"]
    assert '"${first[@]}"' in gate["run"]
    assert gate["run"].count("--first-deploy") == 1, "never passed unconditionally"
    assert "|| true" not in gate["run"]


def test_the_weekly_drift_report_reads_the_live_service_and_fails_on_drift() -> None:
    report = workflow("drift-report.yml")
    assert [c["cron"] for c in report["on"]["schedule"]] == ["17 6 * * 1"]  # weekly
    assert report["permissions"] == {"contents": "read"}
    (drift,) = report["jobs"].values()
    (run,) = [s for s in drift["steps"] if "drift_report" in s.get("run", "")]
    assert run["run"] == 'python -m smoke.drift_report "$URL" --summary "$GITHUB_STEP_SUMMARY"'
    assert drift["env"]["URL"] == "${{ vars.SERVICE_URL }}"
    assert drift["env"]["INGRESS_GROUP"] == "${{ vars.SERVICE_INGRESS_GROUP }}"
    assert drift["permissions"] == {"contents": "read", "id-token": "write"}, "the helper role, nothing more"
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


AMI = "ami-0fedcba9876543210"


def run_ami_step(tmp_path: Path, open_prs: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The pull-request step's script, as GitHub runs it (bash -eo pipefail), with fake gh and git."""
    (proposal,) = [s for s in job("ami-update.yml", "propose")["steps"] if "gh pr create" in s.get("run", "")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gh", "git"):
        (bin_dir / tool).write_text(
            "#!/usr/bin/env bash\n"
            f'printf "%s %s\\n" {tool} "$*" >>"{tmp_path}/calls"\n'
            f'if [[ "$1 $2" == "pr list" ]]; then echo "{open_prs}"; fi\n'
        )
        (bin_dir / tool).chmod(0o755)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", proposal["run"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "GH_TOKEN": "token",
            "AMI": AMI,
            "AMI_PARAMETER": workflow("ami-update.yml")["env"]["AMI_PARAMETER"],
            "GITHUB_REPOSITORY": "owner/repo",
        },
    )
    calls = (tmp_path / "calls").read_text().splitlines()
    return done, calls


def test_ami_update_leaves_an_open_pull_request_alone(tmp_path: Path) -> None:
    done, calls = run_ami_step(tmp_path, open_prs="1")
    assert done.returncode == 0, done.stderr
    assert calls == [
        f"gh pr list --repo owner/repo --head ami-update/{AMI} --state open --json number --jq length"
    ]
    assert "already open" in done.stdout


def test_ami_update_opens_the_pull_request_again_when_its_branch_exists_without_one(tmp_path: Path) -> None:
    # What counts is an open pull request, not the branch (a run whose `gh pr create` was refused, or
    # a PR closed unmerged, leaves the branch): the branch is pushed again from main and the PR opened.
    done, calls = run_ami_step(tmp_path, open_prs="0")
    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if "ls-remote" in c], "the branch's existence decides nothing"
    (push,) = [c for c in calls if c.startswith("git push")]
    assert push.startswith("git push --force ")
    assert push.endswith(f" ami-update/{AMI}")
    (create,) = [c for c in calls if c.startswith("gh pr create")]
    assert f"--head ami-update/{AMI}" in create
    assert "--base main" in create
    assert calls.index(push) < calls.index(create)


def test_the_docs_name_the_setting_that_lets_the_workflow_open_pull_requests() -> None:
    page = (ROOT / "docs" / "ci-cd.md").read_text()
    section = page.split("## One-time setup", 1)[1].split("\n## ", 1)[0]
    assert "Allow GitHub Actions to create and approve pull requests" in section


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


def admissions(job_def: dict[str, Any], talks: str) -> list[tuple[int, int, int]]:
    """(open, call, close) step positions around each step whose run contains `talks`."""
    runs = [s.get("run", "") for s in job_def["steps"]]
    found = []
    for call in [i for i, run in enumerate(runs) if talks in run]:
        opened = max((i for i in range(call + 1) if "runner_access.py open" in runs[i]), default=-1)
        closed = min((i for i in range(call, len(runs)) if "runner_access.py close" in runs[i]), default=-1)
        found.append((opened, call, closed))
    return found


# Every job that talks to the service, and what in its steps does the talking.
TALKERS = [
    ("deploy.yml", "deploy", "model.gate"),  # the promotion gate reads the live /metadata
    ("deploy.yml", "deploy", "smoke.guardrail"),
    ("deploy.yml", "deploy", 'python -m smoke "$URL"'),  # the rolled-back build's smoke test
    ("rollback.yml", "smoke", "python -m smoke"),
    ("drift-report.yml", "drift", "smoke.drift_report"),
]


@pytest.mark.parametrize(("name", "job_id", "talks"), TALKERS, ids=[f"{n}:{t}" for n, _, t in TALKERS])
def test_smoke_admits_the_runner_before_and_always_withdraws_it_after(
    name: str, job_id: str, talks: str
) -> None:
    job_def = job(name, job_id)
    ((opened, call, closed),) = admissions(job_def, talks)
    assert 0 <= opened <= call < closed, "admitted before (or in) the call, withdrawn after"
    assert job_def["steps"][closed]["if"].startswith("always()"), "a failure leaves no rule behind"


def test_every_job_that_talks_to_the_service_is_in_the_admission_list() -> None:
    talking = re.compile(r"python -m (smoke|model\.gate)\b")
    listed = {(name, job_id) for name, job_id, _ in TALKERS}
    for name, job_id, job_def in all_jobs():
        if any(talking.search(s.get("run", "")) for s in job_def.get("steps", [])):
            assert (name, job_id) in listed, (name, job_id)


def test_the_runner_is_admitted_to_the_group_the_stack_names_for_the_url_it_reaches() -> None:
    deploy = deploy_job()
    opens = [s for s in deploy["steps"] if "runner_access.py open" in s.get("run", "")]
    groups = [s["env"].get("INGRESS_GROUP") for s in opens]
    assert groups == [
        "${{ steps.live.outputs.ingress_group }}",  # the gate: the service that serves now
        "${{ steps.up.outputs.ingress_group }}",  # the guardrail: the service after up
        "${{ steps.rollback.outputs.ingress_group }}",  # the rolled-back service
    ]
    rollback = job("rollback.yml", "rollback")
    assert rollback["outputs"]["ingress_group"] == "${{ steps.up.outputs.ingress_group }}"
    assert (
        job("rollback.yml", "smoke")["env"]["INGRESS_GROUP"] == "${{ needs.rollback.outputs.ingress_group }}"
    )
