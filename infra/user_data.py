"""Render `infra/user_data.sh`, the server's boot script. Plain Python: no Pulumi needed.

The Pulumi program renders it for EC2 (ECR through the credential helper, awslogs); the deploy
rehearsal renders the very same template for a local registry without login and the json-file log
driver.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

TEMPLATE = Path(__file__).with_name("user_data.sh")
CONTAINER_PORT = 8080  # the image's contract: the app listens here (env PORT)
# The app's container; the readiness gate asks Docker which image it runs (infra/readiness.py).
CONTAINER_NAME = "cali-housing"
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
_DIGEST_REF = re.compile(r"^(?P<registry>[^/@\s]+)/[^@\s]+@sha256:[0-9a-f]{64}$")


def render_user_data(
    image: str,
    *,
    region: str = "",
    log_group: str = "",
    host_port: int = 80,
    container_port: int = CONTAINER_PORT,
    ecr_login: bool = True,
    log_driver: str = "awslogs",
    log_options: Mapping[str, str] | None = None,
    container_name: str = CONTAINER_NAME,
) -> str:
    """Fill in the boot script template.

    Args:
        image: The image by digest, ``<registry-host>/<repo>@sha256:<64 hex>``; the registry host
            (e.g. ``123456789012.dkr.ecr.eu-west-1.amazonaws.com`` or ``127.0.0.1:5000``) is taken from it.
        region: AWS region; needed by the awslogs driver (and so required with ECR).
        log_group: CloudWatch log group; needed by the awslogs driver when `log_options` is None.
        host_port: The port published on the host (the public port).
        container_port: The port the app listens on in the container; also passed as env PORT.
        ecr_login: Pull from ECR through amazon-ecr-credential-helper (the instance's role, no token
            on disk); False for a registry that needs no login.
        log_driver: Docker logging driver: ``awslogs`` in production, e.g. ``json-file`` elsewhere.
        log_options: ``--log-opt`` pairs. None means: for awslogs, the region and the log group;
            for other drivers, none.
        container_name: Name of the container (what a second run looks for).

    Returns:
        The script, every value shell-quoted.

    Raises:
        ValueError: The image is not a digest reference, or a value the chosen steps need is missing.
    """
    match = _DIGEST_REF.match(image)
    if match is None:
        raise ValueError(f"image must be <registry>/<repo>@sha256:<digest>, not {image!r}")
    if (ecr_login or log_driver == "awslogs") and not region:
        raise ValueError("region is required with ECR and by the awslogs driver")
    if log_options is None:
        if log_driver == "awslogs":
            if not log_group:
                raise ValueError("log_group is required by the awslogs driver")
            log_options = {"awslogs-region": region, "awslogs-group": log_group}
        else:
            log_options = {}
    for port in (host_port, container_port):
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"port out of range: {port}")
    values = {
        "IMAGE": shlex.quote(image),
        "REGISTRY": shlex.quote(match["registry"]),
        "ECR_LOGIN": "1" if ecr_login else "0",
        "HOST_PORT": str(int(host_port)),
        "CONTAINER_PORT": str(int(container_port)),
        "CONTAINER_NAME": shlex.quote(container_name),
        "LOG_DRIVER": shlex.quote(log_driver),
        "LOG_OPTS": " ".join(shlex.quote(f"{key}={value}") for key, value in log_options.items()),
    }
    template = TEMPLATE.read_text(encoding="utf-8")
    missing = set(_PLACEHOLDER.findall(template)) - values.keys()
    if missing:  # the template grew a placeholder this function does not fill
        raise ValueError(f"template placeholders without a value: {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
