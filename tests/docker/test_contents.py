"""What the runtime image holds: a non-root user, the server's dependencies, nothing else."""

from __future__ import annotations

import json

import pytest

from testkit.docker import docker
from tests.docker.conftest import BuiltImage, Container

pytestmark = pytest.mark.docker

# Run inside the image as its own user; prints what a runtime image must not have.
PROBE = """
import glob, importlib.util, json, os, shutil
print(json.dumps({
    "uid": os.getuid(),
    "compilers": [c for c in ("gcc", "cc", "c++", "g++", "clang", "make", "ld") if shutil.which(c)],
    "test_tools": [m for m in ("pytest", "_pytest", "hypothesis", "ruff", "hadolint", "playwright")
                   if importlib.util.find_spec(m)],
    "training_only": [m for m in ("pandas", "sklearn", "scipy", "lightgbm", "joblib", "matplotlib")
                      if importlib.util.find_spec(m)],
    "pip_in_venv": bool(glob.glob("/opt/venv/lib/python3*/site-packages/pip")),
    "smoke_client": [p for p in ("/app/smoke", "/app/service/smoke.py") if os.path.exists(p)]
                    + (["importable"] if importlib.util.find_spec("smoke") else []),
    "datasets": [p for root in ("/app", "/opt", "/data", "/root", "/home", "/tmp", "/usr", "/var")
                 for pattern in ("*.pkz", "cal_housing*")
                 for p in glob.glob(f"{root}/**/{pattern}", recursive=True)],
    "pip_cache": os.path.isdir("/root/.cache/pip") and os.access("/root/.cache/pip", os.R_OK)
                 and bool(os.listdir("/root/.cache/pip")),
    "artifact": sorted(os.listdir(os.environ["MODEL_DIR"])),
    "artifact_writable": [name for name in os.listdir(os.environ["MODEL_DIR"])
                          if os.access(os.path.join(os.environ["MODEL_DIR"], name), os.W_OK)],
}))
"""


@pytest.fixture(scope="module")
def contents(image: BuiltImage) -> dict:
    """What PROBE finds in the image."""
    done = docker("run", "--rm", "--network=none", "--entrypoint", "python", image.tag, "-c", PROBE)
    return json.loads(done.stdout)


def test_image_runs_as_a_fixed_non_root_uid(contents: dict) -> None:
    assert contents["uid"] == 10001


def test_every_server_process_runs_as_the_non_root_uid(served: Container) -> None:
    script = (
        "import glob\n"
        "for status in glob.glob('/proc/[0-9]*/status'):\n"
        "    fields = dict(line.split(':', 1) for line in open(status) if ':' in line)\n"
        "    print(fields['Name'].strip(), fields['Uid'].split()[0])\n"
    )
    listing = docker("exec", served.id, "python", "-c", script).stdout.split("\n")
    processes = [line.split() for line in listing if line.strip()]
    assert len(processes) >= 3, processes  # the master, its workers, and this probe
    assert {uid for _, uid in processes} == {"10001"}, processes


def test_runtime_image_has_no_compiler(contents: dict) -> None:
    assert contents["compilers"] == []


def test_runtime_image_has_no_test_tools_training_libraries_or_pip(contents: dict) -> None:
    assert contents["test_tools"] == []
    assert contents["training_only"] == []
    assert contents["pip_in_venv"] is False


def test_runtime_image_has_no_smoke_client(contents: dict) -> None:
    # the smoke client checks a deployed service from outside; it is no part of what serves
    assert contents["smoke_client"] == []


def test_runtime_image_has_no_dataset_and_no_pip_cache(contents: dict) -> None:
    assert contents["datasets"] == []
    assert contents["pip_cache"] is False


def test_artifact_is_baked_in_and_read_only_for_the_server(contents: dict) -> None:
    assert {"metadata.json", "forest.so", "forest_nodes.npy", "neighbourhood_table.npy"} <= set(
        contents["artifact"]
    )
    assert contents["artifact_writable"] == []
