"""The deploy rehearsal (`make rehearse`): image -> registry -> the real user-data -> smoke test.

The full run is in the docker group: it needs an engine and a registry of its own, which
scripts/rehearse.py starts on a free port (../shared/ci/docker-engine here, a `registry:2` container
on a laptop or a GitHub runner); it refuses a port something else holds. When it can start none it
exits 77, and this test skips loudly, or fails where CALI_REQUIRE_ALL_GROUPS=1 (CI).
"""

from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_ALL

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "rehearse.py"


def load_script():
    spec = importlib.util.spec_from_file_location("rehearse", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_booted_by_the_real_user_data_passes_the_smoke_test_and_leaves_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=2400, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode == 77:
        message = "deploy rehearsal: no registry of its own could be started"
        if REQUIRE_ALL:
            pytest.fail(f"{message} (CALI_REQUIRE_ALL_GROUPS=1 forbids skipping it)", pytrace=False)
        pytest.skip(message)
    assert done.returncode == 0, output[-4000:]
    assert "user-data: docker is already running" in output, "the host had Docker, so no install ran"
    assert "smoke: all checks passed" in output
    assert "ok   identity" in output, "the smoke test checked the build the labels name"
    assert "second deploy changed nothing" in output
    (run_id,) = set(re.findall(r"cali-rehearsal-host-([0-9a-f]{10})", output))
    (registry,) = set(re.findall(r"starting this run's registry on (127\.0\.0\.1:\d+)", output))
    left = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"name=cali-rehearsal-.*-{run_id}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert left.stdout.strip() == "", "the rehearsal's containers are gone"
    tags = subprocess.run(
        ["docker", "images", "--quiet", f"{registry}/cali-housing:{load_script().content_tag(ROOT)}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert tags.stdout.strip() == "", "the rehearsal's image tag is gone"
    host, port = registry.split(":")
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0, "the rehearsal's own registry is stopped"


def test_a_second_deploy_that_would_change_the_server_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rehearse = load_script()
    rehearsal = rehearse.Rehearsal("0123456789", smoke_wait=1)
    digests = iter([f"{rehearsal.repo}@sha256:{'a' * 64}", f"{rehearsal.repo}@sha256:{'b' * 64}"])
    monkeypatch.setattr(rehearsal, "ensure_registry", lambda: None)
    monkeypatch.setattr(rehearsal, "deploy", lambda: next(digests))
    monkeypatch.setattr(rehearsal, "resolve_digest", lambda: next(digests))
    monkeypatch.setattr(rehearsal, "tag_in_registry", lambda: True)
    monkeypatch.setattr(rehearsal, "boot_fresh_host", lambda user_data, workdir: None)
    monkeypatch.setattr(rehearsal, "smoke", lambda port, identity: None)
    monkeypatch.setattr(rehearsal, "identity", dict)
    with pytest.raises(rehearse.RehearsalError, match="second deploy would change the server"):
        rehearsal(tmp_path)


def test_the_rehearsal_tags_the_image_by_the_programs_content_tag() -> None:
    rehearse = load_script()
    from infra.release import content_tag

    rehearsal = rehearse.Rehearsal("0123456789", smoke_wait=1)
    assert rehearsal.tag == f"127.0.0.1:{rehearsal.port}/cali-housing:{content_tag(ROOT)}"


def test_the_rehearsal_refuses_a_registry_port_that_something_else_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rehearse = load_script()
    commands: list[list[str]] = []
    monkeypatch.setattr(rehearse, "run", lambda args, **_: commands.append(list(args)))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("CI_REGISTRY_PORT", str(taken.getsockname()[1]))
        rehearsal = rehearse.Rehearsal("0123456789", smoke_wait=1)
        with pytest.raises(
            rehearse.RehearsalError, match="already in use by something this run did not start"
        ):
            rehearsal.ensure_registry()
    assert commands == [], "nothing was started or pushed"


def test_without_a_given_port_each_run_starts_its_own_registry_on_a_free_port_and_stops_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rehearse = load_script()
    monkeypatch.delenv("CI_REGISTRY_PORT", raising=False)
    engine = tmp_path / "docker-engine"
    engine.write_text("#!/bin/sh\n")
    monkeypatch.setattr(rehearse, "DOCKER_ENGINE", engine)
    monkeypatch.setattr(rehearse, "DOCKER_ENGINE_STATE", tmp_path)
    started: list[dict[str, str]] = []

    def fake_run(args, **kwargs):
        started.append(kwargs["env"])
        (tmp_path / f"registry-{kwargs['env']['CI_REGISTRY_PORT']}").mkdir()
        return subprocess.CompletedProcess(args, 0, stdout="", stderr="starting a registry")

    monkeypatch.setattr(rehearse, "run", fake_run)
    monkeypatch.setattr(rehearse, "registry_answers", lambda registry: True)
    rehearsal = rehearse.Rehearsal("0123456789", smoke_wait=1)
    rehearsal.ensure_registry()
    assert started[0]["CI_REGISTRY_PORT"] == str(rehearsal.port)
    assert rehearsal.port != 5000, "not the shared default port"
    assert (tmp_path / f"registry-{rehearsal.port}").is_dir()
    rehearsal.teardown()
    assert not (tmp_path / f"registry-{rehearsal.port}").exists(), "its storage goes with it"


def test_a_port_that_is_not_a_number_fails_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    rehearse = load_script()
    monkeypatch.setenv("CI_REGISTRY_PORT", "five thousand")
    assert rehearse.main([]) == 1


def test_a_failed_step_still_tears_down_what_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    rehearse = load_script()
    undone: list[str] = []

    def failing_run(self, workdir: Path) -> None:
        self.cleanups.append(("registry", lambda: undone.append("registry")))
        self.cleanups.append(("app container", lambda: undone.append("app")))
        assert workdir.is_dir()
        raise rehearse.RehearsalError("the build failed")

    monkeypatch.setattr(rehearse.Rehearsal, "__call__", failing_run)
    assert rehearse.main([]) == 1
    assert undone == ["app", "registry"], "newest first, and every one of them"


def test_a_cleanup_that_fails_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    rehearse = load_script()
    rehearsal = rehearse.Rehearsal("0123456789", smoke_wait=1)
    undone: list[str] = []

    def broken() -> None:
        raise OSError("engine gone")

    rehearsal.cleanups += [("first", lambda: undone.append("first")), ("broken", broken)]
    rehearsal.teardown()
    assert undone == ["first"]
    assert rehearsal.cleanups == []
