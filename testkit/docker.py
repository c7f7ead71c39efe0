"""The docker client, the image tests' names and limits, and a clean checkout to build from."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("CALI_TEST_IMAGE", "cali-housing:test")  # another name keeps parallel checkouts apart
# "1": IMAGE is already built (the pipeline's release image); test it rather than build one.
PREBUILT = os.environ.get("CALI_TEST_IMAGE_BUILT") == "1"
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
