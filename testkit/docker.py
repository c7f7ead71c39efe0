"""The docker client, the image tests' names and limits, and a clean checkout to build from."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("CALI_TEST_IMAGE", "cali-housing:test")  # another name keeps parallel checkouts apart
# "1": IMAGE is already built (the pipeline's release image); test it rather than build one.
PREBUILT = os.environ.get("CALI_TEST_IMAGE_BUILT") == "1"
BASE_IMAGE = "python:3.11-slim-bookworm"
DATA = Path(os.environ.get("SCIKIT_LEARN_DATA", ROOT.parent / "shared" / "data" / "scikit_learn_data"))
LABEL = "cali-housing-tests"  # every container the tests start carries it, for cleanup by hand if need be
BUILD_TIMEOUT = 1800  # seconds; training inside the build is slow on a busy two-core machine
READY_TIMEOUT = 90  # seconds from `docker run` to /ready answering 200
GRACEFUL_TIMEOUT = 20  # service.config.ServiceSettings.graceful_timeout, the image's default


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker client; on failure, raise with its stderr in the message."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


# What to install when the client cannot build with BuildKit, which the Dockerfile needs (RUN --mount).
BUILDX_FIX = (
    "install Docker's buildx plugin: Debian/Ubuntu `apt-get install docker-buildx` (the distribution's "
    "package) or `docker-buildx-plugin` (Docker's own apt repository), Docker Desktop has it; "
    "https://docs.docker.com/go/buildx/"
)
# A build only BuildKit can do, with no base image to pull: the legacy builder refuses `--output`
# ("unknown flag") and `COPY --chmod` ("the --chmod option requires BuildKit").
_PROBE_DOCKERFILE = "FROM scratch\nCOPY --chmod=0644 Dockerfile /probe\n"


def buildkit_problem() -> str | None:
    """None when this `docker build` builds with BuildKit, else why not and what to install.

    The probe is a real build (FROM scratch, one file, written to a tar in a temporary directory), so
    it answers for the client, its plugins and DOCKER_BUILDKIT together, as the image's build meets them.
    """
    client = shutil.which("docker") or "docker"
    with tempfile.TemporaryDirectory(prefix="cali-buildkit-probe-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(_PROBE_DOCKERFILE)
        probe = subprocess.run(
            ["docker", "build", "--quiet", "--output", f"type=tar,dest={tmp}/out.tar", tmp],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if probe.returncode == 0:
        return None
    version = subprocess.run(
        ["docker", "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=30, check=False)
    has_buildx = buildx.returncode == 0
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    said = (probe.stderr.strip().splitlines() or ["no output"])[-1]
    if not has_buildx and major >= 23:
        # Docker 23 and later build with BuildKit only through the buildx plugin
        return (
            f"the docker client {version} ({client}) has no buildx plugin, so it cannot build with "
            f"BuildKit, which the Dockerfile needs (RUN --mount); fix: {BUILDX_FIX}"
        )
    if not has_buildx and os.environ.get("DOCKER_BUILDKIT") != "1":
        # a client before 23 has BuildKit built in, used only when asked
        return (
            f"the docker client {version} ({client}) builds with BuildKit only when asked; "
            f"fix: export DOCKER_BUILDKIT=1, or {BUILDX_FIX}"
        )
    return f"a BuildKit build failed with the docker client {version} ({client}): {said}"


def clean_checkout(dest: Path) -> Path:
    """Copy what git tracks (as it is in the working tree) into dest, and stage the dataset.

    Returns:
        dest, ready to be a build context as a fresh clone after `make docker`'s staging would be.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of the checkout
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    staged = dest / ".build-data" / "scikit_learn_data"
    staged.mkdir(parents=True)
    for cached in DATA.glob("cal_housing*"):
        shutil.copyfile(cached, staged / cached.name)
    return dest
