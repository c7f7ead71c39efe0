"""The deploy rehearsal: everything between "image built" and "server answers", except AWS.

    python scripts/rehearse.py        (or `make rehearse`; CI_REGISTRY_PORT=N for another registry port)

1. A plain registry stands in for ECR, one **this run starts** on its own port: CI_REGISTRY_PORT
   when set, else a free port. It never pushes into a registry something else started: a port that
   is already in use is refused (exit 1), because pushing there would mix this run's tags with
   another's. The registry is `../shared/ci/docker-engine registry` (the CI machine's way;
   CI_DOCKER_ENGINE names the tool elsewhere), else a `registry:2` container (a laptop or a GitHub
   runner, which can pull it).
2. "Deploy" by content tag, as the Pulumi program does: the tag (infra.release.content_tag, the
   program's own function) is looked up in the registry; when it is there, nothing is built or
   pushed; else the tested image (`--image`, or CALI_TEST_IMAGE when CALI_TEST_IMAGE_BUILT=1, as
   in the pipeline's image job) or a fresh build is pushed under it. Its digest is resolved.
3. The real `infra/user_data.sh` is rendered by the real `infra.user_data.render_user_data` for that
   registry and digest: no ECR login (this registry needs none) and the json-file log driver
   instead of awslogs; every other line is what an EC2 server runs at boot.
4. It runs, as root, on a fresh host: a new container given the engine's socket and the docker CLI.
   Why a container rather than a network namespace (`ip netns`): the script writes nothing but
   Docker state, yet it must start from a filesystem that has seen no previous run, and a container
   gives that for free; a netns would share this machine's filesystem and only isolate the network,
   while the script's network work (pull, publish) happens in the engine either way. Through the
   socket the script's `docker info` succeeds, so, as on a host that has Docker, it skips installing.
5. The deploy guardrail (`python -m smoke.guardrail`, what the deploy workflow runs after `up`)
   watches the server: the smoke test against the port the script published, expecting the identity
   the image's labels name (revision and, when labelled, model_version), then a short window of
   known-record probes. Then the deploy is repeated: the tag is found, the digest and the rendered
   boot script are byte-identical, so nothing would be replaced; the run fails if anything differs.
6. The guardrail rollback, as deploy.yml does it in single mode: a broken build (a layer on the good
   image whose /predict answers 500 while /ready passes, see BROKEN_PREDICT) is pushed and booted on
   a new server; the readiness gate passes (its /ready names it), the address moves to it and the
   old server goes, as a replacement does; the guardrail fails it, so the previous digest is booted
   on a fresh server through the same readiness gate, and the guardrail must pass there. The run
   fails unless the previous build ends up serving.
7. Everything it started is removed, also when a step fails or the run is interrupted: the app
   containers, the host containers, the image tags, the staged dataset, and a registry container it
   started, with what was pushed to it (docker-engine's registry on this run's port is stopped through
   that tool's pid file, and its storage removed).

Exit status: 0 when the smoke test passed, 1 when a step failed, 77 when no registry could be had
(the test turns that into a loud skip, or a failure in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages come first

from infra.release import MODEL_VERSION_LABEL, REVISION_LABEL, content_tag  # noqa: E402
from infra.user_data import render_user_data  # noqa: E402
from testkit.ports import free_port  # noqa: E402

REGISTRY_PORT_ENV = "CI_REGISTRY_PORT"  # the name docker-engine reads too
DOCKER_ENGINE = Path(os.environ.get("CI_DOCKER_ENGINE", ROOT.parent / "shared" / "ci" / "docker-engine"))
DOCKER_ENGINE_STATE = Path(os.environ.get("CI_DOCKER_STATE", "/var/lib/ci-docker"))  # docker-engine's STATE
HOST_IMAGE = "python:3.11-slim-bookworm"  # the fresh host: a Debian with bash, nothing else of ours
REGISTRY_IMAGE = "registry:2"
NO_REGISTRY = 77
# Seconds the guardrail watches a server after its smoke test (the workflow watches for minutes;
# here the broken build fails at once, and the good one is probed a few times).
GUARDRAIL_WINDOW_S = 6
# The broken build: sitecustomize.py (Python imports it at start-up from PYTHONPATH, /app in the
# image) makes LoadedModel.predict raise once service.predictor is imported, while the readiness
# self-test (predict_one on the compiled model) still passes. A bug that only traffic meets.
BROKEN_PREDICT = """\
import importlib.abc
import importlib.machinery
import sys


def _broken(self, X):
    raise RuntimeError("the rehearsal's broken build: predictions fail on purpose")


class _BreakPredictor(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "service.predictor":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.LoadedModel.predict = _broken

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _BreakPredictor())
"""


class RehearsalError(Exception):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class Host:
    """One rehearsed server: the build it runs, its public port, its containers' names."""

    build: str
    port: int
    app: str
    host: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def log(message: str) -> None:
    print(f"rehearse: {message}", file=sys.stderr, flush=True)


def run(args: Sequence[str], *, timeout: float, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with a bound on its time; a failure raises with its output attached."""
    log("$ " + " ".join(args))
    try:
        done = subprocess.run(args, timeout=timeout, text=True, check=False, **kwargs)
    except subprocess.TimeoutExpired as err:
        raise RehearsalError(f"{args[0]} {args[1] if len(args) > 1 else ''} took over {timeout:g}s") from err
    if check and done.returncode != 0:
        tail = (done.stderr or "")[-2000:] if isinstance(done.stderr, str) else ""
        raise RehearsalError(f"`{' '.join(args[:3])} ...` exited {done.returncode}\n{tail}")
    return done


def registry_answers(registry: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def port_in_use(port: int) -> bool:
    """Whether anything accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def registry_port() -> int:
    """CI_REGISTRY_PORT when set (a port number), else a free loopback port."""
    given = os.environ.get(REGISTRY_PORT_ENV, "")
    if not given:
        return free_port()
    if not given.isdigit() or not 0 < int(given) < 65536:
        raise RehearsalError(f"{REGISTRY_PORT_ENV}={given!r} is not a port number")
    return int(given)


class Rehearsal:
    """One run; `cleanups` undo, newest first, whatever the steps so far started."""

    def __init__(
        self, run_id: str, smoke_wait: float, tested_image: str | None = None, port: int | None = None
    ) -> None:
        self.run_id = run_id
        self.smoke_wait = smoke_wait
        self.tested_image = tested_image
        self.port = registry_port() if port is None else port
        self.registry = f"127.0.0.1:{self.port}"
        self.repo = f"{self.registry}/cali-housing"
        self.content_tag = content_tag(ROOT)
        self.tag = f"{self.repo}:{self.content_tag}"
        self.servers = 0
        self.cleanups: list[tuple[str, Callable[[], None]]] = []

    # -- steps --

    def ensure_registry(self) -> None:
        """Start this run's own registry on self.port; refuse a port that something else holds."""
        if port_in_use(self.port):
            raise RehearsalError(
                f"127.0.0.1:{self.port} is already in use by something this run did not start; the "
                f"rehearsal pushes only to a registry it starts itself. Set {REGISTRY_PORT_ENV} to a free "
                f"port, or unset it to get one"
            )
        log(f"starting this run's registry on {self.registry}")
        if DOCKER_ENGINE.exists():
            done = run(
                [str(DOCKER_ENGINE), "registry"],
                timeout=900,
                capture_output=True,
                env={**os.environ, REGISTRY_PORT_ENV: str(self.port)},
            )
            if "already answers" in done.stderr:  # something took the port between the check and the start
                raise RehearsalError(f"another registry answered on {self.registry} first: {done.stderr}")
            self.cleanups.append((f"registry on {self.registry}", self._stop_engine_registry))
            self._adopt_engine_env(done.stdout)
        elif shutil.which("docker"):
            name = f"cali-rehearsal-registry-{self.run_id}"
            started = run(
                [
                    "docker",
                    "run",
                    "--detach",
                    "--name",
                    name,
                    "--publish",
                    f"{self.registry}:5000",
                    REGISTRY_IMAGE,
                ],
                timeout=300,
                check=False,
                capture_output=True,
            )
            if started.returncode == 0:
                self.cleanups.append((f"registry container {name}", lambda: self._rm(name)))
        for _ in range(60):
            if registry_answers(self.registry):
                return
            time.sleep(0.5)
        raise SystemExit(self._no_registry())

    def _stop_engine_registry(self) -> None:
        # docker-engine keeps one registry per port, with a pid file, a config, a log and its storage
        # (its start_registry); `docker-engine down` would stop every registry and the engine, so this
        # run stops only its own, checking that the pid is still a registry's (as that tool does).
        state = DOCKER_ENGINE_STATE
        pidfile = state / f"registry-{self.port}.pid"
        if pidfile.is_file():
            pid = pidfile.read_text().strip()
            comm = Path(f"/proc/{pid}/comm")
            if pid.isdigit() and comm.is_file() and comm.read_text().strip() == "docker-registry":
                os.kill(int(pid), signal.SIGTERM)
                for _ in range(60):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.5)
            pidfile.unlink(missing_ok=True)
        shutil.rmtree(state / f"registry-{self.port}", ignore_errors=True)
        for leftover in (f"registry-{self.port}.yml", f"registry-{self.port}.log"):
            (state / leftover).unlink(missing_ok=True)

    def _no_registry(self) -> int:
        log(
            f"NO REGISTRY: {DOCKER_ENGINE} is absent and `docker run {REGISTRY_IMAGE}` did not start one on "
            f"{self.registry}. Install docker-engine's way (Debian's docker-registry) or allow pulling "
            f"{REGISTRY_IMAGE}."
        )
        self.teardown()
        return NO_REGISTRY

    @staticmethod
    def _adopt_engine_env(exports: str) -> None:
        # docker-engine prints `export PATH=<dir with a BuildKit-capable client>:$PATH DOCKER_BUILDKIT=1`
        for line in exports.splitlines():
            if not line.startswith("export "):
                continue
            for pair in line.removeprefix("export ").split():
                key, _, value = pair.partition("=")
                os.environ[key] = value.replace("$PATH", os.environ.get("PATH", ""))

    def tag_in_registry(self) -> bool:
        """Whether the registry already holds the content tag (HEAD on its manifest)."""
        accept = ", ".join(
            (
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
        )
        url = f"http://{self.registry}/v2/cali-housing/manifests/{self.content_tag}"
        req = urllib.request.Request(url, method="HEAD", headers={"Accept": accept})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status == 200
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            raise RehearsalError(f"registry answered {err.code} for {url}") from err
        except OSError as err:
            raise RehearsalError(f"registry unreachable at {url}: {err}") from err

    def deploy(self) -> str:
        """The content tag's image: found in the registry, or pushed once. Returns repo@digest."""
        self.cleanups.append((f"image tag {self.tag}", lambda: self._docker("rmi", self.tag)))
        if self.tag_in_registry():
            log(f"{self.tag} is in the registry: deploying it, building and pushing nothing")
            run(["docker", "pull", "--quiet", self.tag], timeout=600, capture_output=True)
        elif self.tested_image:
            log(f"{self.tag} is not in the registry: pushing the tested image {self.tested_image}")
            run(["docker", "tag", self.tested_image, self.tag], timeout=60)
            run(["docker", "push", self.tag], timeout=600, capture_output=True)
        else:
            log(f"{self.tag} is not in the registry: building it once")
            self.build()
            run(["docker", "push", self.tag], timeout=600, capture_output=True)
        return self.resolve_digest()

    def build(self) -> None:
        staged = ROOT / ".build-data"
        if not staged.exists():
            source = Path(
                os.environ.get("SCIKIT_LEARN_DATA", ROOT.parent / "shared" / "data" / "scikit_learn_data")
            )
            if source.is_dir():
                # what `make docker` stages: the build then needs no download (none is possible here)
                shutil.copytree(source, staged / "scikit_learn_data")
                self.cleanups.append(("staged dataset", lambda: shutil.rmtree(staged, ignore_errors=True)))
        os.environ.setdefault("DOCKER_BUILDKIT", "1")
        run(
            [
                "docker",
                "build",
                "--tag",
                self.tag,
                "--build-arg",
                f"GIT_REVISION=rehearsal-{self.run_id}",
                ".",
            ],
            timeout=1800,
            cwd=ROOT,
        )

    def resolve_digest(self) -> str:
        digests = run(
            [
                "docker",
                "image",
                "inspect",
                "--format",
                "{{range .RepoDigests}}{{println .}}{{end}}",
                self.tag,
            ],
            timeout=60,
            capture_output=True,
        ).stdout.split()
        image = next((d for d in digests if d.startswith(self.repo + "@sha256:")), None)
        if image is None:
            raise RehearsalError(f"no digest in {self.repo} for {self.tag}: {digests}")
        log(f"deploying {image}")
        return image

    def identity(self, ref: str | None = None) -> dict[str, str]:
        """The labels an image carries (the content tag's by default): what /ready must answer."""
        labels = run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref or self.tag],
            timeout=60,
            capture_output=True,
        ).stdout
        found = json.loads(labels) or {}
        return {
            "revision": found.get(REVISION_LABEL, ""),
            "model_version": found.get(MODEL_VERSION_LABEL, ""),
        }

    def new_server(self, build: str) -> Host:
        """The next server's names and public port (a replacement is a new server, as on EC2)."""
        self.servers += 1
        n = self.servers
        return Host(
            build,
            free_port(),
            f"cali-rehearsal-app-{self.run_id}-{n}",
            f"cali-rehearsal-host-{self.run_id}-{n}",
        )

    def user_data(self, image: str, server: Host) -> str:
        return render_user_data(
            image, host_port=server.port, ecr_login=False, log_driver="json-file", container_name=server.app
        )

    def boot_fresh_host(self, user_data: str, workdir: Path, server: Host) -> None:
        script = workdir / f"user-data-{server.host}.sh"
        script.write_text(user_data)
        script.chmod(0o755)
        # The app container outlives the host container (as it outlives cloud-init): remove it too.
        self.cleanups.append((f"app container {server.app}", lambda: self._rm(server.app)))
        self.cleanups.append((f"host container {server.host}", lambda: self._rm(server.host)))
        client = Path(shutil.which("docker") or "/usr/bin/docker").resolve()
        socket_path = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
        log(f"booting server {server.host} ({server.build} build) on port {server.port}")
        run(
            [
                "docker",
                "run",
                "--name",
                server.host,
                "--label",
                "cali.rehearsal=host",
                "--volume",
                f"{socket_path}:/var/run/docker.sock",
                "--volume",
                f"{client}:/usr/local/bin/docker:ro",
                "--volume",
                f"{script}:/var/lib/cloud/user-data.sh:ro",
                "--env",
                "RETRY_DELAY=2",
                HOST_IMAGE,
                "bash",
                "/var/lib/cloud/user-data.sh",
            ],
            timeout=900,
        )

    def retire(self, server: Host) -> None:
        """The old server goes once the address has moved (a replacement deletes it)."""
        log(f"server {server.host} ({server.build} build) is replaced: removing it")
        self._rm(server.app)
        self._rm(server.host)

    def readiness_gate(self, server: Host, identity: dict[str, str]) -> None:
        """What infra/readiness.py waits for before the address moves: /ready names this build."""
        want = {key: value for key, value in identity.items() if value}
        deadline = time.monotonic() + self.smoke_wait
        seen: object = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{server.url}/ready", timeout=5) as resp:  # noqa: S310
                    seen = json.load(resp)
            except (OSError, ValueError) as err:
                seen = str(err)
            if isinstance(seen, dict) and all(seen.get(key) == value for key, value in want.items()):
                log(f"readiness gate: {server.host} answers /ready as {want}: the address moves to it")
                return
            time.sleep(1)
        raise RehearsalError(f"readiness gate: {server.host} never answered /ready as {want}; last: {seen}")

    def guardrail(self, server: Host, identity: dict[str, str]) -> int:
        """`python -m smoke.guardrail` against the server, as deploy.yml runs it; its exit status."""
        expect = [f"--expect-{key.replace('_', '-')}={value}" for key, value in identity.items() if value]
        done = run(
            [
                sys.executable,
                "-m",
                "smoke.guardrail",
                server.url,
                "--wait",
                str(self.smoke_wait),
                "--window",
                str(GUARDRAIL_WINDOW_S),
                "--interval",
                "1",
                *expect,
            ],
            timeout=self.smoke_wait + GUARDRAIL_WINDOW_S + 120,
            check=False,
            cwd=ROOT,
        )
        return done.returncode

    def app_logs(self, server: Host) -> str:
        logs = run(
            ["docker", "logs", "--tail", "40", server.app], timeout=30, check=False, capture_output=True
        )
        return f"{logs.stdout}{logs.stderr}"

    def build_broken(self, workdir: Path) -> tuple[str, dict[str, str]]:
        """The good image plus one layer that breaks /predict (BROKEN_PREDICT), pushed; its digest."""
        context = workdir / "broken"
        context.mkdir()
        (context / "sitecustomize.py").write_text(BROKEN_PREDICT)
        revision = f"rehearsal-broken-{self.run_id}"
        (context / "Dockerfile").write_text(
            f"FROM {self.tag}\n"
            "COPY sitecustomize.py /app/sitecustomize.py\n"
            f"ENV GIT_REVISION={revision}\n"
            f'LABEL {REVISION_LABEL}="{revision}"\n'
        )
        broken = f"{self.repo}:{revision}"
        self.cleanups.append((f"image tag {broken}", lambda: self._docker("rmi", broken)))
        run(["docker", "build", "--tag", broken, str(context)], timeout=600, capture_output=True)
        run(["docker", "push", broken], timeout=600, capture_output=True)
        digests = run(
            ["docker", "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", broken],
            timeout=60,
            capture_output=True,
        ).stdout.split()
        image = next((d for d in digests if d.startswith(self.repo + "@sha256:")), None)
        if image is None:
            raise RehearsalError(f"no digest in {self.repo} for {broken}: {digests}")
        return image, self.identity(broken)

    # -- teardown --

    def _docker(self, *args: str) -> None:
        subprocess.run(["docker", *args], capture_output=True, timeout=120, check=False)

    def _rm(self, name: str) -> None:
        self._docker("rm", "--force", "--volumes", name)

    def teardown(self) -> None:
        while self.cleanups:
            what, undo = self.cleanups.pop()
            log(f"removing {what}")
            try:
                undo()
            except (OSError, subprocess.SubprocessError) as err:  # keep going: remove the rest
                log(f"could not remove {what}: {err}")

    def __call__(self, workdir: Path) -> None:
        started = time.monotonic()
        self.ensure_registry()
        good = self.deploy()
        good_identity = self.identity()
        first = self.new_server("good")
        first_boot = self.user_data(good, first)
        self.boot_fresh_host(first_boot, workdir, first)
        self.readiness_gate(first, good_identity)
        if self.guardrail(first, good_identity) != 0:
            raise RehearsalError(f"the guardrail failed the good build; its log:\n{self.app_logs(first)}")
        # The same deploy again (a re-run, or a docs-only commit: the same content tag).
        if not self.tag_in_registry():
            raise RehearsalError(f"{self.tag} vanished from the registry after the first deploy")
        if self.user_data(self.resolve_digest(), first) != first_boot:
            raise RehearsalError("the second deploy would change the server: its boot script differs")
        log("second deploy changed nothing: the tag was found, the digest and the boot script are identical")

        # A broken build: ready, yet every prediction fails. It replaces the good server.
        broken, broken_identity = self.build_broken(workdir)
        second = self.new_server("broken")
        self.boot_fresh_host(self.user_data(broken, second), workdir, second)
        self.readiness_gate(second, broken_identity)
        self.retire(first)
        if self.guardrail(second, broken_identity) == 0:
            raise RehearsalError(f"the guardrail kept {broken}, whose /predict fails")
        log(f"guardrail: {broken} failed after the address moved: deploying the previous digest {good}")
        third = self.new_server("previous")
        self.boot_fresh_host(self.user_data(good, third), workdir, third)
        self.readiness_gate(third, good_identity)
        self.retire(second)
        if self.guardrail(third, good_identity) != 0:
            raise RehearsalError(
                f"the rolled-back build fails its guardrail; its log:\n{self.app_logs(third)}"
            )
        revision = good_identity["revision"]
        log(f"ROLLED BACK: the broken build was undone; {good} (revision {revision}) serves again")
        log(f"PASSED in {time.monotonic() - started:.0f}s: {good} booted by infra/user_data.sh answered")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/rehearse.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke-wait", type=float, default=180, help="seconds the smoke test waits for /health"
    )
    tested = os.environ.get("CALI_TEST_IMAGE") if os.environ.get("CALI_TEST_IMAGE_BUILT") == "1" else None
    parser.add_argument(
        "--image",
        default=tested,
        help="the tested local image to push when the registry lacks its content tag",
    )
    args = parser.parse_args(argv)
    try:
        rehearsal = Rehearsal(uuid.uuid4().hex[:10], args.smoke_wait, args.image)
    except RehearsalError as err:
        log(f"FAILED: {err}")
        return 1

    def interrupted(signum: int, _frame: object) -> None:
        raise RehearsalError(f"interrupted by signal {signum}")

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    workdir = Path(tempfile.mkdtemp(prefix=f"cali-rehearsal-{rehearsal.run_id}-"))
    rehearsal.cleanups.append(("work directory", lambda: shutil.rmtree(workdir, ignore_errors=True)))
    try:
        rehearsal(workdir)
    except RehearsalError as err:
        log(f"FAILED: {err}")
        return 1
    finally:
        rehearsal.teardown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
