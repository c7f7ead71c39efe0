"""The Pulumi program: the state bucket, the registry and image, and the service in the configured mode.

`pulumi up` runs this file. It only reads the config and composes components from `infra/`:
`mode: single` (default) runs one server, `mode: fleet` an Auto Scaling group behind a load balancer
(`infra/modes.py`).
"""

import json
from pathlib import Path

import pulumi

from infra import config, modes
from infra.identity import ServerIdentity, ServerIdentityArgs
from infra.image import AppImage, AppImageArgs
from infra.logs import AppLogs, AppLogsArgs
from infra.monitoring import Monitoring, MonitoringArgs
from infra.network import Network, NetworkArgs
from infra.registry import Registry, RegistryArgs, find_image, require_repositories
from infra.repositories import stack_repositories
from infra.server import amazon_linux_ami
from infra.state_bucket import StateBucket, StateBucketArgs
from infra.user_data import render_user_data
from model.schema import example_record

settings = config.load(Path(__file__).resolve().parent)  # fails on a bad value before any resource exists
tags = settings.tags
# The account setup made both repositories (account/registries.py); the program adopts them. Asked
# before anything is registered: a stack the setup never ran for stops here with the command to run.
images_repo, cache_repo = stack_repositories(settings.stack)
require_repositories([images_repo.name, cache_repo.name], settings.stack, settings.region)

# Only prod manages the state bucket; another stack (staging) keeps its state there without owning it.
state_bucket_name: pulumi.Input[str] = settings.state_bucket
if settings.owns_state_bucket:
    state = StateBucket("cali-state", StateBucketArgs(settings.state_bucket, settings.state_noncurrent_days))
    state_bucket_name = state.bucket_name
registry = Registry(
    "cali", RegistryArgs(images=images_repo, cache=cache_repo, keep_images=settings.keep_images)
)
# Also before registering, since it decides whether a build is registered at all.
existing_digest = (
    None
    if settings.image_digest
    else find_image(images_repo.name, settings.image_tag, settings.region, settings.stack)
)
image = AppImage(
    "cali",
    AppImageArgs(
        repository=registry.repository,
        cache_repository=registry.cache_repository,
        tag=settings.image_tag,
        revision=settings.revision,
        existing_digest=existing_digest,
        rollback_digest=settings.image_digest,
    ),
)
logs = AppLogs("cali", AppLogsArgs(retention_days=settings.log_retention_days, tags=tags))
network = Network("cali", NetworkArgs(az_count=settings.zone_count, tags=tags, flow_logs=settings.flow_logs))
identity = ServerIdentity(
    "cali", ServerIdentityArgs(repository_arn=registry.repository_arn, log_group_arn=logs.arn, tags=tags)
)
user_data = pulumi.Output.all(image.repo_digest, logs.group_name).apply(
    lambda v: render_user_data(v[0], region=settings.region, log_group=v[1], host_port=settings.app_port)
)
monitoring = Monitoring(
    "cali",
    MonitoringArgs(region=settings.region, account_arn=logs.arn, alert_email=settings.alert_email, tags=tags),
)
foundation = modes.Foundation(
    network=network,
    ami=amazon_linux_ami(settings.ami),
    user_data=user_data,
    instance_profile_name=identity.instance_profile_name,
    monitoring=monitoring,
    # What a new single server's container must run before it gets the address: the digest this run
    # deploys, which every run (CI, a PR preview, a laptop) derives the same way from the same tree.
    image=image.repo_digest,
)
# single: `url`, `public_ip`, `instance_id`; fleet: `url`, `autoscaling_group`, `load_balancer`.
# CI reads `url` and `ingress_group` (the security group it admits its runner to for the smoke test).
compose = modes.fleet if settings.mode == "fleet" else modes.single
service = compose(settings, foundation)

for key, value in service.items():
    pulumi.export(key, value)
pulumi.export("image", image.repo_digest)
pulumi.export("state_bucket", state_bucket_name)
pulumi.export("log_group", logs.group_name)
pulumi.export(
    "curl",
    pulumi.Output.concat(
        "curl -s ",
        service["url"],
        "/predict -H 'Content-Type: application/json' -d '",
        json.dumps(example_record()),
        "'",
    ),
)
