"""Shared fixtures, and the test groups that need a Docker engine, a browser or the AWS CLI.

On a machine without Docker, Chromium or an `aws` command those groups are skipped, and the run
ends with a loud banner naming them. Docker counts as missing also when its client cannot build with
BuildKit (a Docker 23+ client without the buildx plugin, as Debian-style installs often are): the
image's build needs it, and the banner then names the package to install. With
CALI_REQUIRE_ALL_GROUPS=1 (set by .ci/run) a missing group is a failure instead, so CI never passes
on skipped groups.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache

import pytest

from model.artifact import METADATA_FILE
from model.evaluate import DEFAULT_MAX_TEST_RMSE
from testkit.docker import PREBUILT, buildkit_problem

REQUIRE_ALL = os.environ.get("CALI_REQUIRE_ALL_GROUPS") == "1"
CHROMIUM = "/usr/bin/chromium"
# No first-run, sync or background networking: this machine's network is closed, and without
# these flags Chromium keeps trying to reach its own services.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@cache
def docker_available() -> str | None:
    """None when a Docker engine answers and the client can build the image, else why not (and the fix)."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if done.returncode != 0:
        return "no Docker engine answers (docker info failed)"
    # An image built elsewhere (CALI_TEST_IMAGE_BUILT=1) is only run here: no build, no BuildKit needed.
    return None if PREBUILT else buildkit_problem()


@cache
def chromium_available() -> str | None:
    """None when Debian's chromium and PyPI's playwright are both here, else why not."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


# The first AWS CLI releases that read AWS_ENDPOINT_URL, which is how the tests point it at moto
# (AWS SDKs and Tools Reference Guide, "Service-specific endpoints", compatibility table).
AWSCLI_ENDPOINT_URL_SINCE = {1: (1, 29), 2: (2, 13)}


@cache
def awscli_available() -> str | None:
    """None when an AWS CLI that honours AWS_ENDPOINT_URL is on PATH, else why not and how to get one."""
    install = (
        "install AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
    )
    if shutil.which("aws") is None:
        return f"no `aws` on PATH (the docs' AWS commands run through it against moto); {install}"
    done = subprocess.run(["aws", "--version"], capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r"aws-cli/(\d+)\.(\d+)", done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        return f"`aws --version` failed: {(done.stdout + done.stderr)[-300:]}"
    version = (int(found[1]), int(found[2]))
    since = AWSCLI_ENDPOINT_URL_SINCE.get(version[0])
    if since is None or version < since:
        return f"aws-cli/{found[1]}.{found[2]} ignores AWS_ENDPOINT_URL, so it cannot reach moto; {install}"
    return None


GROUPS = {"docker": docker_available, "browser": chromium_available, "awscli": awscli_available}
_skipped: dict[str, str] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for group, probe in GROUPS.items():
        if item.get_closest_marker(group) is None:
            continue
        reason = probe()
        if reason is None:
            continue
        message = f"{group} group unavailable: {reason}"
        if REQUIRE_ALL:
            pytest.fail(f"{message} (CALI_REQUIRE_ALL_GROUPS=1 forbids skipping it)", pytrace=False)
        _skipped[group] = reason
        pytest.skip(message)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _skipped:
        return
    write = terminalreporter.write_line
    write("")
    write("!" * 78, red=True, bold=True)
    for group, reason in sorted(_skipped.items()):
        write(f"!! SKIPPED the {group!r} test group: {reason}", red=True, bold=True)
    write("!! These tests did NOT run. CI installs what they need and fails if they skip.", red=True)
    write("!" * 78, red=True, bold=True)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A model trained once per test session (no cross-validation, to keep it quick)."""
    from model.train import train

    out = tmp_path_factory.mktemp("artifact")
    train(out, max_test_rmse=DEFAULT_MAX_TEST_RMSE, with_cv=False)
    assert (out / METADATA_FILE).is_file()
    return out


@pytest.fixture(scope="session")
def session_app(trained_model_dir):
    """One app over the session's model, for tests that only read."""
    from service import create_app
    from service.config import ServiceSettings

    return create_app({"SETTINGS": ServiceSettings(model_dir=trained_model_dir, max_batch=50)})


@pytest.fixture
def app(trained_model_dir):
    """A fresh app over the session's model, with a small batch limit to test it cheaply."""
    from service import create_app
    from service.config import ServiceSettings

    return create_app(
        {"SETTINGS": ServiceSettings(model_dir=trained_model_dir, max_batch=50, max_body_bytes=64 * 1024)}
    )


@pytest.fixture
def client(app):
    """A Flask test client of the fresh app."""
    return app.test_client()


@pytest.fixture(scope="session")
def live_server(trained_model_dir):
    """The real service under gunicorn (2 workers) on a free loopback port, for the session."""
    from testkit.live import gunicorn

    with gunicorn(trained_model_dir, {"WORKERS": "2"}) as server:
        yield server


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright, once per session (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh browser page with a 15 s default timeout."""
    page = chromium.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        page.close()
