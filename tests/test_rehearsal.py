"""The deploy rehearsal (`make rehearse`): image -> registry -> the real user-data -> guardrail.

The full run is in the docker group: it needs an engine and a registry of its own, which
scripts/rehearse.py starts on a free port (../shared/ci/docker-engine here, a `registry:2` container
on a laptop or a GitHub runner); it refuses a port something else holds. When it can start none it
exits 77, and this test skips loudly, or fails where CALI_REQUIRE_ALL_GROUPS=1 (CI).
It covers the single-mode guardrail rollback: a broken build whose /predict fails after /ready
passes ends with the previous build serving.
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
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_booted_by_the_real_user_data_passes_and_a_broken_build_is_rolled_back() -> None:
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
    # the broken build: ready (the gate moved the address to it), then failed by the guardrail ...
    assert re.search(r"readiness gate: cali-rehearsal-host-[0-9a-f]{10}-2 answers /ready", output)
    assert "guardrail: FAIL the smoke test failed" in output
    assert "guardrail: undo the build" in output
    # ... and the previous digest booted on a fresh server through the same gate, and kept
    assert re.search(r"readiness gate: cali-rehearsal-host-[0-9a-f]{10}-3 answers /ready", output)
    assert "ROLLED BACK: the broken build was undone" in output
    assert output.count("guardrail: keep the build") == 2, "the good build, then the rolled-back one"
    (run_id,) = set(re.findall(r"cali-rehearsal-host-([0-9a-f]{10})-\d", output))
    (registry,) = set(re.findall(r"starting this run's registry on (127\.0\.0\.1:\d+)", output))
    left = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"name=cali-rehearsal-.*-{run_id}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert left.stdout.strip() == "", "the rehearsal's containers are gone"
    repo = f"{registry}/cali-housing"
    for tag in (load_script().content_tag(ROOT), f"rehearsal-broken-{run_id}"):
        tags = subprocess.run(
            ["docker", "images", "--quiet", f"{repo}:{tag}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert tags.stdout.strip() == "", f"the rehearsal's image tag {tag} is gone"

    host, port = registry.split(":")
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0, "the rehearsal's own registry is stopped"


class Recorded:
    """A rehearsal with every step that touches Docker replaced by a record of what it was asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, verdicts: list[int], digests: list[str]) -> None:
        self.rehearse = load_script()
        self.rehearsal = self.rehearse.Rehearsal("0123456789", smoke_wait=1)
        self.events: list[tuple[str, ...]] = []
        good = iter(digests)
        verdict = iter(verdicts)
        r = self.rehearsal
        monkeypatch.setattr(r, "ensure_registry", lambda: None)
        monkeypatch.setattr(r, "deploy", lambda: next(good))
        monkeypatch.setattr(r, "resolve_digest", lambda: next(good))
        monkeypatch.setattr(r, "tag_in_registry", lambda: True)
        monkeypatch.setattr(r, "identity", lambda ref=None: {"revision": "good"})
        monkeypatch.setattr(
            r, "build_broken", lambda workdir: ("broken@sha256:" + "b" * 64, {"revision": "bad"})
        )
        monkeypatch.setattr(
            r,
            "boot_fresh_host",
            lambda user_data, workdir, server: self.events.append(("boot", server.build)),
        )
        monkeypatch.setattr(
            r, "readiness_gate", lambda server, identity: self.events.append(("ready", identity["revision"]))
        )
        monkeypatch.setattr(r, "retire", lambda server: self.events.append(("retire", server.build)))
        monkeypatch.setattr(r, "guardrail", lambda server, identity: next(verdict))
        monkeypatch.setattr(r, "app_logs", lambda server: "")
        monkeypatch.setattr(
            r, "user_data", lambda image, server: self.events.append(("user_data", image)) or image
        )


GOOD = "127.0.0.1:5000/cali-housing@sha256:" + "a" * 64


def test_a_second_deploy_that_would_change_the_server_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorded = Recorded(monkeypatch, verdicts=[0], digests=[GOOD, GOOD.replace("a" * 64, "c" * 64)])
    with pytest.raises(recorded.rehearse.RehearsalError, match="second deploy would change the server"):
        recorded.rehearsal(tmp_path)


def test_a_broken_build_the_guardrail_fails_is_replaced_by_the_previous_digest_on_a_fresh_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorded = Recorded(monkeypatch, verdicts=[0, 1, 0], digests=[GOOD, GOOD])
    recorded.rehearsal(tmp_path)
    boots = [e for e in recorded.events if e[0] in ("boot", "ready", "retire")]
    assert boots == [
        ("boot", "good"),
        ("ready", "good"),
        ("boot", "broken"),
        ("ready", "bad"),  # the readiness gate passes the broken build: /ready names it
        ("retire", "good"),  # the address moved: the old server goes, as a replacement does
        ("boot", "previous"),
        ("ready", "good"),  # the previous digest goes through the same gate
        ("retire", "broken"),
    ]
    images = [e[1] for e in recorded.events if e[0] == "user_data"]
    assert images[-1] == GOOD, "the rolled-back server runs the previous digest"


def test_a_guardrail_that_keeps_the_broken_build_fails_the_rehearsal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorded = Recorded(monkeypatch, verdicts=[0, 0], digests=[GOOD, GOOD])
    with pytest.raises(recorded.rehearse.RehearsalError, match="the guardrail kept broken@sha256"):
        recorded.rehearsal(tmp_path)


def test_a_rolled_back_build_that_fails_its_guardrail_fails_the_rehearsal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorded = Recorded(monkeypatch, verdicts=[0, 1, 1], digests=[GOOD, GOOD])
    with pytest.raises(recorded.rehearse.RehearsalError, match="rolled-back build fails its guardrail"):
        recorded.rehearsal(tmp_path)


def test_the_registry_port_comes_from_ci_registry_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_REGISTRY_PORT", "5021")
    rehearsal = load_script().Rehearsal("0123456789", smoke_wait=1)
    assert rehearsal.repo == "127.0.0.1:5021/cali-housing"


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
