"""A build's names, declared once: the content tag, the repositories, the image labels.

Standard library only: the Pulumi program, CI (`python -m infra.release`, on a runner's bare Python)
and the deploy rehearsal all import this one module, so they cannot disagree on a tag.

The image is named by its CONTENT, not by the commit: a SHA-256 over the Dockerfile, the
.dockerignore and every file the build context holds (the same allow-list `docker build` applies,
read from .dockerignore), plus the target platform. Build leftovers are not content: `.build-data/`
is a copy `make docker` stages of the public California Housing cache (the same bytes the build
would otherwise download), so whether a laptop ran `make docker` before `pulumi up` never changes
the tag, the image or the server. A commit that
changes none of those (docs, tests, infra, workflows) computes the same tag, finds the image in ECR
and deploys the same digest: no build, no new boot script, no replaced server. The git revision is
deliberately NOT hashed (it is a build argument, recorded as a label and served by `/ready`), so the
revision an image reports is the commit that FIRST built that content.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

PROJECT = "cali-housing"
# The servers are x86_64 even when the image is built on an ARM laptop; hashed, so a change of
# platform is a change of content.
PLATFORM = "linux/amd64"
TAG_PREFIX = "content-"
# The files that are part of the build besides the context itself.
BUILD_FILES = ("Dockerfile", ".dockerignore")
# Folders the context may hold that are staging, not source: sent to `docker build`, never hashed.
BUILD_LEFTOVERS = (".build-data/",)
# OCI annotation keys (https://github.com/opencontainers/image-spec/blob/main/annotations.md):
# `revision` is the source commit, `version` the packaged software's version, here the model's.
REVISION_LABEL = "org.opencontainers.image.revision"
MODEL_VERSION_LABEL = "org.opencontainers.image.version"
# Build arguments the Dockerfile reads for them (its ARG lines; tests/test_release.py holds it to them).
REVISION_ARG = "GIT_REVISION"
MODEL_VERSION_ARG = "MODEL_VERSION"


def repository_name(stack: str) -> str:
    """The stack's ECR repository: a fixed name, so the program can look a tag up before `up`."""
    return f"{PROJECT}-{stack}"


def cache_repository_name(stack: str) -> str:
    """The stack's build-cache repository (mutable: BuildKit rewrites its one `cache` tag)."""
    return f"{PROJECT}-{stack}-cache"


CACHE_TAG = "cache"


def _rules(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """The .dockerignore rules in order: (include?, pattern over a slash-separated relative path)."""
    rules = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        rules.append((include, re.compile(_translate(pattern))))
    return rules


def _translate(pattern: str) -> str:
    """Docker's pattern syntax (Go filepath.Match plus `**`) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out) + r"\Z"


def _included(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    # As in Docker: the last matching rule wins, and a rule on a folder applies to what it holds.
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = True
    for include, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            verdict = include
    return verdict


def context_files(root: Path) -> list[str]:
    """The build context's files, relative and sorted, as `docker build` would send them."""
    rules = _rules(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        # Never descend into what no rule could re-include: .git, .venv, caches (speed only; the
        # verdict per file below is what counts).
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".venv", "node_modules"))
        for name in filenames:
            relative = name if rel_dir == "." else f"{rel_dir}/{name}"
            if _included(relative, rules):
                found.append(relative)
    return sorted(found)


def _hashed_files(root: Path) -> Iterator[str]:
    yield from BUILD_FILES
    yield from (f for f in context_files(root) if f not in BUILD_FILES and not f.startswith(BUILD_LEFTOVERS))


def content_tag(root: Path) -> str:
    """The image tag for what a build of `root` would contain: `content-` and 32 hex digits.

    Args:
        root: The repository root (the build context).

    Returns:
        The same string for the same Dockerfile, context files and platform, whatever the commit.
    """
    total = hashlib.sha256(f"platform {PLATFORM}\n".encode())
    for relative in _hashed_files(root):
        digest = hashlib.sha256((root / relative).read_bytes()).hexdigest()
        total.update(f"{relative}\0{digest}\n".encode())
    return TAG_PREFIX + total.hexdigest()[:32]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the build's names as `key=value` lines (the format of $GITHUB_OUTPUT)."""
    parser = argparse.ArgumentParser(prog="python -m infra.release", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: .)")
    parser.add_argument("--stack", default="prod", help="stack whose repositories to name")
    args = parser.parse_args(argv)
    print(f"tag={content_tag(args.root)}")
    print(f"repository={repository_name(args.stack)}")
    print(f"cache_repository={cache_repository_name(args.stack)}")
    print(f"platform={PLATFORM}")
    print(f"revision_label={REVISION_LABEL}")
    print(f"model_version_label={MODEL_VERSION_LABEL}")
    print(f"revision_arg={REVISION_ARG}")
    print(f"model_version_arg={MODEL_VERSION_ARG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
