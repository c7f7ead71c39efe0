"""Migrating a stack the previous version made: the commands of docs/deploy.md, checked against the program.

The URNs the doc's state edit names are derived here from the program's own registration under the
mocks, so the doc cannot drift from the program; the setup command it gives runs against moto (and
tests/account/test_bootstrap.py runs every documented `python -m account.bootstrap` line as written).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from account import registries
from account.bootstrap import main
from tests.infra.conftest import ROOT, Deployment, MotoServer

DOC = ROOT / "docs" / "deploy.md"
REPOSITORY = "aws:ecr/repository:Repository"


def migration_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("## Migrating a stack made by the previous version", 1)[1].split("\n## ", 1)[0]


def test_the_state_edit_names_the_urns_the_program_registers(prod: Deployment) -> None:
    registered = sorted(r.urn for r in prod.of_type(REPOSITORY))
    assert sorted(registries.repository_urns("prod")) == registered
    documented = sorted(set(re.findall(r"urn:pulumi:[^\s'`]+", migration_section())))
    assert documented == registered


def test_the_documented_commands_are_in_order() -> None:
    section = migration_section()
    steps = [
        "make bootstrap",
        "pulumi stack export --file state.json",
        "python -m account.registries keep-in-state state.json --stack prod",
        "pulumi stack import --file state.json",
        "pulumi preview --diff",
        "pulumi up",
    ]
    positions = [section.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions)
    commands = section.split("```sh", 1)[1].split("```", 1)[0]
    assert "--target" not in commands, "no targeted operation anywhere"


def exported_state(repo_ids: dict[str, str]) -> dict[str, object]:
    """A `pulumi stack export` of a stack the oldest version made: auto-named, force-deleted repositories."""
    resources: list[dict[str, object]] = [
        {"urn": "urn:pulumi:prod::cali-housing::pulumi:pulumi:Stack::cali-housing-prod", "custom": False}
    ]
    for urn, repo_id in repo_ids.items():
        resources.append(
            {
                "urn": urn,
                "custom": True,
                "id": repo_id,
                "type": REPOSITORY,
                "inputs": {"forceDelete": True, "name": repo_id},
                "outputs": {"forceDelete": True, "name": repo_id},
            }
        )
    return {"version": 3, "deployment": {"resources": resources}}


def test_keep_in_state_marks_the_old_repositories_retained_and_nothing_else(tmp_path: Path) -> None:
    old = dict(
        zip(registries.repository_urns("prod"), ["cali-repo-1a2b3c4", "cali-cache-repo-5d6e7f8"], strict=True)
    )
    state = exported_state(old)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    command = [sys.executable, "-m", "account.registries", "keep-in-state", str(path), "--stack", "prod"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.count("retain on delete:") == 2
    after = json.loads(path.read_text())["deployment"]["resources"]
    assert [r.get("retainOnDelete", False) for r in after] == [False, True, True]
    assert [r.get("id") for r in after[1:]] == list(old.values()), "ids, inputs and outputs are untouched"
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert "nothing changed" in again.stdout


def test_keep_in_state_refuses_another_stacks_export(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(exported_state(dict.fromkeys(registries.repository_urns("staging"), "x"))))
    done = subprocess.run(
        [sys.executable, "-m", "account.registries", "keep-in-state", str(path), "--stack", "prod"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "pulumi stack export --stack prod" in done.stderr


def test_the_documented_setup_command_runs_on_a_stand_in(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = [
        line
        for line in migration_section().splitlines()
        if "account.bootstrap" in line and "--stacks" in line
    ]
    words = shlex.split(line.split("  #", 1)[0])
    environ = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    args = words[words.index("account.bootstrap") + 1 :]
    assert main([*args, "--endpoint-url", aws_stand_in.url], environ=environ) == 0
    assert "created ECR repository cali-housing-prod " in capsys.readouterr().out
    (repo,) = boto3.client(
        "ecr", region_name=environ["AWS_REGION"], endpoint_url=aws_stand_in.url
    ).describe_repositories(repositoryNames=["cali-housing-prod"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"


def test_state_delete_could_not_forget_the_repository_since_the_server_reads_it(prod: Deployment) -> None:
    # `pulumi state delete` refuses a resource others depend on (pulumi/pulumi
    # pkg/resource/edit/operations.go, DeleteResource), which is why the migration edits
    # retainOnDelete instead: the lifecycle policy, the server role's policy and the boot script
    # all read the image repository.
    repo = prod.named(REPOSITORY, "cali-repo").urn
    readers = {r.name for r in prod.resources if repo in r.dependencies}
    assert {"cali-keep-last", "cali-instance"} <= readers, readers
    assert any(r.typ == "aws:iam/rolePolicy:RolePolicy" for r in prod.resources if repo in r.dependencies)
