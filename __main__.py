"""The Pulumi program: the state bucket, the registry and image, and the server with its network.

`pulumi up` runs this file. It only reads the config and composes components from `infra/`.
"""

import json
from pathlib import Path

import pulumi

from infra import config
from infra.identity import ServerIdentity, ServerIdentityArgs
from infra.image import AppImage, AppImageArgs
from infra.logs import AppLogs, AppLogsArgs
from infra.network import AppFirewall, AppFirewallArgs, Network, NetworkArgs
from infra.registry import Registry, RegistryArgs
from infra.server import Server, ServerArgs, amazon_linux_ami
from infra.state_bucket import StateBucket, StateBucketArgs
from infra.user_data import render_user_data
from model.schema import example_record

settings = config.load(Path(__file__).resolve().parent)  # fails on a bad value before any resource exists
tags = settings.tags

state = StateBucket("cali-state", StateBucketArgs(settings.state_bucket, settings.state_noncurrent_days))
registry = Registry("cali", RegistryArgs(keep_images=settings.keep_images, tags=tags))
image = AppImage(
    "cali",
    AppImageArgs(
        repository=registry.repository, tag=settings.image_tag, rollback_digest=settings.image_digest
    ),
)
logs = AppLogs("cali", AppLogsArgs(retention_days=settings.log_retention_days, tags=tags))
network = Network("cali", NetworkArgs(az_count=1, tags=tags))
firewall = AppFirewall(
    "cali",
    AppFirewallArgs(vpc_id=network.vpc_id, port=settings.app_port, cidrs=settings.allowed_cidrs, tags=tags),
)
identity = ServerIdentity(
    "cali", ServerIdentityArgs(repository_arn=registry.repository_arn, log_group_arn=logs.arn, tags=tags)
)
user_data = pulumi.Output.all(image.repo_digest, logs.group_name).apply(
    lambda v: render_user_data(v[0], region=settings.region, log_group=v[1], host_port=settings.app_port)
)
server = Server(
    "cali",
    ServerArgs(
        ami=amazon_linux_ami(settings.ami),
        ami_pinned=bool(settings.ami),
        instance_type=settings.instance_type,
        subnet_id=network.subnet_ids[0],
        security_group_id=firewall.security_group_id,
        instance_profile_name=identity.instance_profile_name,
        user_data=user_data,
        root_volume_gb=settings.root_volume_gb,
        region=settings.region,
        tags=tags,
    ),
)

port_suffix = "" if settings.app_port == 80 else f":{settings.app_port}"
url = pulumi.Output.concat("http://", server.public_ip, port_suffix)
pulumi.export("public_ip", server.public_ip)
pulumi.export("url", url)
pulumi.export("image", image.repo_digest)
pulumi.export("state_bucket", state.bucket_name)
pulumi.export("log_group", logs.group_name)
pulumi.export(
    "curl",
    pulumi.Output.concat(
        "curl -s ",
        url,
        "/predict -H 'Content-Type: application/json' -d '",
        json.dumps(example_record()),
        "'",
    ),
)
