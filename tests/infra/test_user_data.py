"""The boot script: shellcheck-clean, and it does install -> start -> credential helper -> pull -> run, once.

The rendered script runs under bash with stand-ins for docker, dnf, systemctl and aws first on
PATH. They record each call and keep a little state (is the daemon up, which image the container
runs), so a second run can show it changes nothing. A stand-in can be told to fail its next N calls
(`Host.fail`), which shows every network step is retried and logged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.user_data import TEMPLATE, render_user_data
from tests.infra.conftest import venv_tool

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cali-repo@sha256:" + "ab" * 32
OTHER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cali-repo@sha256:" + "cd" * 32
REHEARSAL_IMAGE = "127.0.0.1:5000/cali-housing@sha256:" + "ef" * 32

# Each stand-in appends "<name> <args>" to $CALLS; state lives in files under $FAKE_STATE.
# `flaky KEY` fails the call while $FAKE_STATE/fail-KEY holds a count above zero (and counts down).
FLAKY = r"""flaky() {
    local f="$FAKE_STATE/fail-$1"
    if [[ -s "$f" ]] && (($(<"$f") > 0)); then
        echo $(($(<"$f") - 1)) >"$f"
        echo "$1: injected failure" >&2
        exit 1
    fi
}
"""
STAND_INS = {
    "dnf": r"""echo "dnf $*" >>"$CALLS"
flaky dnf
touch "$FAKE_STATE/installed"
if [[ " $* " == *" amazon-ecr-credential-helper "* ]]; then
    printf '#!/bin/bash\n' >"$(dirname "$0")/docker-credential-ecr-login"
    chmod +x "$(dirname "$0")/docker-credential-ecr-login"
fi
""",
    "systemctl": (
        'echo "systemctl $*" >>"$CALLS"\n'
        'if [[ " $* " == *" --now "* || " $* " == *" start "* ]]; then touch "$FAKE_STATE/daemon"; fi\n'
    ),
    "aws": 'echo "aws $*" >>"$CALLS"; echo ecr-password\n',
    # `aws ... | docker login` run side by side: login records its call only once it has read the
    # password, which aws writes after recording its own, so the log order is deterministic.
    "docker": r"""if [[ "$1" == login ]]; then read -r password; fi
echo "docker $*" >>"$CALLS"
case "$1" in
    info) [[ -e "$FAKE_STATE/daemon" ]] ;;
    inspect)
        [[ -e "$FAKE_STATE/container" ]] || exit 1
        if [[ "$2" == --format ]]; then echo "true $(cat "$FAKE_STATE/container")"; fi ;;
    login) [[ "$password" == ecr-password ]] ;;
    pull) flaky pull ;;
    stop) ;;
    rm) rm -f "$FAKE_STATE/container" ;;
    # a failed run may still have created the container, as Docker's can
    run) for last in "$@"; do :; done; echo "$last" >"$FAKE_STATE/container"; flaky run ;;
    *) echo "unexpected docker $1" >&2; exit 2 ;;
esac
""",
}
# Calls that change the host; `docker info` and `docker inspect` only look.
CHANGES = (
    "dnf ",
    "systemctl ",
    "aws ",
    "docker login",
    "docker pull",
    "docker stop",
    "docker rm",
    "docker run",
)


class Host:
    """A fake host: stand-in commands on PATH, their state, and the log of their calls."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.calls = root / "calls.log"
        self.bin.mkdir()
        self.state.mkdir()
        self.calls.touch()
        for name, body in STAND_INS.items():
            path = self.bin / name
            path.write_text(f"#!/bin/bash\nset -euo pipefail\n{FLAKY}{body}")
            path.chmod(0o755)
        self.stderr = ""

    def fail(self, key: str, times: int) -> None:
        """Make the stand-in step `key` (dnf, pull, run) fail its next `times` calls."""
        (self.state / f"fail-{key}").write_text(str(times))

    def env(self) -> dict[str, str]:
        """The environment a script runs in here: the stand-ins first, no pause between retries."""
        return {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "CALLS": str(self.calls),
            "FAKE_STATE": str(self.state),
            "RETRY_DELAY": "0",
            "HOME": str(self.state),
        }

    def run(self, script: str) -> list[str]:
        """Run a rendered script; return the calls it made (its log lines land in `stderr`)."""
        before = len(self.calls.read_text().splitlines())
        done = subprocess.run(
            ["bash", "-c", script], env=self.env(), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        self.stderr = done.stderr
        return self.calls.read_text().splitlines()[before:]


def changes(calls: list[str]) -> list[str]:
    return [call for call in calls if call.startswith(CHANGES)]


def production_script(image: str = IMAGE) -> str:
    return render_user_data(image, region="us-east-1", log_group="cali-logs", host_port=80)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A fresh host without Docker."""
    return Host(tmp_path)


def test_template_passes_shellcheck() -> None:
    done = subprocess.run(
        [venv_tool("shellcheck"), str(TEMPLATE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout


def test_rendered_script_passes_shellcheck(tmp_path: Path) -> None:
    rendered = tmp_path / "user_data.sh"
    rendered.write_text(production_script())
    done = subprocess.run(
        [venv_tool("shellcheck"), str(rendered)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout


def test_template_starts_strict() -> None:
    lines = TEMPLATE.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "set -euo pipefail" in lines[:10]


def test_fresh_host_installs_starts_uses_the_ecr_helper_pulls_by_digest_and_runs(host: Host) -> None:
    made = changes(host.run(production_script()))
    assert made == [
        "dnf install -y docker",
        "systemctl enable --now docker",
        "dnf install -y amazon-ecr-credential-helper",
        f"docker pull {IMAGE}",
        "docker run --detach --name cali-housing --restart unless-stopped --stop-timeout 30"
        " --publish 80:8080 --env PORT=8080 --env EMF=1"
        f" --log-driver awslogs --log-opt awslogs-region=us-east-1 --log-opt awslogs-group=cali-logs {IMAGE}",
    ]


def test_second_run_changes_nothing(host: Host) -> None:
    host.run(production_script())
    assert changes(host.run(production_script())) == []


def test_new_digest_replaces_the_container(host: Host) -> None:
    host.run(production_script())
    made = changes(host.run(production_script(OTHER_IMAGE)))
    # the old container is stopped (drained), not killed, before it is removed
    assert made[-4:-1] == [
        f"docker pull {OTHER_IMAGE}",
        "docker stop --time 30 cali-housing",
        "docker rm cali-housing",
    ]
    assert made[-1].endswith(OTHER_IMAGE)
    assert not [call for call in made if call.startswith(("dnf", "systemctl"))]


def test_rehearsal_host_with_docker_skips_install_and_login(host: Host) -> None:
    (host.state / "daemon").touch()  # Docker already answers, as on a host with the socket
    script = render_user_data(
        REHEARSAL_IMAGE,
        host_port=18080,
        ecr_login=False,
        log_driver="json-file",
        log_options={"max-size": "10m"},
    )
    assert changes(host.run(script)) == [
        f"docker pull {REHEARSAL_IMAGE}",
        "docker run --detach --name cali-housing --restart unless-stopped --stop-timeout 30"
        " --publish 18080:8080"
        f" --env PORT=8080 --env EMF=1 --log-driver json-file --log-opt max-size=10m {REHEARSAL_IMAGE}",
    ]


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/cali-repo:latest",
        "cali-repo@sha256:" + "ab" * 32,  # no registry host
        "127.0.0.1:5000/cali@sha256:short",
    ],
)
def test_render_refuses_anything_but_a_digest_reference(image: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        render_user_data(image, region="us-east-1", log_group="g")


def test_render_needs_region_and_log_group_for_aws() -> None:
    with pytest.raises(ValueError, match="region"):
        render_user_data(IMAGE, log_group="g")
    with pytest.raises(ValueError, match="log_group"):
        render_user_data(IMAGE, region="us-east-1")


def test_render_quotes_values_for_the_shell() -> None:
    hostile = {"labels": "a b;rm -rf /"}
    script = render_user_data(REHEARSAL_IMAGE, ecr_login=False, log_driver="json-file", log_options=hostile)
    assert "LOG_OPTS=('labels=a b;rm -rf /')" in script
    assert "@@" not in script


def test_render_does_not_need_pulumi() -> None:
    code = "import sys, infra.user_data; sys.exit('pulumi' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=TEMPLATE.parents[1], timeout=60, check=False)
    assert done.returncode == 0


def test_ecr_pulls_go_through_the_credential_helper_and_no_token_is_written(host: Host) -> None:
    calls = host.run(production_script())
    assert not [c for c in calls if c.startswith(("docker login", "aws "))], (
        "a token would be written to disk"
    )
    config = json.loads((host.state / ".docker" / "config.json").read_text())
    assert config == {"credHelpers": {"123456789012.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}}
    assert "auths" not in config
    assert (host.state / ".docker" / "config.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("step", "call"),
    [
        ("dnf", "dnf install -y docker"),
        ("pull", f"docker pull {IMAGE}"),
        ("run", "docker run --detach --name cali-housing"),
    ],
)
def test_each_network_step_is_retried_and_each_failure_logged(host: Host, step: str, call: str) -> None:
    host.fail(step, 2)
    calls = host.run(production_script())
    assert sum(c.startswith(call) for c in calls) == 3, calls  # two failures, then success
    assert host.stderr.count("failed, retrying") == 2, host.stderr
    assert (host.state / "container").read_text().strip() == IMAGE


def test_a_failed_docker_run_is_cleaned_up_before_the_next_attempt(host: Host) -> None:
    host.fail("run", 1)
    made = changes(host.run(production_script()))
    runs = [i for i, c in enumerate(made) if c.startswith("docker run")]
    assert len(runs) == 2
    assert made[runs[0] + 1] == "docker rm --force cali-housing", made


def test_a_step_that_never_succeeds_fails_the_boot_naming_it(host: Host) -> None:
    host.fail("pull", 100)
    done = subprocess.run(
        ["bash", "-c", production_script()], env=host.env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"giving up after 12 attempts: docker pull {IMAGE}" in done.stderr
    assert not (host.state / "container").exists()
