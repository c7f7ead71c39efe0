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

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
SETUP_ACTION = "./.github/actions/pulumi-setup"
PROD_GROUP = "prod-stack"


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
    assert set(on) == {"pull_request", "push"}
    assert on["push"]["branches"] == ["main"]


def test_the_test_job_lints_and_runs_every_group_including_docker_on_every_event() -> None:
    test = job("pipeline.yml", "test")
    assert "if" not in test, "tests run for pull requests and pushes alike"
    runs = [s.get("run", "") for s in test["steps"]]
    assert "make test" in runs, "make test runs lint (actionlint included) and then pytest"
    assert test["env"]["CALI_REQUIRE_ALL_GROUPS"] == "1", "a group that cannot run fails the job"
    assert any("docker info" in r for r in runs)


@pytest.mark.parametrize("job_id", ["preview", "deploy", "fork-notice"])
def test_nothing_touches_the_stack_before_the_tests_pass(job_id: str) -> None:
    assert job("pipeline.yml", job_id)["needs"] == "test"


def test_preview_runs_only_on_pull_requests_from_this_repository() -> None:
    preview = job("pipeline.yml", "preview")
    condition = " ".join(preview["if"].split())
    assert "github.event_name == 'pull_request'" in condition
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert pulumi_commands(preview) == {"preview"}


def test_preview_posts_its_result_on_the_pull_request_for_the_prod_stack() -> None:
    (step,) = [
        s for s in steps_using(job("pipeline.yml", "preview"), "pulumi/actions") if "command" in s["with"]
    ]
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["stack-name"] == "${{ env.PULUMI_STACK }}"
    assert workflow("pipeline.yml")["env"]["PULUMI_STACK"] == "prod"


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


def test_up_runs_only_on_pushes_to_main() -> None:
    deploy = job("pipeline.yml", "deploy")
    condition = " ".join(deploy["if"].split())
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main'" in condition
    assert pulumi_commands(deploy) == {"up"}


def test_no_job_triggered_by_a_pull_request_can_change_the_stack() -> None:
    for job_id, job_def in workflow("pipeline.yml")["jobs"].items():
        if pulumi_commands(job_def) & {"up", "destroy", "refresh"}:
            assert "refs/heads/main" in job_def.get("if", ""), job_id


@pytest.mark.parametrize(("name", "job_id"), [("pipeline.yml", "deploy"), ("rollback.yml", "rollback")])
def test_changes_to_prod_run_in_the_production_environment(name: str, job_id: str) -> None:
    assert job(name, job_id)["environment"]["name"] == "production"


def test_destroy_runs_in_the_production_environment() -> None:
    assert job("destroy.yml", "destroy")["environment"] == "production"


def test_every_job_that_changes_the_stack_shares_one_concurrency_group_never_cancelled() -> None:
    changers = [(n, jid, j) for n, jid, j in all_jobs() if pulumi_commands(j) & {"up", "destroy"}]
    assert {(n, jid) for n, jid, _ in changers} == {
        ("pipeline.yml", "deploy"),
        ("rollback.yml", "rollback"),
        ("destroy.yml", "destroy"),
    }
    for name, job_id, job_def in changers:
        assert job_def["concurrency"] == {"group": PROD_GROUP, "cancel-in-progress": False}, (name, job_id)


def test_the_smoke_job_runs_after_deploy_against_the_stacks_url_output() -> None:
    deploy, smoke = job("pipeline.yml", "deploy"), job("pipeline.yml", "smoke")
    assert smoke["needs"] == "deploy"
    (up,) = [s for s in steps_using(deploy, "pulumi/actions") if s.get("with", {}).get("command") == "up"]
    assert deploy["outputs"]["url"] == f"${{{{ steps.{up['id']}.outputs.url }}}}"
    (run,) = [s for s in smoke["steps"] if "smoke" in s.get("run", "")]
    assert run["env"]["URL"] == "${{ needs.deploy.outputs.url }}"
    assert run["run"].startswith('python -m smoke "$URL"')


def test_the_smoke_job_installs_nothing_the_standard_library_lacks() -> None:
    runs = " ".join(s.get("run", "") for s in job("pipeline.yml", "smoke")["steps"])
    assert "pip install" not in runs
    assert "make " not in runs


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


def test_the_state_backend_and_passphrase_come_from_variables_and_secrets() -> None:
    for name, job_id, job_def in all_jobs():
        if not pulumi_commands(job_def):
            continue
        assert job_def["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}", (name, job_id)
        from_secret = "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"  # noqa: S105 (a reference, not a value)
        assert job_def["env"]["PULUMI_CONFIG_PASSPHRASE"] == from_secret, (name, job_id)


@pytest.mark.parametrize("name", [p.name for p in sorted(WORKFLOWS.glob("*.yml"))])
def test_every_workflow_defaults_to_read_only_permissions(name: str) -> None:
    assert workflow(name)["permissions"] == {"contents": "read"}


# --- hygiene --------------------------------------------------------------------------------------

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)


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
