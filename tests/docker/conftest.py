"""Fixtures for the image tests: one image per session, containers bound to 127.0.0.1 and removed after.

The image is built once, from a clean copy of the checkout (the files git tracks, nothing ignored:
no .venv, no artifacts/), with the dataset staged the way `make docker` stages it. It is tagged
cali-housing:test and kept, so a later run (or the deploy rehearsal) reuses its layers.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from service.predictor import LoadedModel
from testkit.docker import BUILD_TIMEOUT, IMAGE, LABEL, PREBUILT, READY_TIMEOUT, clean_checkout, docker
from testkit.ports import free_port


@dataclass(frozen=True)
class BuiltImage:
    """The session's image and the clean build context it came from."""

    tag: str
    context: Path
    build_seconds: float


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """cali-housing:test, built once per session from a clean checkout (layer cache welcome).

    With CALI_TEST_IMAGE_BUILT=1 (the pipeline's image job) nothing is built: the group tests the
    image CALI_TEST_IMAGE names, the one that job built and will ship.
    """
    context = clean_checkout(tmp_path_factory.mktemp("checkout"))
    if PREBUILT:
        docker("image", "inspect", IMAGE)  # fails loudly when the named image is not there
        return BuiltImage(IMAGE, context, 0.0)
    started = time.perf_counter()
    docker("build", "--tag", IMAGE, "--build-arg", "GIT_REVISION=test", str(context), timeout=BUILD_TIMEOUT)
    return BuiltImage(IMAGE, context, time.perf_counter() - started)


@pytest.fixture(scope="session")
def image_artifact(image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The model baked into the image, verified and loaded in this process as the service loads it."""
    out = tmp_path_factory.mktemp("artifact")
    created = docker("create", "--label", LABEL, image.tag).stdout.strip()
    try:
        docker("cp", f"{created}:/opt/model/.", str(out))
    finally:
        docker("rm", "--force", created, check=False)
    return LoadedModel.load(out)


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
