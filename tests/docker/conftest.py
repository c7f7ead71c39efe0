"""Fixtures for the image tests: one image per session, containers bound to 127.0.0.1 and removed after.

The image is built once, from a clean copy of the checkout (the files git tracks, nothing ignored:
no .venv, no artifacts/), with the dataset staged the way `make docker` stages it. It is tagged
cali-housing:test and kept, so a later run (or the deploy rehearsal) reuses its layers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from model.artifact import Artifact, load_artifact

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "cali-housing:test"
BASE_IMAGE = "python:3.11-slim-bookworm"
DATA = Path(os.environ.get("SCIKIT_LEARN_DATA", ROOT.parent / "shared" / "data" / "scikit_learn_data"))
LABEL = "cali-housing-tests"  # every container the tests start carries it, for cleanup by hand if need be
BUILD_TIMEOUT = 1800  # seconds; training inside the build is slow on a busy two-core machine
READY_TIMEOUT = 90  # seconds from `docker run` to /ready answering 200
GRACEFUL_TIMEOUT = 20  # service.config.Settings.graceful_timeout, the image's default


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker client; on failure, raise with its stderr in the message."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


def free_port() -> int:
    """A TCP port nothing on 127.0.0.1 listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@dataclass(frozen=True)
class BuiltImage:
    """The session's image and the clean build context it came from."""

    tag: str
    context: Path
    build_seconds: float


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """cali-housing:test, built once per session from a clean checkout (layer cache welcome)."""
    context = clean_checkout(tmp_path_factory.mktemp("checkout"))
    started = time.perf_counter()
    docker("build", "--tag", IMAGE, "--build-arg", "GIT_REVISION=test", str(context), timeout=BUILD_TIMEOUT)
    return BuiltImage(IMAGE, context, time.perf_counter() - started)


@pytest.fixture(scope="session")
def image_artifact(image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The model baked into the image, loaded in this process (same pinned scikit-learn)."""
    out = tmp_path_factory.mktemp("artifact")
    created = docker("create", "--label", LABEL, image.tag).stdout.strip()
    try:
        docker("cp", f"{created}:/opt/model/.", str(out))
    finally:
        docker("rm", "--force", created, check=False)
    return load_artifact(out)


@dataclass
class Container:
    """A running container of the image, published on 127.0.0.1 only."""

    id: str
    port: int
    started_at: float
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def inspect(self) -> dict:
        """`docker inspect` of the container."""
        return json.loads(docker("inspect", self.id).stdout)[0]

    def logs(self) -> str:
        """Everything the container wrote so far (stdout and stderr)."""
        done = docker("logs", self.id, check=False)
        return done.stdout + done.stderr

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Poll /ready until it answers 200; return seconds since `docker run`.

        Raises:
            AssertionError: Not ready in time, or the container exited; the message has its logs.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started_at
            except requests.ConnectionError:
                pass
            if not self.inspect()["State"]["Running"]:
                raise AssertionError(f"the container exited before it was ready:\n{self.logs()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"/ready did not answer 200 within {timeout}s:\n{self.logs()[-3000:]}")


@pytest.fixture(scope="session")
def start_container(image: BuiltImage) -> Iterator[Callable[..., Container]]:
    """A factory: start(env={...}, container_port=8080, args=[...]) -> Container; all removed at the end."""
    started: list[str] = []

    def start(
        env: dict[str, str] | None = None, container_port: int = 8080, args: tuple[str, ...] = ()
    ) -> Container:
        port = free_port()
        env_args = [f"--env={key}={value}" for key, value in (env or {}).items()]
        began = time.perf_counter()
        cid = docker(
            "run",
            "--detach",
            "--name",
            f"cali-test-{uuid.uuid4().hex[:10]}",
            "--label",
            LABEL,
            "--publish",
            f"127.0.0.1:{port}:{container_port}",
            *env_args,
            *args,
            image.tag,
        ).stdout.strip()
        started.append(cid)
        return Container(cid, port, began)

    yield start
    for cid in started:
        docker("rm", "--force", "--volumes", cid, check=False)


@pytest.fixture(scope="session")
def served(start_container: Callable[..., Container]) -> Container:
    """One ready container shared by the read-only tests: 1 s health interval, MAX_BATCH=50."""
    container = start_container(env={"MAX_BATCH": "50"}, args=("--health-interval=1s",))
    container.wait_ready()
    return container
