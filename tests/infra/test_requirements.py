"""A fresh clone's `pulumi up` works: the root requirements.txt is all the program needs.

Pulumi.yaml's pip toolchain creates .venv and installs requirements.txt into it (nothing else), so
this test does the same in an empty virtual environment and imports every module the program
imports. pip reaches PyPI (or its cache); no AWS, no Pulumi CLI.
"""

from __future__ import annotations

import ast
import subprocess
import venv
from pathlib import Path

import pytest
import yaml

from tests.infra.conftest import ROOT


def program_modules() -> list[str]:
    """The project modules __main__.py imports, and theirs, transitively (infra.*, model.schema, ...)."""
    seen: set[str] = set()
    todo = [ROOT / "__main__.py"]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from infra import config` names the module infra.config
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                path = ROOT / (name.replace(".", "/") + ".py")
                if path.exists() and name not in seen:
                    seen.add(name)
                    todo.append(path)
    return sorted(seen)


def test_pulumi_yaml_asks_the_pip_toolchain_for_dot_venv() -> None:
    options = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]["options"]
    assert options == {"toolchain": "pip", "virtualenv": ".venv"}


def test_requirements_pins_nothing_itself_and_constrains_through_constraints_txt() -> None:
    lines = [x.strip() for x in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [x for x in lines if x and not x.startswith("#")]
    assert lines[0] == "-c constraints.txt"
    constraints = {
        x.split("==")[0].lower().replace("_", "-")
        for x in (ROOT / "constraints.txt").read_text().splitlines()
    }
    for requirement in lines[1:]:
        assert "=" not in requirement, f"{requirement}: the version belongs in constraints.txt"
        assert requirement.lower().replace("_", "-") in constraints, f"{requirement} is not pinned"


@pytest.mark.slow
def test_a_fresh_venv_from_requirements_txt_imports_every_module_of_the_program(tmp_path: Path) -> None:
    modules = program_modules()
    assert {"infra.image", "infra.registry", "infra.rollout", "infra.release", "model.schema"} <= set(modules)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=ROOT,
        check=True,
        timeout=1200,
    )
    done = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]",
            *modules,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # and nothing of the test or training tools came along
    listed = subprocess.run(
        [str(python), "-m", "pip", "list"], capture_output=True, text=True, check=True
    ).stdout
    for absent in ("pytest", "scikit-learn", "moto", "flask"):
        assert absent not in listed.lower(), absent
